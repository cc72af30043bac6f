"""The built-in benchmark behind `python manage.py benchmark`: the simulator upstream, the proxy as
production runs it, a load generator (wrk when installed, else `tools.bench.loadgen`), and the
report (docs/performance.md explains the figures)."""
