"""The `tokonomics` console script: a client of a (possibly remote) Tokonomics, never Django."""
