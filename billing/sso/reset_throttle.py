"""How often a password-reset email may be sent: a few per address and a few more per client address each
hour, counted in Redis. Past the limit the page answers exactly as it does when a mail goes out, so the
limit says nothing about which addresses exist; only the mail is not sent. Without it anyone could make the
app mail an inbox over and over."""

from __future__ import annotations

import hashlib
import logging

import redis
from django.http import HttpRequest

from billing.sso.login_throttle import client_ip
from tokonomics.redis_client import sync_redis

PER_EMAIL_PER_HOUR = 3
PER_CLIENT_PER_HOUR = 10
WINDOW_SECONDS = 3600
log = logging.getLogger(__name__)


def _key(kind: str, value: str) -> str:
    # Client text never shapes a Redis key: it is hashed first.
    return f"tk:pwreset:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def reset_mail_allowed(*, request: HttpRequest, email: str) -> bool:
    """Count this request against its address and its client; False once either is over its hourly limit.
    Fails open when Redis is unreachable: a person locked out of their account must still get the link."""
    counts = ((_key("email", email.strip().lower()), PER_EMAIL_PER_HOUR),
              (_key("client", client_ip(request) or "unknown"), PER_CLIENT_PER_HOUR))
    try:
        pipe = sync_redis().pipeline()
        for key, _ in counts:
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS, nx=True)
        replies = pipe.execute()
    except redis.RedisError:
        log.warning("password reset throttle: Redis is unreachable; the mail is sent unthrottled")
        return True
    return all(int(replies[2 * index]) <= limit for index, (_, limit) in enumerate(counts))
