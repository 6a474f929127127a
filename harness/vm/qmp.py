"""A small synchronous facade over qemu.qmp: commands and event waits, each with a timeout.

qemu.qmp is asyncio-only; scenario code is sequential.  The facade runs the client's event loop
in a daemon thread, so events are received (and logged to qmp.log) the moment QEMU sends them,
not only while a command is in flight.
"""

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from qemu.qmp import ExecuteError, QMPClient

from harness.errors import InfraError


class QMPError(Exception):
    """QEMU refused a command; the message is QEMU's own one-line description."""


class QMPAborted(Exception):
    """An event wait gave up early because its abort hook said the guest is gone."""


ABORT_POLL = 0.25  # how often an event wait asks its abort hook


def matches(data: Any, pattern: Any) -> bool:
    """Partial structural match: every key of ``pattern`` must match in ``data``."""
    if isinstance(pattern, Mapping):
        return isinstance(data, Mapping) and all(
            k in data and matches(data[k], v) for k, v in pattern.items()
        )
    return bool(data == pattern)


class QMP:
    def __init__(self, sock: socket.socket, log: TextIO, timeout: float = 10.0) -> None:
        self._log_file = log
        self._log_lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="qmp", daemon=True)
        self._thread.start()
        self._client = QMPClient("memharness")
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._start = time.monotonic()
        self._pump = asyncio.run_coroutine_threadsafe(self._pump_events(), self._loop)
        try:
            self._call(self._client.connect(sock), timeout)
        except Exception as exc:
            self.close()
            raise InfraError(f"QMP handshake failed: {exc}") from exc

    def _call(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _log(self, direction: str, payload: Any) -> None:
        with self._log_lock:
            stamp = time.monotonic() - self._start
            self._log_file.write(f"{stamp:9.3f} {direction} {json.dumps(payload, default=str)}\n")
            self._log_file.flush()

    async def _pump_events(self) -> None:
        async for event in self._client.events:
            record = dict(event)
            self._log("<-", record)
            with self._cond:
                self._events.append(record)
                self._cond.notify_all()

    def command(self, name: str, timeout: float = 30.0, **arguments: Any) -> Any:
        """Executes a QMP command and returns its result; QEMU errors raise QMPError."""
        self._log("->", {"execute": name, "arguments": arguments})
        try:
            result = self._call(self._client.execute(name, arguments or None), timeout)
        except ExecuteError as exc:
            desc = exc.error.error.desc
            self._log("<-", {"error": desc})
            raise QMPError(f"{name}: {desc}") from None
        except TimeoutError:
            raise InfraError(f"QMP {name} got no answer within {timeout:.0f} s") from None
        except Exception as exc:  # the connection went away (QEMU exited): qemu.qmp's own types
            raise InfraError(f"QMP {name} failed: {type(exc).__name__}: {exc}") from None
        self._log("<-", {"return": result})
        return result

    def wait_event(
        self,
        name: str,
        match: Mapping[str, Any] | None = None,
        timeout: float = 30.0,
        abort: Callable[[], str | None] | None = None,
    ) -> dict[str, Any]:
        """Consumes and returns the first (past or future) event ``name`` whose data matches.

        TimeoutError when none comes in time; QMPAborted as soon as ``abort`` returns a reason
        (a guest that panicked sends no more events, so waiting on would only waste the
        timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, event in enumerate(self._events):
                    if event.get("event") == name and matches(event.get("data", {}), match or {}):
                        return self._events.pop(i)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no QMP event {name} {dict(match or {})} within {timeout:.0f} s"
                    )
                reason = abort() if abort is not None else None
                if reason:
                    raise QMPAborted(f"stopped waiting for {name}: {reason}")
                self._cond.wait(min(remaining, ABORT_POLL) if abort else remaining)

    def discard(self, name: str, match: Mapping[str, Any] | None = None) -> int:
        """Drops received events ``name`` whose data matches; returns how many."""
        with self._cond:
            keep = [
                e
                for e in self._events
                if not (e.get("event") == name and matches(e.get("data", {}), match or {}))
            ]
            dropped = len(self._events) - len(keep)
            self._events[:] = keep
            return dropped

    def events(self) -> list[dict[str, Any]]:
        """Events received and not yet consumed (oldest first)."""
        with self._cond:
            return list(self._events)

    def close(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._pump.cancel)
            with contextlib.suppress(Exception):
                self._call(self._client.disconnect(), 5.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._loop.is_running():
            self._loop.close()
