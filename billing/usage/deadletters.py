"""Usage events the ledger set aside (billing/usage/ledger.py): recorded with their reason, counted on /metrics,
and replayed once repaired (admin action, `manage.py replaydeadletters`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson
import redis
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from billing.models import Account, UsageDeadLetter
from billing.usage.records import LedgerEntry, UnstorableEvent, event_decode, usage_record_batch
from proxy.ledger_metrics import DEAD_LETTERS_KEY, DEAD_LETTERS_WAITING_KEY
from proxy.usage_bounds import text_clean
from tokonomics.audit import Actor, audit_record
from tokonomics.redis_client import sync_redis

log = logging.getLogger(__name__)

REASON_LIMIT = 2000


def _raw_text(raw: bytes) -> str:
    # PostgreSQL text refuses NUL: kept visible as an escape, like any byte that is not UTF-8.
    return raw.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def _reason_text(reason: Exception) -> str:
    return text_clean(str(reason), REASON_LIMIT) or type(reason).__name__


def _request_id(raw: bytes) -> str:
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ""
    return text_clean(event.get("request_id"), 40) if isinstance(event, dict) else ""


def _named_account(entry: LedgerEntry) -> int | None:
    if entry.account_id is not None:
        return entry.account_id
    try:
        account_id = orjson.loads(entry.raw).get("account_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return account_id if isinstance(account_id, int) and not isinstance(account_id, bool) else None


def usage_dead_letter_add(*, letters: list[tuple[LedgerEntry, UnstorableEvent]]) -> int:
    """Set these events aside, each with its reason; an entry already set aside (a batch read twice) is not
    added again. Counted in tokonomics_ledger_dead_letters_total."""
    named = [_named_account(entry) for entry, _ in letters]
    accounts = set(Account.objects.filter(pk__in={a for a in named if a is not None}).values_list("pk", flat=True))
    rows = [
        UsageDeadLetter(raw=_raw_text(entry.raw), stream=entry.stream, entry_id=entry.entry_id,
                        account_id=account_id if account_id in accounts else None, request_id=_request_id(entry.raw),
                        reason=_reason_text(reason))
        for (entry, reason), account_id in zip(letters, named, strict=True)
    ]
    UsageDeadLetter.objects.bulk_create(rows, ignore_conflicts=True)
    pipe = sync_redis().pipeline(transaction=False)
    for _, reason in letters:
        pipe.hincrby(DEAD_LETTERS_KEY, reason.kind, 1)
    pipe.set(DEAD_LETTERS_WAITING_KEY, _waiting())
    try:
        pipe.execute()
    except redis.RedisError:
        log.warning("could not count %d dead-lettered usage events", len(letters))
    return len(rows)


def usage_dead_letter_repair(*, letter: UsageDeadLetter, actor: Actor | User, raw: str) -> UsageDeadLetter:
    """Replace a dead letter's raw event with an operator's repair (it is replayed separately). Logged in the
    letter's account with the event before and after: usage fields only, never a prompt or a secret."""
    if letter.replayed_at is not None:
        raise ValidationError({"raw": "This event is already stored: a repair would change nothing."})
    repaired = _raw_text(raw.encode("utf-8", "surrogatepass"))
    if repaired == letter.raw:
        return letter
    before = letter.raw
    with transaction.atomic():
        letter.raw = repaired
        letter.save(update_fields=["raw"])
        if letter.account is not None:
            audit_record(account=letter.account, actor=actor, action="usage_dead_letter.repaired",
                         target=letter.request_id or f"dead letter {letter.pk}", before={"raw": before},
                         after={"raw": repaired})
    return letter


def usage_dead_letter_replay(*, dead_letters: Iterable[UsageDeadLetter], actor: Any) -> tuple[int, int]:
    """Try each (repaired) dead letter again: stored ones are marked replayed, the others get their new
    reason. Returns (replayed, still failing)."""
    replayed = failed = 0
    for letter in dead_letters:
        if letter.replayed_at is not None:
            continue
        # The stream's account still binds the event to it; a fallback's event names its own.
        entry = LedgerEntry(raw=letter.raw.encode(), stream=letter.stream, entry_id=letter.entry_id,
                            account_id=letter.account_id if letter.stream else None)
        before = {"reason": letter.reason, "replayed_at": None}
        try:
            with transaction.atomic():
                usage_record_batch(events=[event_decode(entry)])
        except Exception as exc:  # the reason is what an operator needs; the ledger goes on regardless
            letter.reason = _reason_text(exc if isinstance(exc, UnstorableEvent) else
                                         UnstorableEvent(f"{type(exc).__name__}: {exc}"))
            letter.save(update_fields=["reason"])
            failed += 1
            continue
        letter.replayed_at = timezone.now()
        letter.save(update_fields=["replayed_at"])
        replayed += 1
        if letter.account is not None:
            audit_record(account=letter.account, actor=actor, action="usage_dead_letter.replay",
                         target=letter.request_id or f"dead letter {letter.pk}", before=before,
                         after={"reason": letter.reason, "replayed_at": letter.replayed_at.isoformat()})
    if replayed:
        try:
            sync_redis().set(DEAD_LETTERS_WAITING_KEY, _waiting())
        except redis.RedisError:
            log.warning("could not update the number of dead letters waiting")
    return replayed, failed


def _waiting() -> int:
    """Set, not counted up and down: the number from the database, right again at each change."""
    return UsageDeadLetter.objects.filter(replayed_at__isnull=True).count()
