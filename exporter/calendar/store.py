"""The hot-reloading calendar: the last good `Calendar` of a file, re-read when it changes.

    store = CalendarStore(path)          # raises CalendarError if the first load fails
    store.current -> Calendar            # last good one
    store.last_reload_successful -> bool
    store.last_error -> str | None
    store.check() -> bool                # re-stat the file; reload if changed; True if reloaded OK
    store.start_watching(interval=1.0)   # daemon thread calling check()
    store.stop()
    store.on_reload                      # list of callables(store), called after every
                                         # reload attempt (success or failure)
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from .fileformat import parse_calendar_text
from .model import Calendar, CalendarError
from .yamldoc import decode

log = logging.getLogger("exporter.calendar")


def _stat_signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class CalendarStore:
    """Holds the last good calendar and hot-reloads the file when it changes."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self.on_reload: list[Callable[[CalendarStore], None]] = []
        self.last_reload_successful = True
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._signature: tuple[int, int, int] | None = None
        calendar, signature = self._read()
        self.current: Calendar = calendar
        self._signature = signature

    def _read(self) -> tuple[Calendar, tuple[int, int, int]]:
        """Read through one open file so the signature matches the content read."""
        try:
            with open(self.path, "rb") as handle:
                signature = _stat_signature(os.fstat(handle.fileno()))
                raw = handle.read()
        except OSError as exc:
            raise CalendarError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        try:
            return parse_calendar_text(decode(raw, self.path), origin=self.path), signature
        except CalendarError:
            self._signature = signature  # do not retry the same broken file every second
            raise

    def check(self) -> bool:
        """Re-stat the file; reload if it changed. True if a reload happened and succeeded."""
        with self._lock:
            outcome = self._check_locked()
        if outcome is not None:
            self._notify()
        return bool(outcome)

    def _check_locked(self) -> bool | None:
        """True: reloaded; False: reload failed; None: nothing changed."""
        try:
            signature = _stat_signature(os.stat(self.path))
        except OSError as exc:
            error = f"{self.path}: cannot read: {exc.strerror or exc}"
            if self._signature is None and self.last_error == error:
                return None  # still missing: report once
            self._signature = None
            return self._failed(error)
        if signature == self._signature:
            return None
        try:
            calendar, self._signature = self._read()
        except CalendarError as exc:
            return self._failed(str(exc))
        self.current = calendar
        self.last_reload_successful = True
        self.last_error = None
        log.info("event=calendar_reloaded path=%s days=%d", self.path, len(calendar.days))
        return True

    def _failed(self, error: str) -> bool:
        self.last_reload_successful = False
        self.last_error = error
        log.error("event=calendar_reload_failed path=%s error=%r", self.path, error)
        return False

    def _notify(self) -> None:
        for callback in list(self.on_reload):
            try:
                callback(self)
            except Exception:  # a broken listener must not stop reloading
                log.exception("event=calendar_on_reload_failed path=%s", self.path)

    def start_watching(self, interval: float = 1.0) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, args=(interval,), name="calendar-watch", daemon=True)
        self._thread.start()

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.check()
            except Exception:  # keep watching whatever happens
                log.exception("event=calendar_check_failed path=%s", self.path)

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


__all__ = ["CalendarStore"]
