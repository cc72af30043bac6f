from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alerts.models import AlertChannel, AlertEvent

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    succeeded: bool
    status_code: int | None = None
    error: str = ""


class Notifier(ABC):
    @abstractmethod
    def send(self, *, channel: AlertChannel, event: AlertEvent) -> DeliveryResult:
        """Deliver one event to one channel, once. Never raises for delivery failures: a failed
        result is retried by the caller with backoff."""
