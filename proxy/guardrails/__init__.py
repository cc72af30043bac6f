"""Guardrails: PII masking, content rules, system prompts and injection detection, applied in flight.

The engine (policy.py, spec.py, matching.py, pii.py, patterns.py, injection.py, window.py) is pure:
no Django, no I/O, no asyncio. docs/guardrails.md describes the policy shape and the detectors.
"""
