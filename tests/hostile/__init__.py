"""The hostile-input suite (issue 13): generated paths, headers, bodies and attribution values driven
through the real proxy, with the invariants of invariants.py checked after every case."""
