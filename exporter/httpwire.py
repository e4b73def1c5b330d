"""HTTP/1.1 on the wire for `BoundedHTTPServer`: parse a request head, build a response,
track a partly sent one, and tell whether the peer has gone."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit


@dataclass
class Request:
    method: str
    target: str
    path: str
    query: str
    version: str
    headers: dict[str, str]   # lower-case names; repeated headers joined with ", "
    keep_alive: bool


class BadRequest(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status
        self.text = text


def peer_closed(sock: socket.socket) -> bool:
    """True if the client has closed (or reset) its side: then nothing is worth rendering."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False  # alive, nothing more sent
    except OSError:
        return True


def parse_request(head: bytes) -> Request:
    """Parse a request line and header block (without the final blank line)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise BadRequest(400, "Bad request.\n") from exc
    lines = text.split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "Bad request line.\n")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "Bad header line.\n")
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    connection = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
    url = urlsplit(target)
    return Request(method, target, url.path or "/", url.query, version, headers, keep_alive)


def serialize(status: int | str, headers: list[tuple[str, str]], body: bytes, *, keep_alive: bool,
               version: str = "HTTP/1.1", head: bool = False) -> tuple[bytes, bytes]:
    """The response head and body, kept apart so a cached body is never copied per client."""
    if isinstance(status, int):
        status = f"{status} {HTTPStatus(status).phrase}"
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in ("content-length", "connection")]
    lines.append(f"Content-Length: {len(body)}")
    if not keep_alive:
        lines.append("Connection: close")
    elif version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head_bytes, b"" if head else body


def advance(views: list[memoryview], sent: int) -> list[memoryview]:
    """What is left of `views` after `sent` bytes went out."""
    rest = []
    for view in views:
        if sent >= len(view):
            sent -= len(view)
            continue
        rest.append(view[sent:])
        sent = 0
    return rest
