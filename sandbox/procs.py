"""Start and stop local processes on free loopback ports (tests, demo, benchmarks).

Every process is started in its own process group and stopped by pid (TERM, then KILL),
so nothing is left behind even when a test fails.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
# Alertmanager logs the Bot API URL of a failed delivery, token included: never let a
# Telegram token reach a log file.
TELEGRAM_TOKEN_IN_URL = re.compile(rb"bot\d+:[A-Za-z0-9_-]+")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, proc: ManagedProcess | None = None) -> None:
    """Wait until `url` answers 200; fail early if `proc` died."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.poll()} before {url} was ready:\n{proc.tail()}")
        try:
            response = requests.get(url, timeout=2)
            if response.status_code == 200:
                return
            last_error = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last_error = type(exc).__name__
        time.sleep(0.1)
    tail = proc.tail() if proc is not None else ""
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s ({last_error})\n{tail}")


class ManagedProcess:
    """A child process with its output in a log file, Telegram tokens and the given
    secrets redacted on the way."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None, redact: Sequence[str] = ()):
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ)
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        if env:
            full_env.update(env)
        self._redact = [secret.encode() for secret in redact if secret]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env,
            cwd=str(cwd or REPO_ROOT), start_new_session=True,
        )
        self._pump = threading.Thread(target=self._copy_output, name=f"log-{name}", daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:
        assert self.popen.stdout is not None
        for line in iter(self.popen.stdout.readline, b""):
            line = TELEGRAM_TOKEN_IN_URL.sub(b"bot<redacted>", line)
            for secret in self._redact:
                line = line.replace(secret, b"<redacted>")
            self._log.write(line)
            self._log.flush()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 10.0) -> int | None:
        """TERM the process group, KILL it after `timeout`; returns the exit code."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=5)
        self._pump.join(timeout=5)
        if not self._log.closed:
            self._log.close()
        return self.popen.returncode

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python_module(module: str, *args: str) -> list[str]:
    """argv to run `python -m module args` with this interpreter."""
    return [sys.executable, "-m", module, *args]
