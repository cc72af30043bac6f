"""Agent sessions (X-Tokonomics-Session): one run's calls, read from the usage records of one account.

No rollup keeps the session (a run id is a new value per run: it would multiply their cells), so sessions
are read from the raw records, through the partial index on (account, session, created_at): a session
outlives retention only in the rollups' totals, without its id."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Max, Min, Q, QuerySet, Sum

from billing.models import Account, UsageRecord

SESSION_LIST_LIMIT = 50
SESSION_LIST_DAYS = 30


@dataclass(frozen=True)
class SessionRow:
    """One run as the sessions list shows it."""

    session: str
    name: str
    calls: int
    denied: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    first_at: datetime
    last_at: datetime
    models: list[str]

    @property
    def duration(self) -> timedelta:
        return self.last_at - self.first_at


@dataclass(frozen=True)
class Rollup:
    """A session's calls of one model (or provider)."""

    name: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal


@dataclass(frozen=True)
class SessionSummary:
    """One run: totals, its git context at its first and last call, and rollups by model and provider."""

    row: SessionRow
    git_start: str
    git_end: str
    by_model: list[Rollup] = field(default_factory=list)
    by_provider: list[Rollup] = field(default_factory=list)


def _session_records(account: Account) -> QuerySet[UsageRecord]:
    return UsageRecord.objects.filter(account=account).filter(~Q(session=""))


_TOTALS = {
    "calls": Count("id"),
    "denied": Count("id", filter=~Q(denied_scope="")),
    "input_tokens": Sum("input_tokens"),
    "output_tokens": Sum("output_tokens"),
    "cost": Sum("cost_usd"),
}


def _models(records: QuerySet[UsageRecord], sessions: list[str]) -> dict[str, list[str]]:
    """{session: its models, sorted}, in one query (no ArrayAgg: the dev server may run on SQLite)."""
    out: dict[str, list[str]] = {}
    rows = (records.filter(session__in=sessions).exclude(labels__model="")
            .values_list("session", "labels__model").distinct())
    for session, model in rows.order_by("session", "labels__model"):
        out.setdefault(session, []).append(model)
    return out


def _row(values: Mapping[str, Any], models: list[str]) -> SessionRow:
    return SessionRow(
        session=values["session"], name=values["name"] or "", calls=values["calls"], denied=values["denied"],
        input_tokens=values["input_tokens"] or 0, output_tokens=values["output_tokens"] or 0,
        cost_usd=values["cost"] or Decimal(0), first_at=values["first_at"], last_at=values["last_at"],
        models=models,
    )


def session_list(
    *, account: Account, since: datetime | None = None, limit: int = SESSION_LIST_LIMIT
) -> list[SessionRow]:
    """The account's sessions with a call since `since` (default: the last 30 days), most recent first."""
    since = since or datetime.now(UTC) - timedelta(days=SESSION_LIST_DAYS)
    records = _session_records(account).filter(created_at__gte=since)
    rows = list(
        records.values("session")
        .annotate(name=Max("session_name"), first_at=Min("created_at"), last_at=Max("created_at"), **_TOTALS)
        .order_by("-last_at")[:limit]
    )
    models = _models(records, [row["session"] for row in rows])
    return [_row(values, models.get(values["session"], [])) for values in rows]


def session_get(*, account: Account, session: str) -> SessionSummary | None:
    """One session of the account, or None (another account's session is never found)."""
    records = _session_records(account).filter(session=session)
    totals = records.aggregate(name=Max("session_name"), first_at=Min("created_at"), last_at=Max("created_at"),
                               **_TOTALS)
    if not totals["calls"]:
        return None
    ordered = records.exclude(session_git="").order_by("created_at", "id").values_list("session_git", flat=True)
    git_start = ordered.first() or ""
    git_end = ordered.last() or ""

    def rollups(column: str) -> list[Rollup]:
        rows = records.values(column).annotate(**_TOTALS).order_by("-cost", column)
        return [Rollup(row[column], row["calls"], row["input_tokens"] or 0, row["output_tokens"] or 0,
                       row["cost"] or Decimal(0)) for row in rows]

    row = _row({**totals, "session": session}, _models(records, [session]).get(session, []))
    return SessionSummary(row, git_start, git_end, rollups("model"),
                          rollups("provider"))


def session_row_dict(row: SessionRow) -> dict[str, Any]:
    """A run as plain JSON values (money as decimal strings): the REST API's and the summary file's shape."""
    return {
        "session": row.session, "name": row.name, "calls": row.calls, "denied": row.denied,
        "input_tokens": row.input_tokens, "output_tokens": row.output_tokens, "cost_usd": f"{row.cost_usd:f}",
        "first_at": row.first_at.isoformat(), "last_at": row.last_at.isoformat(),
        "duration_seconds": row.duration.total_seconds(), "models": row.models,
    }


def session_summary_dict(summary: SessionSummary) -> dict[str, Any]:
    """One run with its rollups by model and provider, as JSON a team can commit next to their code."""
    def rollups(items: list[Rollup]) -> list[dict[str, Any]]:
        return [{"name": r.name, "calls": r.calls, "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
                 "cost_usd": f"{r.cost_usd:f}"} for r in items]

    return {**session_row_dict(summary.row), "git_start": summary.git_start, "git_end": summary.git_end,
            "by_model": rollups(summary.by_model), "by_provider": rollups(summary.by_provider)}
