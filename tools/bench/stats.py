"""Latency histograms small enough for a 30-minute run (microseconds, three significant digits), and the
result of one load, whichever tool drove it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


def _bucket(micros: float) -> int:
    value = int(micros)
    if value < 1000:
        return value
    digits = len(str(value)) - 3
    return round(value, -digits)


class Histogram:
    __slots__ = ("counts", "total", "sum")

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.total = 0
        self.sum = 0.0

    def add(self, micros: float) -> None:
        self.counts[_bucket(micros)] += 1
        self.total += 1
        self.sum += micros

    def percentile(self, percent: float) -> float:
        if not self.total:
            return 0.0
        rank = max(1, round(self.total * percent / 100))
        seen = 0
        for value in sorted(self.counts):
            seen += self.counts[value]
            if seen >= rank:
                return float(value)
        return float(max(self.counts))

    def summary(self) -> LatencySummary:
        return LatencySummary(
            p50_us=self.percentile(50),
            p90_us=self.percentile(90),
            p99_us=self.percentile(99),
            max_us=float(max(self.counts)) if self.counts else 0.0,
            mean_us=self.sum / self.total if self.total else 0.0,
        )


@dataclass(slots=True, frozen=True)
class LatencySummary:
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float
    mean_us: float

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> LatencySummary:
        return cls(**{name: float(data.get(name, 0.0)) for name in cls.__slots__})


@dataclass(slots=True, frozen=True)
class LoadResult:
    tool: str
    requests: int
    elapsed_s: float
    errors: int  # failed connections, timeouts and non-2xx answers
    latency: LatencySummary
    first_event: LatencySummary | None = None
    # What the failures were ("503": 533, "ServerDisconnectedError": 2; wrk: "non-2xx", "socket"): a
    # failed run says why, so a breaker opened by a stalled Redis reads differently from a crash.
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    def describe_failures(self) -> str:
        kinds = ", ".join(f"{kind}: {count}" for kind, count in sorted(self.failures.items()))
        return f"{self.errors} ({kinds})" if kinds else str(self.errors)
