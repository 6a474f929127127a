"""Streaming splat detection: feed console chunks, get each splat once its report is complete.

The VM feeds console output as it arrives; a report is complete at its end marker, at the next
report, or at a line limit, so a panic is known within milliseconds and a doomed run can stop
early.  ``finish`` flushes a report cut off by the end of the log.
"""

from harness.splat.lines import Line, split
from harness.splat.model import Splat
from harness.splat.parser import Parser, ScanState, dedupe


class SplatStream:
    def __init__(self, parser: Parser | None = None) -> None:
        self._parser = parser or Parser()
        self._partial = ""
        self._lines: list[Line] = []
        self._state = ScanState()
        self._seen: set[str] = set()

    @property
    def splats(self) -> list[Splat]:
        """Distinct splats so far, in order (a later panic may have marked one fatal)."""
        return dedupe(self._state.splats)

    @property
    def panicked(self) -> bool:
        return any(s.fatal for s in self._state.splats)

    def _emit(self, splats: list[Splat]) -> list[Splat]:
        fresh = [s for s in splats if s.title not in self._seen]
        self._seen.update(s.title for s in fresh)
        return dedupe(fresh)

    def feed(self, chunk: str) -> list[Splat]:
        """Adds console text; returns splats completed by it (each title once per stream)."""
        text = self._partial + chunk
        complete, sep, self._partial = text.rpartition("\n")
        if not sep:
            self._partial = text
            return []
        self._lines += split(complete, start_index=len(self._lines))
        return self._emit(self._parser.scan(self._lines, self._state, final=False))

    def finish(self) -> list[Splat]:
        """Ends the stream: the last report is complete whatever its state."""
        if self._partial:
            self._lines += split(self._partial, start_index=len(self._lines))
            self._partial = ""
        return self._emit(self._parser.scan(self._lines, self._state, final=True))


def parse_log(text: str) -> list[Splat]:
    """All distinct splats of a whole console log, in order."""
    stream = SplatStream()
    stream.feed(text)
    stream.finish()
    return stream.splats
