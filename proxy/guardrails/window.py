"""Output filtering on a stream: a sliding window across chunk boundaries.

Text is held back from the earliest position where a match may have started that the next chunk could
complete — at most the longest match any output rule can make, usually much less: a PEM block or a JWT
is waited for only once its opening literal has been seen, an email only once there is an "@" or a
word that could be its local part (SideMatcher.hold_from). A match found that runs past the cut moves
the cut back to its start. Text is scanned in batches of SCAN_BATCH new characters, within the limit.
"""

from __future__ import annotations

from typing import Protocol

from proxy.guardrails.matching import Detection

SCAN_BATCH = 32


class OutputSide(Protocol):
    """What a session gives its output filters (see policy.GuardrailSession)."""

    def detect_output(self, text: str, pos: int) -> list[Detection]: ...

    def render_output(self, text: str, start: int, end: int, detections: list[Detection]) -> str: ...

    def output_hold_from(self, text: str) -> int: ...


class OutputFilter:
    """Filters one output text channel (one choice, one content block) chunk by chunk."""

    def __init__(self, side: OutputSide, max_hold: int) -> None:
        self._side = side
        self._max_hold = max_hold
        self._unscanned = 0
        self._buffer = ""
        self._released = 0  # characters of the buffer already released (kept as look-behind context)

    def feed(self, text: str) -> str:
        """The text that is safe to release now (masked and restored); may raise GuardrailBlocked."""
        if not text:
            return ""
        self._buffer += text
        self._unscanned += len(text)
        # Scanning costs ~10-20 µs whatever the chunk's size, and streams come a few characters at a
        # time: wait for SCAN_BATCH new characters unless that would hold back more than the limit.
        if self._unscanned < SCAN_BATCH and len(self._buffer) - self._released < self._max_hold:
            return ""
        return self._release(final=False)

    def finish(self) -> str:
        """The held-back tail, processed."""
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        self._unscanned = 0
        buffer, pos = self._buffer, self._released
        detections = self._side.detect_output(buffer, pos)
        cut = len(buffer) if final else max(pos, self._side.output_hold_from(buffer))
        # A match running past the cut: one that starts beyond the longest match's reach from the end
        # is final (it cannot grow) and is released whole; one that starts closer might still grow and
        # is held from its start — but never back into a final match already let through.
        settled = len(buffer) - self._max_hold
        floor = pos
        moved = not final
        while moved:
            moved = False
            for d in detections:
                if d.start < cut < d.end:
                    new_cut = d.end if d.start <= settled else max(floor, d.start)
                    if new_cut != cut:
                        if new_cut > cut:
                            floor = new_cut
                        cut, moved = new_cut, True
                        break
        final_detections = [d for d in detections if d.end <= cut]
        out = self._side.render_output(buffer, pos, cut, final_detections)
        # keep a little released text as context for look-behinds (\b, "(?<!\d)") of the next scan
        keep_from = max(0, cut - 8)
        self._buffer = buffer[keep_from:]
        self._released = cut - keep_from
        return out
