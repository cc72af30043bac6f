"""`LOG_FORMAT=json`: one JSON object per log line, for the web app, the proxy and Celery alike.

Fields: timestamp (UTC, ISO 8601), level, logger, message, then whichever of FIELDS a record was given
through `extra=` (the proxy's access line gives request id, account, status, latency and cost), and the
traceback of an exception. Never content, never keys: every line, JSON or plain, passes SecretsRedacted,
which replaces anything shaped like a Tokonomics key or a provider secret.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import orjson

# The `extra=` names a line may carry, and nothing else a record holds (a stray attribute could be content).
FIELDS = (
    "request_id", "account", "key_id", "status", "latency_ms", "cost_usd", "provider", "model", "feature",
    "environment", "denied_scope", "streamed", "input_tokens", "output_tokens", "method", "path", "task_id",
    "account_slug", "user_id",
)
# Fields a client fills: cut to TEXT_MAX_CHARS and cleaned of secrets (the others are the proxy's own values).
CLIENT_FIELDS = frozenset({"model", "feature", "environment", "path", "method", "account_slug"})
TEXT_MAX_CHARS = 200

# Tokonomics keys (mk_…), OpenAI/Anthropic-style secrets (sk-…, sk-ant-…), Google API keys (AIza…), and
# whatever follows a bearer scheme or an api-key header name.
SECRET = re.compile(
    r"\bmk_[A-Za-z0-9_\-]{8,}"
    r"|\bsk-[A-Za-z0-9_\-]{8,}"
    r"|\bAIza[A-Za-z0-9_\-]{20,}"
    r"|(?i:\b(?:bearer|x-api-key|api-key|x-goog-api-key)\b[\s:=\"']+)[^\s\"',;]{8,}"
)
REDACTED = "[redacted]"


def secrets_redacted(text: str) -> str:
    return SECRET.sub(_redact, text) if text else text


def _redact(match: re.Match[str]) -> str:
    found = match.group(0)
    lowered = found.lower()
    for scheme in ("bearer", "x-api-key", "api-key", "x-goog-api-key"):
        if lowered.startswith(scheme):
            # Keep the header name and separator so the line still says where the secret was.
            head = re.match(r"[^\s:=\"']+[\s:=\"']+", found)
            return (head.group(0) if head else "") + REDACTED
    return REDACTED


class SecretsRedacted(logging.Filter):
    """The message (arguments merged in) and any traceback, with secrets replaced. Runs only for lines
    that are written, so logging that is off costs nothing here."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = secrets_redacted(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        record.secrets_redacted = True  # the JSON formatter need not clean the message again
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = secrets_redacted(record.exc_text)  # what formatters print, once it is set
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        if not fields.get("secrets_redacted"):
            line["message"] = secrets_redacted(line["message"])
        for name in FIELDS:
            value = fields.get(name)
            if value is None or value == "":
                continue
            if name in CLIENT_FIELDS:
                value = secrets_redacted(str(value)[:TEXT_MAX_CHARS])
            elif not isinstance(value, bool | int | float):
                value = str(value)
            line[name] = value
        if "status" not in line and isinstance(fields.get("status_code"), int):  # django.request's name for it
            line["status"] = fields["status_code"]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = secrets_redacted(record.exc_text)
        if record.stack_info:
            line["stack"] = secrets_redacted(self.formatStack(record.stack_info))
        return orjson.dumps(line, default=str).decode()

