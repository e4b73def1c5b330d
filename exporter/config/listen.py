"""Listen addresses: "host:port", "[::1]:port", ":port"."""

from __future__ import annotations


def split_listen_address(address: str) -> tuple[str, int]:
    """"host:port" / "[::1]:port" / ":port" → (host, port); raises ValueError."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError("must be host:port")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError("port must be 1..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port
