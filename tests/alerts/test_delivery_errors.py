"""Failed deliveries in plain language, from the errors the notifiers really store."""

from __future__ import annotations

import pytest

from alerts.delivery_errors import delivery_error_text


@pytest.mark.parametrize(("kind", "status", "error", "plain"), [
    ("email", None, "ConnectionRefusedError: [Errno 111] Connection refused", "the mail server refused the connection"),
    ("email", None, "SMTPConnectError: (421, b'busy')", "the mail server refused the connection"),
    ("email", None, "SMTPAuthenticationError: (535, b'5.7.8 bad credentials')", "the mail server refused the sign-in"),
    ("email", None, "SMTPRecipientsRefused: {'x@y': (550, b'no such user')}",
     "the mail server refused the recipient address"),
    ("email", None, "TimeoutError: timed out", "the mail server did not answer: timed out after 10 s"),
    ("email", None, "SMTPServerDisconnected: Connection unexpectedly closed", "the mail server closed the connection"),
    ("webhook", 500, "Internal Server Error", "the webhook answered 500 (a fault on its side)"),
    ("webhook", 404, "", "the webhook answered 404 (the URL is wrong, or the webhook was removed)"),
    ("slack", 403, "invalid_token", "Slack answered 403 (check the URL and the secret)"),
    ("webhook", None, "ReadTimeout: timed out", "the webhook did not answer: timed out after 10 s"),
    ("webhook", None, "ConnectTimeout: ", "timed out after 10 s"),
    ("webhook", None, "ConnectError: 'hooks.example.invalid' does not resolve ([Errno -2] Name or service not known)",
     "the webhook's address does not resolve (DNS failure)"),
    ("webhook", None, "ConnectError: [Errno 111] Connection refused", "the webhook's server refused the connection"),
    ("webhook", None, "ConnectError: '10.0.0.5' is not allowed: private; private URLs are turned off here",
     "private or local network"),
    ("slack", None, "ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed",
     "Slack's TLS certificate was not accepted"),
    ("webhook", None, "RemoteProtocolError: Server disconnected without sending a response.",
     "the webhook's server closed the connection before answering"),
    ("webhook", None, "SomethingNew: ???", "the delivery to the webhook failed"),
])
def test_delivery_errors_in_plain_language(kind, status, error, plain) -> None:
    assert plain in delivery_error_text(kind=kind, status_code=status, error=error)
