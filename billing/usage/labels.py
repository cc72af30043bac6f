"""A record's labels as a label set (billing.models.UsageLabelSet): one row per distinct combination per
account, found or created by its digest.

The digest is an md5 of the labels written out unambiguously (each value prefixed with its length, tags in
code-point order of their names), computed the same way in Python (labels_digest, the ledger) and in SQL
(labels_digest_sql, bulk seeding and the migration that made the table); a test holds the two together."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction

from billing.models import LABEL_FIELDS, UsageLabelSet

LABEL_DEFAULTS: dict[str, Any] = {f.name: f.get_default() for f in UsageLabelSet._meta.concrete_fields
                                  if f.name in LABEL_FIELDS}

Labels = tuple  # the values of LABEL_FIELDS in order, tags as sorted (name, value) pairs


def labels_of(values: Mapping[str, Any]) -> Labels:
    """The labels of an event or a record's fields (a missing one takes its default), in LABEL_FIELDS order."""
    out: list[Any] = []
    for name in LABEL_FIELDS:
        value = values.get(name, LABEL_DEFAULTS[name])
        if name == "tags":
            value = tuple(sorted((str(k), str(v)) for k, v in (value or {}).items()))
        out.append(value)
    return tuple(out)


def labels_digest(labels: Labels) -> uuid.UUID:
    parts: list[str] = []
    for name, value in zip(LABEL_FIELDS, labels, strict=True):
        if name == "tags":
            parts.append(f"{len(value)}:")
            parts.extend(f"{len(k)}:{k}{len(v)}:{v}" for k, v in value)
        else:
            parts.append(f"{len(value)}:{value}")
    return uuid.UUID(hashlib.md5("".join(parts).encode(), usedforsecurity=False).hexdigest())


def labels_digest_sql(alias: str) -> str:
    """PostgreSQL: labels_digest over the columns LABEL_FIELDS of `alias` (our own names only)."""
    parts = []
    for name in LABEL_FIELDS:
        column = f"{alias}.{name}"
        if name == "tags":
            pairs = ("string_agg(length(t.key) || ':' || t.key || length(t.value) || ':' || t.value, '' "
                     "ORDER BY t.key COLLATE \"C\")")
            parts.append(f"(SELECT count(*) || ':' || coalesce({pairs}, '') "  # noqa: S608 (our names only)
                         f"FROM jsonb_each_text({column}) AS t)")
        else:
            parts.append(f"length({column}) || ':' || {column}")
    return f"md5({' || '.join(parts)})::uuid"


def label_set_ids(wanted: Iterable[tuple[int, Labels]]) -> dict[tuple[int, Labels], int]:
    """The id of each (account id, labels), creating the label sets not stored yet: one query when all are
    known (a batch's thousands of events share a few dozen sets). Two writers may create the same set at
    once: the unique digest lets one of them, and the other waits for it and then reads it."""
    named = {(account_id, labels_digest(labels)): (account_id, labels) for account_id, labels in set(wanted)}
    if not named:
        return {}
    ids = _found(named)
    missing = sorted((key for key in named if named[key] not in ids), key=lambda k: (k[0], k[1].bytes))
    if missing:
        with transaction.atomic():
            # In digest order: writers creating overlapping sets lock them in one order.
            UsageLabelSet.objects.bulk_create(
                [UsageLabelSet(account_id=account_id, digest=digest, **label_columns(named[(account_id, digest)][1]))
                 for account_id, digest in missing], ignore_conflicts=True, batch_size=1000)
        ids.update(_found({key: named[key] for key in missing}))
    return ids


def _found(named: dict[tuple[int, uuid.UUID], tuple[int, Labels]]) -> dict[tuple[int, Labels], int]:
    rows = UsageLabelSet.objects.filter(
        account_id__in={account_id for account_id, _ in named}, digest__in={digest for _, digest in named},
    ).values_list("account_id", "digest", "id")
    return {named[(account_id, digest)]: pk for account_id, digest, pk in rows if (account_id, digest) in named}


def label_columns(labels: Labels) -> dict[str, Any]:
    """The labels by field name, as a label set's columns (and a record read back) hold them."""
    return {name: dict(value) if name == "tags" else value for name, value in zip(LABEL_FIELDS, labels, strict=True)}
