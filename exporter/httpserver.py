"""A small HTTP/1.1 server that survives hostile clients with a bounded number of threads.

Issue 14: 1200 half-open connections used to cost 1200 threads, each rendering /metrics for
a dead peer. Here:

* One selector thread (`selectors.DefaultSelector`, epoll on Linux: no 1024-fd limit)
  accepts connections non-blocking, reads every request's header bytes itself and finishes
  any response the client is slow to take. It never renders.
* A fixed pool of `workers` threads (4) only ever receives COMPLETE requests and calls
  `respond(request)`. After the response the socket goes back to the selector (HTTP/1.1
  keep-alive, as Prometheus uses; pipelined requests are served in order).

Limits (keywords of `BoundedHTTPServer`):

* `header_timeout` (5 s): a request's header must be complete within this time of its first
  byte (of the accept, for a new connection); a slowloris client is closed.
* `idle_timeout` (60 s): a keep-alive connection without a new request is closed.
* `write_timeout` (10 s): a response that makes no progress (the client does not read) for
  this long is dropped; workers never block on a write.
* `max_header_bytes` (16 KiB): a larger header gets 431 and the connection is closed.
* `max_connections` (1024, less when RLIMIT_NOFILE is low): past it the oldest connection
  that never completed a request is closed first, then the longest idle one.

Only GET and HEAD are served by the exporter; request bodies are never read (a request that
announces one is answered, then its connection is closed).

A dead client costs no work: before a worker calls `respond`, it peeks at the socket
(MSG_PEEK|MSG_DONTWAIT); a peer that has closed is dropped. (So is a client that half-closes
right after its request; Prometheus, curl and requests never do.)
"""

from __future__ import annotations

import errno
import logging
import queue
import resource
import selectors
import socket
import threading
import time
from collections import deque

from .httpwire import BadRequest, Request, advance, parse_request, peer_closed, serialize

log = logging.getLogger("exporter.http")

_RECV_BYTES = 65536
_SWEEP_SECONDS = 0.2
TEXT = "text/plain; charset=utf-8"

_READ, _WORK, _WRITE = "read", "work", "write"


class _Conn:
    __slots__ = ("sock", "fd", "inbuf", "out", "state", "deadline", "served", "keep_alive", "last_active")

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.out: list[memoryview] | None = None  # unsent head and body (the body may be shared)
        self.state = _READ
        self.deadline = deadline
        self.served = 0
        self.keep_alive = True
        self.last_active = time.monotonic()


def _default_max_connections() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft - 128))


class BoundedHTTPServer:
    """Subclasses implement `respond(request) -> (status, headers, body)` (called on a worker)."""

    def __init__(self, address: tuple[str, int], *, workers: int = 4, header_timeout: float = 5.0,
                 idle_timeout: float = 60.0, write_timeout: float = 10.0, max_header_bytes: int = 16384,
                 max_connections: int | None = None):
        self.workers = workers
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.max_header_bytes = max_header_bytes
        self.max_connections = max_connections or _default_max_connections()
        # Counters for tests and debugging: accepted, requests, dead_dropped, timed_out, evicted.
        self.stats = dict.fromkeys(("accepted", "requests", "dead_dropped", "timed_out", "evicted"), 0)
        self._stats_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(address)
            self._listener.listen(1024)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self.server_address = self._listener.getsockname()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._conns: dict[int, _Conn] = {}          # insertion order = accept order
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._returned: deque[tuple[_Conn, list[memoryview] | None]] = deque()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept_paused_until = 0.0

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self.stats[name] += 1

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._threads = [threading.Thread(target=self._select_loop, name="http-selector", daemon=True)]
        self._threads += [threading.Thread(target=self._worker, name=f"http-worker-{index}", daemon=True)
                          for index in range(self.workers)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for _ in range(self.workers):
            self._work.put(None)
        self._wake()
        for thread in self._threads:
            thread.join(timeout=5)
        for conn in list(self._conns.values()):
            self._close(conn)
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    # ---- selector thread -------------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # a wake-up is already pending (or we are closing)

    def _select_loop(self) -> None:
        next_sweep = time.monotonic() + _SWEEP_SECONDS
        while not self._stopping.is_set():
            try:
                events = self._selector.select(_SWEEP_SECONDS)
            except OSError:  # pragma: no cover - interrupted
                continue
            for key, mask in events:
                if key.data is None:
                    self._accept()
                elif key.data == "wake":
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                else:
                    conn: _Conn = key.data
                    try:
                        if conn.state == _READ and mask & selectors.EVENT_READ:
                            self._on_readable(conn)
                        elif conn.state == _WRITE and mask & selectors.EVENT_WRITE:
                            self._on_writable(conn)
                    except Exception:  # pragma: no cover - one bad connection must not stop serving
                        log.exception("http connection failed")
                        self._close(conn)
            try:
                self._take_returned()
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + _SWEEP_SECONDS
            except Exception:  # pragma: no cover - the loop must outlive any bug
                log.exception("http selector loop failed")

    def _accept(self) -> None:
        if time.monotonic() < self._accept_paused_until:
            return
        while True:
            try:
                sock, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    if not self._evict_one():
                        self._pause_accept()
                    return
                return  # ECONNABORTED and friends: the client is gone already
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed-ACK stall
            except OSError:
                pass
            conn = _Conn(sock, time.monotonic() + self.header_timeout)
            self._conns[conn.fd] = conn
            self._count("accepted")
            self._selector.register(sock, selectors.EVENT_READ, conn)
            while len(self._conns) > self.max_connections:
                if not self._evict_one():
                    break

    def _pause_accept(self) -> None:
        # Out of descriptors and nothing to evict: stop polling the listener for a moment
        # instead of spinning on a readable listener.
        self._accept_paused_until = time.monotonic() + 0.1
        try:
            self._selector.unregister(self._listener)
        except (KeyError, ValueError):
            pass

    def _evict_one(self) -> bool:
        """Close the oldest connection that never completed a request, else the longest idle one
        (a scraper that keeps its connection busy is the last to go)."""
        victim = None
        for conn in self._conns.values():
            if conn.state == _READ:
                if conn.served == 0:
                    victim = conn
                    break
                if victim is None or conn.last_active < victim.last_active:
                    victim = conn
        if victim is None:
            return False
        self._count("evicted")
        self._close(victim)
        return True

    def _on_readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        if not conn.inbuf and conn.served:
            conn.deadline = time.monotonic() + self.header_timeout  # first byte of the next request
        conn.inbuf += data
        self._try_dispatch(conn)

    def _try_dispatch(self, conn: _Conn) -> None:
        end = conn.inbuf.find(b"\r\n\r\n", 0, self.max_header_bytes + 4)
        if end < 0:
            if len(conn.inbuf) > self.max_header_bytes:
                self._reject(conn, 431, "Request header too large.\n")
            return
        head = bytes(conn.inbuf[:end])
        del conn.inbuf[:end + 4]
        try:
            request = parse_request(head)
        except BadRequest as exc:
            self._reject(conn, exc.status, exc.text)
            return
        self._selector.unregister(conn.sock)
        conn.state = _WORK
        self._work.put((conn, request))

    def _reject(self, conn: _Conn, status: int, text: str) -> None:
        """Answer an unparseable request from the selector thread (best effort) and close."""
        data = b"".join(serialize(status, [("Content-Type", TEXT)], text.encode(), keep_alive=False))
        try:
            conn.sock.send(data)
        except OSError:
            pass
        self._close(conn)

    def _on_writable(self, conn: _Conn) -> None:
        assert conn.out is not None
        try:
            sent = conn.sock.sendmsg(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.out = advance(conn.out, sent)
        conn.deadline = time.monotonic() + self.write_timeout
        if not conn.out:
            conn.out = None
            self._selector.unregister(conn.sock)
            self._back_to_reading(conn)

    def _take_returned(self) -> None:
        while self._returned:
            conn, rest = self._returned.popleft()
            try:
                if rest is None:
                    self._back_to_reading(conn)
                else:
                    conn.state = _WRITE
                    conn.out = rest
                    conn.deadline = time.monotonic() + self.write_timeout
                    self._selector.register(conn.sock, selectors.EVENT_WRITE, conn)
            except Exception:  # pragma: no cover - e.g. a socket that died meanwhile
                log.exception("http connection failed")
                self._close(conn)

    def _back_to_reading(self, conn: _Conn) -> None:
        if not conn.keep_alive:
            self._close(conn)
            return
        conn.state = _READ
        conn.last_active = time.monotonic()
        conn.deadline = time.monotonic() + (self.header_timeout if conn.inbuf else self.idle_timeout)
        self._selector.register(conn.sock, selectors.EVENT_READ, conn)
        if conn.inbuf:
            self._try_dispatch(conn)  # a pipelined request is already here

    def _sweep(self, now: float) -> None:
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._selector.register(self._listener, selectors.EVENT_READ, None)
        expired = [conn for conn in self._conns.values() if conn.state != _WORK and now >= conn.deadline]
        for conn in expired:
            self._count("timed_out")
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if self._conns.pop(conn.fd, None) is None:
            return
        if conn.state != _WORK:
            try:
                self._selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        try:
            conn.sock.close()
        except OSError:
            pass

    # ---- workers ---------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            conn, request = item
            try:
                self._serve(conn, request)
            except Exception:  # pragma: no cover - the server must outlive any bug
                log.exception("http worker failed path=%s", request.path)
                conn.keep_alive = False
                self._returned.append((conn, None))
                self._wake()

    def _serve(self, conn: _Conn, request: Request) -> None:
        self._count("requests")
        if peer_closed(conn.sock):
            self._count("dead_dropped")
            conn.keep_alive = False
            self._returned.append((conn, None))
            self._wake()
            return
        conn.keep_alive = request.keep_alive
        status, headers, body = self.respond(request)
        if "content-length" in request.headers or "transfer-encoding" in request.headers:
            conn.keep_alive = False  # we never read request bodies: do not parse one as the next request
        parts = serialize(status, headers, body, keep_alive=conn.keep_alive, version=request.version,
                           head=request.method == "HEAD")
        conn.served += 1
        views = [memoryview(part) for part in parts if part]
        try:
            sent = conn.sock.sendmsg(views)  # non-blocking: the rest, if any, goes out from the selector
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            conn.keep_alive = False
            sent = sum(len(view) for view in views)
        rest = advance(views, sent)
        self._returned.append((conn, rest if rest else None))
        self._wake()

    def respond(self, request: Request) -> tuple[int | str, list[tuple[str, str]], bytes]:
        raise NotImplementedError
