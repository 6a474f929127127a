"""Follows the console log QEMU writes, as it grows, for splats and silence.

QEMU writes the serial console straight to a file (complete even if we stall); this thread
reads the new bytes every few milliseconds and hands them to a callback (the streaming splat
parser).  It also remembers when the guest last printed, for the boot-silence watchdog.
"""

import codecs
import threading
import time
from collections.abc import Callable
from pathlib import Path

POLL = 0.02


class ConsoleWatcher:
    def __init__(self, path: Path, on_text: Callable[[str], None]) -> None:
        self.path = path
        self._on_text = on_text
        self._offset = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._chunks: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.last_output = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="console", daemon=True)
        self._thread.start()

    def _read_new(self) -> None:
        with self._lock:
            try:
                with self.path.open("rb") as f:
                    f.seek(self._offset)
                    data = f.read()
            except FileNotFoundError:
                return
            if not data:
                return
            self._offset += len(data)
            self.last_output = time.monotonic()
            text = self._decoder.decode(data)
            self._chunks.append(text)
            self._on_text(text)

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            self._read_new()

    def flush(self) -> None:
        """Reads whatever QEMU wrote up to now (call after QEMU exited, before judging)."""
        self._read_new()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.flush()

    def text(self) -> str:
        with self._lock:
            return "".join(self._chunks)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().replace("\r", "").splitlines()[-lines:])

    def silent_for(self) -> float:
        return time.monotonic() - self.last_output
