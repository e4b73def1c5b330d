"""Wiring: config → ISS client, calendar, state, poller, scheduler, collector, HTTP."""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from .calendar import CalendarStore
from .calendar.syncjob import CalendarSyncCollector, CalendarSyncJob
from .clock import Clock
from .collector import AlgopackCollector
from .config import split_listen_address
from .http import ExporterHTTPServer
from .iss import IssClient, IssStats
from .poller import Poller
from .scheduler import PollScheduler
from .state import StateStore
from .storage import PersistentStore, StateStorage, StorageCollector

log = logging.getLogger("exporter")

LAST_ERROR_CHARS = 300  # /jobs shows at most this much of an error text
READY_AFTER_SECONDS = 60.0  # real seconds; ready anyway if ISS is slow to answer the first polls


class ExporterApp:
    def __init__(self, config, clock: Clock, storage_path: str | None = None):
        self.config = config
        self.clock = clock
        self.stats = IssStats()
        self.client = IssClient(config.iss, self.stats)
        self.calendars = CalendarStore(str(config.calendar.file))
        # --storage.path: the state a restart would otherwise re-download (exporter/storage.py).
        self.storage = StateStorage(storage_path, clock, config.iss.base_url) if storage_path else None
        pairs = config.enabled_pairs()
        self.store = PersistentStore(pairs, self.storage) if self.storage else StateStore(pairs)
        self.poller = Poller(config, self.client, self.calendars, clock, self.store)
        if self.storage is not None:
            self.storage.restore_into(self.store, self.poller)  # before the first poll
        self.scheduler = PollScheduler(self.poller, clock, max_workers=config.poll.max_workers)
        self.calendar_sync: CalendarSyncJob | None = None
        if config.calendar.sync.enabled:
            self.calendar_sync = CalendarSyncJob(config.calendar.sync, config.calendar.file, self.client, clock)
        markets = sorted({market for market, _ in config.enabled_pairs()})
        self.collector = AlgopackCollector(self.store, self.calendars, clock, self.stats,
                                           config.delay_threshold_seconds, config.poll, markets,
                                           slo_config=config.slo)
        # Collectors without names (ours describes nothing: its families are dynamic) must still
        # answer `/metrics?name[]=...`: prometheus_client only filters those when told so.
        self.registry = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
        self.registry.register(self.collector)
        self.registry.register(CalendarSyncCollector(self.calendar_sync, clock))
        ProcessCollector(registry=self.registry)
        if self.storage is not None:
            self.registry.register(StorageCollector(self.storage))
        self.http: ExporterHTTPServer | None = None
        self._started = 0.0
        self._stop = threading.Event()

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self, listen_address: str) -> None:
        self.calendars.on_reload.append(self._calendar_changed)
        self.calendars.start_watching(self.config.calendar.reload_interval_seconds)
        host, port = split_listen_address(listen_address)
        self.http = ExporterHTTPServer((host or "127.0.0.1", port), self.registry, self.jobs, self.ready)
        self.http.start()
        self._started = time.monotonic()
        if self.storage is not None:
            self.storage.start(self.store)
        self.scheduler.start()
        if self.calendar_sync is not None:
            self.scheduler.add_calendar_sync(self.calendar_sync)
        log.info("exporter listening url=%s pairs=%d", self.http.url, len(self.store.snapshot.pairs))

    def ready(self) -> bool:
        if not self.scheduler.scheduler.running:
            return False
        if time.monotonic() - self._started > READY_AFTER_SECONDS:
            return True
        # Ready once every pair that should have been polled at start has been.
        return all(state.polled or not self.scheduler.polled_at_start(state.pair)
                   for state in self.store.snapshot.pairs.values())

    def jobs(self) -> list[dict]:
        """The scheduler's jobs for /jobs, each poll with its pair's last error (None after a success)."""
        rows = self.scheduler.jobs()
        pairs = self.store.snapshot.pairs
        for row in rows:
            kind, _, rest = row["id"].partition(":")
            market, _, endpoint = rest.partition(":")
            state = pairs.get((market, endpoint)) if kind == "poll" else None
            error = state.last_error if state is not None else None
            if error is None and row["id"].startswith("calendar") and self.calendar_sync is not None:
                error = self.calendar_sync.last_error
            row["last_error"] = error[:LAST_ERROR_CHARS] if error else None
        return rows

    def _calendar_changed(self, *_args) -> None:
        log.info("calendar reloaded; re-planning polls")
        self.scheduler.replan_all()

    def wait(self) -> None:
        while not self._stop.wait(1.0):
            pass

    def stop(self) -> None:
        self._stop.set()
        self.scheduler.shutdown()
        self.calendars.stop()
        if self.storage is not None:
            self.storage.stop()  # the last write
        if self.http is not None:
            self.http.stop()

    # ---- one-shot -------------------------------------------------------------------

    def poll_all_once(self) -> bool:
        """Poll every enabled pair once, whatever the session; True if all succeeded."""
        ok = True
        for pair in self.store.snapshot.pairs:
            ok = self.poller.poll(pair, force=True).up and ok
        return ok
