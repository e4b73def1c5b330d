"""Persisted state (`--storage.path=DIR`): what a restart would otherwise re-download.

The whole `Snapshot` (every `PairState`: cursors, rows and buckets seen, the SLO's arrivals,
judged buckets and counters, the daily aggregates; the probe choices) is written to
`DIR/exporter-state.json` and read back before the first poll. The codec is generic
(exporter/statecodec.py walks the dataclasses by their type hints), so a new state field of
a plain type (None, bool, int, float, str, date, tuple, frozenset, Mapping, a frozen
dataclass) needs no change here.

- Written atomically: a temp file in DIR, fsync, rename, fsync of DIR. At most one write per
  `min_interval` seconds on change (a writer thread) and once at a clean stop; a state that
  carries new SLO verdicts or rejected-row counts is written *before* it is published, so a
  crash never lets a scrape see a counter that the next process would restore lower
  (Prometheus would take the drop for a reset and count the whole value again).
- Read defensively: a missing, unreadable, truncated, corrupt, foreign (another format
  version, another `iss.base_url`, none of our pairs) or future-dated file is ignored with
  ONE warning line and the exporter starts fresh; it never crashes the process.
- What is restored: every field but the health of this process (`VOLATILE`). A state of an
  earlier day is restored as it is: the poller's own day change drops its cursors, and the
  SLO judges only buckets after this start (`since_ts`), so yesterday is never judged from a
  day it did not watch. A state of today continues the previous process's judging: buckets
  judged before are not judged again, buckets due while it was down are judged once.
- An unwritable DIR costs a warning (once per failure episode) and
  `algopack_state_persist_failures_total`; polling goes on.
- No secrets: the state holds ISS data and counters only; `iss.base_url` is kept as a hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .state import PairState, Snapshot, StateStore
from .statecodec import CodecError, decode, encode

__all__ = ["CodecError", "Loaded", "PersistentStore", "StateStorage", "StorageCollector", "decode", "encode"]

log = logging.getLogger("exporter.storage")

FORMAT = "algopack-exporter-state"
VERSION = 1
FILE_NAME = "exporter-state.json"
MAX_STATE_BYTES = 64 * 1024 * 1024
MIN_INTERVAL_SECONDS = 2.0
FUTURE_SLACK_SECONDS = 300.0  # a state saved later than now + this is another timeline (clock moved back)
# The health of one process: never restored (a restarted exporter has not polled yet).
VOLATILE = frozenset({"polled", "up", "polls_total", "errors", "duration", "last_success_ts", "last_error",
                      "next_poll_ts"})
# Published counters: a state that changes them is written before it is published.
URGENT = ("buckets_total", "bucket_delay", "rejected")


# ---- the state file ------------------------------------------------------------------


def fingerprint(base_url: str) -> str:
    """Which upstream the state belongs to, without keeping the URL (it may carry a userinfo)."""
    return hashlib.sha256(base_url.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Loaded:
    snapshot: Snapshot
    saved_ts: float
    since_ts: float | None      # the SLO judging start to continue (None: a state of an earlier day)
    pairs: int


def _without_volatile(state: PairState) -> PairState:
    defaults = PairState(market=state.market, endpoint=state.endpoint)
    return replace(state, **{name: getattr(defaults, name) for name in VOLATILE if hasattr(defaults, name)})


class StateStorage:
    """Reads and writes `DIR/exporter-state.json`; `start()` runs the debounced writer."""

    def __init__(self, directory: str | Path, clock, upstream: str, since: Callable[[], float] | None = None,
                 min_interval: float = MIN_INTERVAL_SECONDS):
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self.clock = clock
        self.upstream = fingerprint(upstream)
        self.since = since or clock.timestamp
        self.min_interval = float(min_interval)
        self.store: StateStore | None = None
        self.loaded = False
        self.writes = 0
        self.failures = 0
        self.last_write_ts: float | None = None
        self.write_lock = threading.RLock()
        self._failing = False
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_write_mono = 0.0

    # ---- reading --------------------------------------------------------------------

    def load(self, pairs: Iterable[tuple[str, str]]) -> Loaded | None:
        """The saved state for `pairs`, or None (nothing saved, or ignored with one warning)."""
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            log.info("no saved state path=%s", self.path)
            return None
        except OSError as exc:
            return self._ignored("unreadable", exc.strerror or type(exc).__name__)
        if len(raw) > MAX_STATE_BYTES:
            return self._ignored("too-large", f"over {MAX_STATE_BYTES} bytes")
        try:
            loaded = self._parse(raw, tuple(pairs))
        except CodecError as exc:
            return self._ignored("foreign" if str(exc).startswith("foreign") else "corrupt", str(exc))
        except (ValueError, RecursionError, MemoryError) as exc:  # bad JSON, bad UTF-8, a nesting bomb
            return self._ignored("corrupt", f"{type(exc).__name__}: {str(exc)[:120]}")
        except Exception as exc:  # never crash the start on a state file
            return self._ignored("corrupt", f"{type(exc).__name__}: {str(exc)[:120]}")
        self.loaded = True
        log.info("state loaded path=%s pairs=%d saved=%s continue_slo=%s", self.path, loaded.pairs,
                 datetime.fromtimestamp(loaded.saved_ts, self.clock.now().tzinfo).isoformat(timespec="seconds"),
                 loaded.since_ts is not None)
        return loaded

    def restore_into(self, store: PersistentStore, poller) -> Loaded | None:
        """Load the saved state into `store` before the first poll; the SLO of a state of
        today goes on judging from the previous process's start (`poller.started_ts`)."""
        self.store = store
        self.since = lambda: poller.started_ts
        loaded = self.load(store.snapshot.pairs)
        if loaded is not None:
            store.restore(loaded.snapshot)
            if loaded.since_ts is not None:
                poller.started_ts = loaded.since_ts
        return loaded

    def _ignored(self, reason: str, detail: str) -> None:
        log.warning("state ignored path=%s reason=%s detail=%s; starting fresh", self.path, reason, detail[:200])
        return None

    def _parse(self, raw: bytes, pairs: tuple[tuple[str, str], ...]) -> Loaded:
        doc = json.loads(raw.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise CodecError("foreign: not an exporter state file")
        if doc.get("version") != VERSION:
            raise CodecError(f"foreign: format version {doc.get('version')!r:.20}, this exporter reads {VERSION}")
        if doc.get("upstream") != self.upstream:
            raise CodecError("foreign: saved for another iss.base_url")
        saved_ts = decode(doc.get("saved_ts"), float)
        since_ts = decode(doc.get("since_ts"), float)
        now = self.clock.now()
        if saved_ts > now.timestamp() + FUTURE_SLACK_SECONDS:
            raise CodecError("foreign: saved in the future (the clock moved back, or another run's state)")
        snapshot = decode(doc.get("snapshot"), Snapshot)
        saved = {pair: state for pair, state in snapshot.pairs.items() if pair in pairs and state.pair == pair}
        if not saved:
            raise CodecError("foreign: none of the configured pairs")
        states = {pair: _without_volatile(saved[pair]) if pair in saved else PairState(market=pair[0], endpoint=pair[1])
                  for pair in pairs}
        same_day = datetime.fromtimestamp(saved_ts, now.tzinfo).date() == now.date()
        return Loaded(replace(snapshot, pairs=MappingProxyType(states)), saved_ts,
                      min(since_ts, now.timestamp()) if same_day else None, len(saved))

    # ---- writing --------------------------------------------------------------------

    def document(self, snapshot: Snapshot) -> bytes:
        doc = {"format": FORMAT, "version": VERSION, "upstream": self.upstream,
               "saved_ts": self.clock.timestamp(), "since_ts": float(self.since()),
               "snapshot": encode(replace(snapshot, pairs=MappingProxyType(
                   {pair: _without_volatile(state) for pair, state in snapshot.pairs.items()})))}
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    def write(self, snapshot: Snapshot | None = None) -> bool:
        """Write `snapshot` (default: the store's current one) atomically; False on failure."""
        with self.write_lock:
            if snapshot is None:
                if self.store is None:
                    return False
                snapshot = self.store.snapshot
            tmp = self.directory / f".{FILE_NAME}.{os.getpid()}.tmp"
            try:
                data = self.document(snapshot)
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, self.path)
                self._fsync_directory()
            except (OSError, CodecError, ValueError) as exc:
                self.failures += 1
                try:
                    tmp.unlink(missing_ok=True)
                except OSError:
                    pass
                if not self._failing:
                    self._failing = True
                    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                    log.warning("state not saved path=%s error=%s; polling goes on, retrying on the next change",
                                self.path, str(detail)[:200])
                return False
            if self._failing:
                self._failing = False
                log.info("state saved again path=%s after_failures=%d", self.path, self.failures)
            self.writes += 1
            self.last_write_ts = self.clock.timestamp()
            self._last_write_mono = time.monotonic()
            return True

    def _fsync_directory(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def changed(self) -> None:
        """The store changed something worth keeping: write within `min_interval`."""
        self._dirty.set()

    def start(self, store: StateStore) -> None:
        self.store = store
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="state-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait()
            if self._stopping.is_set():
                return
            pause = self._last_write_mono + self.min_interval - time.monotonic()
            if pause > 0 and self._stopping.wait(pause):
                return
            self._dirty.clear()
            self.write()

    def stop(self) -> None:
        """Stop the writer and write once more (a clean shutdown loses nothing)."""
        self._stopping.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.store is not None:
            self.write()


class PersistentStore(StateStore):
    """A `StateStore` that tells its `StateStorage` about changes; a state with new published
    counters (`URGENT`) is written before the scrape can see it."""

    def __init__(self, pairs: Iterable[tuple[str, str]], storage: StateStorage):
        super().__init__(pairs)
        self.storage = storage

    def restore(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def put(self, state: PairState, now_ts: float = 0.0) -> None:
        old = self.snapshot.pairs.get(state.pair)
        if old is not None and any(getattr(old, name) != getattr(state, name) for name in URGENT):
            with self.storage.write_lock:
                pairs = dict(self.snapshot.pairs)
                pairs[state.pair] = state
                self.storage.write(replace(self.snapshot, pairs=MappingProxyType(pairs)))
                super().put(state, now_ts)
            return
        super().put(state, now_ts)
        if old is None or _kept_fields_differ(old, state):
            self.storage.changed()

    def set_probe(self, *args, **kwargs) -> None:
        super().set_probe(*args, **kwargs)
        self.storage.changed()


def _kept_fields_differ(old: PairState, new: PairState) -> bool:
    return any(getattr(old, f.name) != getattr(new, f.name) for f in dataclasses.fields(new) if f.name not in VOLATILE)


class StorageCollector:
    """algopack_state_* : whether a state was loaded at start, and the writes.

    # TYPE algopack_state_loaded gauge
    algopack_state_loaded 1.0
    # TYPE algopack_state_persists_total counter
    algopack_state_persists_total 42.0
    # TYPE algopack_state_persist_failures_total counter
    algopack_state_persist_failures_total 0.0
    # TYPE algopack_state_last_persist_timestamp_seconds gauge
    algopack_state_last_persist_timestamp_seconds 1.7644e+09
    """

    def __init__(self, storage: StateStorage):
        self.storage = storage

    def collect(self):
        storage = self.storage
        loaded = GaugeMetricFamily("algopack_state_loaded",
                                   "1 if the saved state (--storage.path) was loaded at start, 0 if none or ignored")
        loaded.add_metric([], 1.0 if storage.loaded else 0.0)
        writes = CounterMetricFamily("algopack_state_persists", "State file writes that succeeded")
        writes.add_metric([], float(storage.writes))
        failures = CounterMetricFamily("algopack_state_persist_failures",
                                       "State file writes that failed (unwritable or full --storage.path)")
        failures.add_metric([], float(storage.failures))
        last = GaugeMetricFamily("algopack_state_last_persist_timestamp_seconds",
                                 "Last successful state file write (exporter clock); NaN before the first")
        last.add_metric([], float("nan") if storage.last_write_ts is None else storage.last_write_ts)
        yield from (loaded, writes, failures, last)
