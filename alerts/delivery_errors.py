"""A failed delivery in plain language ("the mail server refused the connection"), for the alerts page;
the raw error stays beside it for whoever needs the detail. Pure: it reads what a delivery stored."""

from __future__ import annotations

from alerts.notifiers.base import TIMEOUT_SECONDS

_WHO = {"email": "the mail server", "slack": "Slack", "webhook": "the webhook"}

_STATUS_HINTS = {
    400: "it did not accept the message",
    401: "check the URL and the secret",
    403: "check the URL and the secret",
    404: "the URL is wrong, or the webhook was removed",
    410: "the webhook was removed",
    429: "it asks to slow down; retrying later",
}


def delivery_error_text(*, kind: str, status_code: int | None, error: str) -> str:
    """What went wrong with one delivery attempt to a channel of `kind`, said plainly."""
    who = _WHO.get(kind, "the destination")
    raw = error.lower()
    if status_code:
        hint = _STATUS_HINTS.get(status_code) or ("a fault on its side" if status_code >= 500 else "")
        return f"{who} answered {status_code}" + (f" ({hint})" if hint else "")
    if error == "sending…":
        return "sending…"
    if "private urls are turned off" in raw:
        return "the address is on a private or local network, which this installation does not send to"
    if "does not resolve" in raw or "name or service not known" in raw or "getaddrinfo" in raw \
            or "nodename nor servname" in raw or "temporary failure in name resolution" in raw:
        return f"{who}'s address does not resolve (DNS failure)"
    if "timeout" in raw or "timed out" in raw:
        return f"{who} did not answer: timed out after {TIMEOUT_SECONDS:g} s"
    if kind == "email":
        return _email_error_text(raw)
    if "refused" in raw:
        return f"{who}'s server refused the connection"
    if "certificate" in raw or "ssl" in raw or "tls" in raw:
        return f"{who}'s TLS certificate was not accepted"
    if "disconnected" in raw or "reset" in raw or "closed" in raw:
        return f"{who}'s server closed the connection before answering"
    return f"the delivery to {who} failed"


def _email_error_text(raw: str) -> str:
    if "authentication" in raw:
        return "the mail server refused the sign-in (check the SMTP user and password)"
    if "recipientsrefused" in raw or "recipient" in raw:
        return "the mail server refused the recipient address"
    if "senderrefused" in raw:
        return "the mail server refused the sender address"
    if "refused" in raw or "connecterror" in raw:
        return "the mail server refused the connection"
    if "disconnected" in raw or "reset" in raw:
        return "the mail server closed the connection"
    if "certificate" in raw or "ssl" in raw or "tls" in raw:
        return "the mail server's TLS certificate was not accepted"
    return "the mail server did not take the message"
