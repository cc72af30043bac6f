"""Signing in: OpenID Connect per account, email-domain claims, which accounts a session may open,
and the throttle on password sign-in."""
