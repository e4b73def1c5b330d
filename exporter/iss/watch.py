"""The whole-request deadline: one watchdog thread per client shuts down the socket of a request
whose deadline passed (also a trickling header read); urllib3 connections and pools that register
with it, and the requests adapter that uses them (no urllib3 retries or redirects)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

WATCHDOG_IDLE_SECONDS = 5.0  # the deadline thread ends after this long without a request
_local = threading.local()  # .watch: the _Watch of the request this thread is making


class _DeadlinePassed(Exception):
    """Raised inside urllib3 when a request would start after its deadline (not retried there)."""


class _Watch:
    __slots__ = ("deadline", "seconds", "conn", "expired")

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.conn: Any = None
        self.expired = False

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def _shut(conn: Any) -> None:
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Watchdog:
    """One thread per client: shuts down the socket of a request whose deadline passed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watches: set[_Watch] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, seconds: float) -> _Watch:
        watch = _Watch(seconds)
        with self._cond:
            self._watches.add(watch)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="iss-deadline-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        return watch

    def unwatch(self, watch: _Watch) -> None:
        with self._cond:
            self._watches.discard(watch)
            watch.conn = None

    def attach(self, conn: Any) -> None:
        """Called by the connection of the current thread's request (before it sends)."""
        watch = getattr(_local, "watch", None)
        if watch is None:
            return
        with self._cond:
            watch.conn = conn
            if watch.expired or watch.remaining() <= 0:
                watch.expired = True
                _shut(conn)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            thread, self._thread = self._thread, None
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._watches:
                    # idle: wait a little for the next request, else end (started again lazily)
                    self._cond.wait(WATCHDOG_IDLE_SECONDS)
                    if not self._watches:
                        if self._thread is threading.current_thread():
                            self._thread = None
                        return
                now = time.monotonic()
                wait: float | None = None
                for watch in list(self._watches):
                    if watch.deadline <= now:
                        watch.expired = True
                        _shut(watch.conn)
                        self._watches.discard(watch)
                    else:
                        left = watch.deadline - now
                        wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)


def _attach_current(conn: Any) -> None:
    watchdog = getattr(_local, "watchdog", None)
    if watchdog is not None:
        watchdog.attach(conn)
        watch = getattr(_local, "watch", None)
        if watch is not None and watch.expired and getattr(conn, "sock", None) is None:
            raise _DeadlinePassed()


class _Watched:
    """Mixin for urllib3 connections: the socket of the current request is watched by the
    deadline watchdog from connect (new connection) or request (reused one) on."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _attach_current(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_current(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _Adapter(HTTPAdapter):
    """No urllib3 retries or redirects (the client does both), watched connections."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedPool, "https": _WatchedHTTPSPool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools bring their own connection class
            manager.pool_classes_by_scheme = {"http": _WatchedPool, "https": _WatchedHTTPSPool}
        return manager
