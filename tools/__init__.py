"""Seeding and timing tools, apart from product code: the proxy benchmark (bench/), dashboards at scale
(scale.py) and the demo data and traffic commands."""
