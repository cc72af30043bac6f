"""Output filtering on a stream: a sliding window across chunk boundaries.

Only the last `hold` characters (the longest match any output rule can make) are held back; anything
before that cannot be the start of a match that the next chunk completes, unless a match found in the
window runs past the cut, in which case the cut moves back to that match's start.
"""

from __future__ import annotations

from typing import Protocol

from proxy.guardrails.matching import Detection


class OutputSide(Protocol):
    """What a session gives its output filters (see policy.GuardrailSession)."""

    def detect_output(self, text: str, pos: int) -> list[Detection]: ...

    def render_output(self, text: str, start: int, end: int, detections: list[Detection]) -> str: ...


class OutputFilter:
    """Filters one output text channel (one choice, one content block) chunk by chunk."""

    def __init__(self, side: OutputSide, hold: int) -> None:
        self._side = side
        self._hold = hold
        self._buffer = ""
        self._released = 0  # characters of the buffer already released (kept as look-behind context)

    def feed(self, text: str) -> str:
        """The text that is safe to release now (masked and restored); may raise GuardrailBlocked."""
        if not text:
            return ""
        self._buffer += text
        return self._release(final=False)

    def finish(self) -> str:
        """The held-back tail, processed."""
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        buffer, pos = self._buffer, self._released
        detections = self._side.detect_output(buffer, pos)
        cut = len(buffer) if final else max(pos, len(buffer) - self._hold)
        moved = True
        while moved and not final:
            moved = False
            for d in detections:
                if d.start < cut < d.end:
                    cut, moved = d.start, True
        final_detections = [d for d in detections if d.end <= cut]
        out = self._side.render_output(buffer, pos, cut, final_detections)
        # keep a little released text as context for look-behinds (\b, "(?<!\d)") of the next scan
        keep_from = max(0, cut - 8)
        self._buffer = buffer[keep_from:]
        self._released = cut - keep_from
        return out
