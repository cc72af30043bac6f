"""Budgets: their pages and services, and their Redis counters rebuilt from usage records."""
