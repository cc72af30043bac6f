"""The usage dashboard: what it shows (read from the rollups) and its pages."""
