"""Accounts and their people: seats, invitations, settings, branding, who may do what, the audit log,
management tokens, and an account as the proxy's directory caches it."""
