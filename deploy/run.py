"""`make run`: the real thing without Docker — exporter + bot against the real ISS.

    python -m deploy.run [--config.file config.yml] [--env-file .env] [--secrets-dir secrets]
                         [--with-alerting] [--workdir run]

Settings come from the same places as with docker-compose: `.env` (KEY=VALUE lines) and
one file per secret in `secrets/` (`secrets/moex_api_key` -> MOEX_API_KEY, ...). Variables
already set in the environment win over both. The configuration file is `config.yml`
(copy config.example.yml); it is validated before anything starts.

`--with-alerting` also runs Prometheus and Alertmanager from the system packages
(`prometheus`, `prometheus-alertmanager`) on the addresses of `prometheus.url` /
`alertmanager.url`, with the repository's rules and the Telegram template rendered from
the environment; data under `--workdir`. Ctrl-C stops every process it started, by pid.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from sandbox.procs import REPO_ROOT, ManagedProcess, python_module, wait_http

# secrets/<file name> -> environment variable (the Docker secrets of docker-compose.yml).
SECRET_FILES = {
    "telegram_bot_token": "TELEGRAM_BOT_TOKEN",
    "telegram_bot_token_bot": "TELEGRAM_BOT_TOKEN_BOT",
    "moex_api_key": "MOEX_API_KEY",
    "moex_passport_password": "MOEX_PASSPORT_PASSWORD",
}


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file: comments, blank lines, `export `, and one level of
    matching quotes are handled; no variable expansion."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise ValueError(f"{path}:{number}: not a KEY=VALUE line")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def read_secret_files(secrets_dir: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, variable in SECRET_FILES.items():
        path = secrets_dir / name
        if path.is_file():
            text = path.read_text(encoding="utf-8").strip()
            if text:
                values[variable] = text
    return values


def build_environment(base: Mapping[str, str], env_file: Path | None, secrets_dir: Path | None) -> dict[str, str]:
    """The environment of the processes: base (os.environ) > .env > secrets/ files.
    An empty value in a higher layer does not hide a value below it."""
    layers: list[Mapping[str, str]] = []
    if secrets_dir is not None and secrets_dir.is_dir():
        layers.append(read_secret_files(secrets_dir))
    if env_file is not None and env_file.is_file():
        layers.append(parse_env_file(env_file))
    layers.append(base)
    env: dict[str, str] = {}
    for layer in layers:
        env.update({k: v for k, v in layer.items() if v != "" or k not in env})
    return env


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deploy.run", description=__doc__.splitlines()[0])
    parser.add_argument("--config.file", dest="config_file", type=Path, default=REPO_ROOT / "config.yml")
    parser.add_argument("--env-file", type=Path, default=REPO_ROOT / ".env")
    parser.add_argument("--secrets-dir", type=Path, default=REPO_ROOT / "secrets")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "run", help="logs and data (default run/)")
    parser.add_argument("--with-alerting", action="store_true",
                        help="also run Prometheus and Alertmanager from the system packages")
    parser.add_argument("--no-bot", action="store_true", help="run the exporter only")
    return parser.parse_args(argv)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from exporter.config import ConfigError, load_config

    if not args.config_file.is_file():
        print(f"{args.config_file} not found: cp config.example.yml config.yml and edit it "
              "(iss.auth, calendar.file)", file=sys.stderr)
        return 2
    env = build_environment(os.environ, args.env_file, args.secrets_dir)
    try:
        config = load_config(args.config_file, env)
        missing = config.iss.check_secrets()
        if missing:
            raise ConfigError(missing)
    except ConfigError as exc:
        print(f"{args.config_file}: {exc}", file=sys.stderr)
        return 2
    run_bot = not args.no_bot
    if run_bot and not config.telegram.bot_token:
        print("bot skipped: set TELEGRAM_BOT_TOKEN_BOT (or TELEGRAM_BOT_TOKEN) in .env or secrets/", file=sys.stderr)
        run_bot = False

    workdir = args.workdir.resolve()
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[ManagedProcess] = []
    # Explicit, so Ctrl-C works even when started with SIGINT ignored (e.g. `cmd &` in a script).
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        exporter_addr = config.web.listen_address
        procs.append(ManagedProcess("exporter", python_module("exporter", f"--config.file={args.config_file}"),
                                    logs / "exporter.log", env=env))
        wait_http(f"http://{exporter_addr}/-/healthy", timeout=60, proc=procs[-1])
        print(f"exporter   http://{exporter_addr}/metrics  (pid {procs[-1].pid}, log {logs / 'exporter.log'})")
        if args.with_alerting:
            _start_alerting(config, env, workdir, exporter_addr, procs)
        if run_bot:
            procs.append(ManagedProcess("bot", python_module("bot", f"--config.file={args.config_file}"),
                                        logs / "bot.log", env=env))
            print(f"bot        polling Telegram  (pid {procs[-1].pid}, log {logs / 'bot.log'})")
        print("running; Ctrl-C stops everything", flush=True)
        while True:
            for proc in procs:
                if proc.poll() is not None:
                    print(f"{proc.name} exited with {proc.poll()}; last log lines:\n{proc.tail(30)}", file=sys.stderr)
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError, ValueError) as exc:
        print(f"start failed: {exc}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for proc in reversed(procs):
            proc.stop()
        if procs:
            print("stopped: " + ", ".join(f"{p.name} (pid {p.pid})" for p in procs), flush=True)


def _start_alerting(config, env: dict[str, str], workdir: Path, exporter_addr: str,
                    started: list[ManagedProcess]) -> None:
    """Start Alertmanager then Prometheus, appending each to `started` as soon as it runs
    (so the caller stops them even when a later step fails)."""
    from deploy.render_alertmanager import render_alertmanager
    from deploy.render_prometheus import render_prometheus_config

    prom_addr = _host_port(config.prometheus.url)
    am_addr = _host_port(config.alertmanager.url)
    am_config = render_alertmanager(workdir / "alertmanager", {**env, "GRAFANA_URL": config.grafana.url})
    (workdir / "alertmanager-data").mkdir(parents=True, exist_ok=True)
    started.append(ManagedProcess("alertmanager", [
        "prometheus-alertmanager", f"--config.file={am_config}", f"--storage.path={workdir / 'alertmanager-data'}",
        f"--web.listen-address={am_addr}", "--cluster.listen-address="], workdir / "logs" / "alertmanager.log"))
    wait_http(f"http://{am_addr}/-/ready", timeout=60, proc=started[-1])
    print(f"alertmanager http://{am_addr}  (pid {started[-1].pid})")
    prom_config = render_prometheus_config(workdir / "prometheus.yml", exporter_addr, am_addr)
    (workdir / "prometheus-data").mkdir(parents=True, exist_ok=True)
    started.append(ManagedProcess("prometheus", [
        "prometheus", f"--config.file={prom_config}", f"--storage.tsdb.path={workdir / 'prometheus-data'}",
        f"--web.listen-address={prom_addr}", "--storage.tsdb.retention.time=90d", "--web.enable-lifecycle"],
        workdir / "logs" / "prometheus.log"))
    wait_http(f"http://{prom_addr}/-/ready", timeout=60, proc=started[-1])
    print(f"prometheus http://{prom_addr}  (pid {started[-1].pid})")


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
