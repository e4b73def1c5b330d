"""LocalStack: the whole system on loopback, without Docker.

One library for everything that needs the real stack running: the demo (`make demo`),
the end-to-end alert tests, the dashboard integration test and the benchmarks.

    from deploy.stack import LocalStack

    with LocalStack(workdir, clock_speed=20) as stack:      # starts in dependency order
        stack.urls["prometheus"]                             # http://127.0.0.1:PORT
        stack.iss_fault("stop", market="eq", dataset="tradestats")
        msg = stack.wait_for_message(lambda m: "Задержка" in (m["text"] or ""), timeout=120)
        stack.iss_clear_faults("stop")
    # every process it started is stopped by pid (process groups), also on exceptions

Components (start order): `telegram` (fake Bot API), `iss` (sandbox ISS), `exporter`,
`alertmanager`, `prometheus`, `bot`. Pass `components=` to start a subset; each one that
is started gets a free loopback port, its config rendered into `workdir`, and its log in
`workdir/logs/<name>.log`. All Python components share one `FastClock` (its spec string is
passed as `ALGOPACK_CLOCK` / `--clock`), so the sandbox ISS and the exporter agree on the
virtual trading day; Prometheus and Alertmanager run on real time (rules never compare
Prometheus `time()` with exporter timestamps, see docs/internals.md).

`time_scaled=True` runs Prometheus and Alertmanager at the speed of the virtual clock: every
production time constant divided by `clock_speed` (deploy/render_prometheus.py
`render_scaled_rules`, deploy/render_alertmanager.py `scaled_timings`): scrape and evaluation
interval (15 s), each rule's `for:`, range windows and offsets in the rules, the query
look-back (5 m), the alert resend delay (1 m), group_wait, group_interval, repeat_interval.
The scrape timeout is the scaled interval itself: the exporter's CPU does not get faster.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from exporter.clock import MSK, FastClock
from sandbox.procs import REPO_ROOT, ManagedProcess, free_port, python_module, wait_http

ALL_COMPONENTS = ("telegram", "iss", "exporter", "alertmanager", "prometheus", "bot")

# Fake credentials for the sandbox only: the fake Bot API keys its state by the numeric
# prefix, so Alertmanager and the bot are two different bots, as in production.
ALERT_BOT_TOKEN = "1000001:sandbox-alertmanager"
BOT_TOKEN = "1000002:sandbox-bot"
GROUP_CHAT_ID = -1001234567890
ALERT_BOT_ID = 1000001
BOT_ID = 1000002

# No Grafana runs without Docker; alert links still point where compose would serve it.
GRAFANA_URL = "http://127.0.0.1:3000"

PROMETHEUS_BIN = "prometheus"
SANDBOX_DEADMAN_REAL_SECONDS = 90.0
INHERITED_SETTINGS = ("DELAY", "INTERVAL_REQUEST", "TELEGRAM_BOT_TOKEN", "TELEGRAM_BOT_TOKEN_BOT",
                      "TELEGRAM_GROUP_CHATID", "TELEGRAM_API_URL", "PROMETHEUS_URL", "ALERTMANAGER_URL",
                      "GRAFANA_URL", "MOEX_PASSPORT_LOGIN", "MOEX_PASSPORT_PASSWORD", "MOEX_API_KEY")
ALERTMANAGER_BIN = "prometheus-alertmanager"


def default_virtual_start(today: date | None = None) -> datetime:
    """12:04 Moscow time today: inside every default session, a minute before a bucket is due."""
    day = today or datetime.now(MSK).date()
    return datetime(day.year, day.month, day.day, 12, 4, 0, tzinfo=MSK)


def demo_calendar(day: date) -> dict[str, Any]:
    """A calendar on which every market trades on `day` (weekday or not) with the default
    sessions of design.md, so the demo and the tests work on any date."""
    return {
        "timezone": "Europe/Moscow",
        "weekend_default": "holiday",
        "markets": {
            "eq": {"sessions": [["10:00", "18:40"], ["19:05", "23:50"]]},
            "fx": {"sessions": [["07:00", "19:00"]]},
            "fo": {"sessions": [["09:00", "23:50"]]},
        },
        "checks": {"hi2_deadline": {"eq": "19:01", "fx": "19:31", "fo": "19:31"}},
        "days": {day.isoformat(): {"status": "working", "reason": "sandbox demo day"}},
    }


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` merged into a copy of `base`; nested mappings merge, other values replace."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def render_prometheus_yaml(out_path: Path, exporter_addr: str | None, alertmanager_addr: str | None,
                           rules_dir: Path, scrape_interval: str, eval_interval: str) -> Path:
    """Prometheus config for the local stack.

    Uses the alerting module's renderer when it exists (one source of truth for job names
    and rule paths); otherwise writes the equivalent minimal file itself.
    """
    try:
        from deploy.render_prometheus import render_prometheus_config  # type: ignore[import-not-found]
    except ImportError:
        render_prometheus_config = None
    if render_prometheus_config is not None:
        result = render_prometheus_config(out_path, exporter_addr, alertmanager_addr, rules_dir,
                                          scrape_interval, eval_interval)
        return Path(result) if result else out_path
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": eval_interval},
        "rule_files": [str(Path(rules_dir).resolve() / "*.yml")],
        "scrape_configs": [],
    }
    if exporter_addr:
        config["scrape_configs"].append({"job_name": "algopack", "static_configs": [{"targets": [exporter_addr]}]})
    if alertmanager_addr:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_addr]}]}]}
    out_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return out_path


class StackError(RuntimeError):
    """A component failed to start; the message carries its log tail."""


class LocalStack:
    """The system on loopback ports; see the module docstring.

    Arguments:
      workdir            logs, rendered configs, calendar and data dirs (created; data dirs wiped)
      clock_speed        virtual seconds per real second (20: a 5-minute bucket every 15 s)
      virtual_start      aware datetime where virtual time starts (default: 12:04 MSK today)
      components         which components to start (default: all)
      env                extra environment for every process (e.g. ALERTMANAGER_GROUP_WAIT)
      component_env      {component: {VAR: value}} for one process
      config_overrides   deep-merged into the exporter/bot YAML config
      calendar           a calendar mapping (default: `demo_calendar(virtual day)`)
      delay_threshold_seconds, poll_interval_seconds   common exporter knobs (virtual seconds)
      scrape_interval, eval_interval                    Prometheus (real time)
      rules_dir          Prometheus rule files (default: the repo's prometheus/rules)
      extra_args         {component: [argv...]} appended to a component's command line
      iss_args           extra sandbox ISS flags, e.g. ["--scale", "1"]
      time_scaled        Prometheus/Alertmanager at the clock's speed (module docstring);
                         scrape_interval/eval_interval are then ignored
    """

    def __init__(
        self,
        workdir: str | Path,
        *,
        clock_speed: float = 20.0,
        virtual_start: datetime | None = None,
        components: Iterable[str] = ALL_COMPONENTS,
        env: Mapping[str, str] | None = None,
        component_env: Mapping[str, Mapping[str, str]] | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        calendar: Mapping[str, Any] | None = None,
        delay_threshold_seconds: float | None = None,
        poll_interval_seconds: float | None = None,
        scrape_interval: str = "2s",
        eval_interval: str = "2s",
        rules_dir: str | Path | None = None,
        extra_args: Mapping[str, list[str]] | None = None,
        startup_timeout: float = 60.0,
        time_scaled: bool = False,
    ):
        unknown = set(components) - set(ALL_COMPONENTS)
        if unknown:
            raise ValueError(f"unknown components: {', '.join(sorted(unknown))}")
        self.workdir = Path(workdir).resolve()
        self.clock_speed = float(clock_speed)
        self.virtual_start = virtual_start or default_virtual_start()
        if self.virtual_start.tzinfo is None:
            raise ValueError("virtual_start must be timezone-aware")
        self.components = [c for c in ALL_COMPONENTS if c in set(components)]
        self.time_scaled = time_scaled
        if time_scaled:
            from deploy.render_alertmanager import scaled_timings
            from deploy.render_prometheus import scaled_duration

            am_timings = scaled_timings(self.clock_speed)
            scrape_interval = eval_interval = scaled_duration("15s", self.clock_speed)
        else:
            # Short Alertmanager timings so a demo/test sees notifications within seconds.
            am_timings = {"ALERTMANAGER_GROUP_WAIT": "5s", "ALERTMANAGER_GROUP_INTERVAL": "10s",
                          "ALERTMANAGER_REPEAT_INTERVAL": "1h"}
        self.env = {**am_timings, **(env or {})}
        self.component_env = {k: dict(v) for k, v in (component_env or {}).items()}
        self.config_overrides = dict(config_overrides or {})
        self.calendar = dict(calendar) if calendar is not None else demo_calendar(self.virtual_start.date())
        self.delay_threshold_seconds = delay_threshold_seconds
        self.poll_interval_seconds = poll_interval_seconds
        self.scrape_interval = scrape_interval
        self.eval_interval = eval_interval
        self.rules_dir = Path(rules_dir) if rules_dir else REPO_ROOT / "prometheus" / "rules"
        self.extra_args = {k: list(v) for k, v in (extra_args or {}).items()}
        self.startup_timeout = startup_timeout

        self.clock: FastClock | None = None
        self.ports: dict[str, int] = {}
        self.urls: dict[str, str] = {}
        self.procs: dict[str, ManagedProcess] = {}
        self.paths: dict[str, Path] = {}
        self._http = requests.Session()

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    @property
    def clock_spec(self) -> str:
        if self.clock is None:
            raise RuntimeError("stack not started")
        return self.clock.spec()

    def start(self) -> LocalStack:
        """Render configs, start every component in order and wait for each to be ready.

        On any failure everything already started is stopped and `StackError` is raised
        with the failing component's log tail.
        """
        if self.procs:
            raise RuntimeError("stack already started")
        self._prepare_workdir()
        for name in ALL_COMPONENTS:
            if name in self.components and name != "bot":  # the bot serves no HTTP
                self.ports[name] = free_port()
                self.urls[name] = f"http://127.0.0.1:{self.ports[name]}"
        # The clock's anchor is "now": virtual time starts at virtual_start as the stack comes up.
        self.clock = FastClock(start=self.virtual_start, speed=self.clock_speed, anchor=time.time())
        self._write_common_files()
        try:
            for name in self.components:
                getattr(self, f"_start_{name}")()
                self._write_pids()
        except BaseException as exc:
            self.stop()
            if isinstance(exc, StackError | KeyboardInterrupt):
                raise
            raise StackError(f"stack failed to start: {exc}") from exc
        return self

    def _write_pids(self) -> None:
        # For humans and for tests that check nothing is left behind after a crash.
        (self.workdir / "pids.json").write_text(json.dumps(self.pids, indent=1) + "\n")

    def stop(self) -> dict[str, int | None]:
        """Stop every started process (reverse order) by pid; returns their exit codes."""
        codes: dict[str, int | None] = {}
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            try:
                codes[name] = proc.stop(timeout=10)
            except Exception as exc:  # keep stopping the others
                codes[name] = None
                print(f"stack: stopping {name} (pid {proc.pid}) failed: {exc}", file=sys.stderr)
        self.procs.clear()
        self._http.close()
        return codes

    def stop_component(self, name: str) -> int | None:
        """Stop one component by pid (e.g. the exporter, to see AlgopackExporterDown); it no
        longer counts in `alive()` and `stop()` skips it. Returns its exit code."""
        return self.procs.pop(name).stop(timeout=10)

    def restart_component(self, name: str) -> None:
        """Start a component stopped by `stop_component` again, on the same port, with its
        config rendered anew and its data directory kept (Prometheus TSDB, Alertmanager
        silences), as a process manager would."""
        if name in self.procs:
            raise RuntimeError(f"{name} is running")
        getattr(self, f"_start_{name}")()
        self._write_pids()

    def alive(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self.procs.items()}

    def log_tail(self, name: str, lines: int = 40) -> str:
        proc = self.procs.get(name)
        if proc is not None:
            return proc.tail(lines)
        path = self.workdir / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # ------------------------------------------------------------------ files

    def _prepare_workdir(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        for sub in ("prometheus-data", "alertmanager-data", "alertmanager", "bot-data"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
        for stale in ("telegram.jsonl",):
            (self.workdir / stale).unlink(missing_ok=True)
        for name in ALL_COMPONENTS:
            log = self.workdir / "logs" / f"{name}.log"
            log.unlink(missing_ok=True)

    def _write_common_files(self) -> None:
        calendar_path = self.workdir / "calendar.yml"
        calendar_path.write_text("# Generated by deploy/stack.py for the sandbox.\n"
                                 + yaml.safe_dump(self.calendar, sort_keys=False, allow_unicode=True))
        self.paths["calendar"] = calendar_path
        config = self.app_config()
        config_path = self.workdir / "config.yml"
        config_path.write_text("# Generated by deploy/stack.py for the sandbox.\n"
                               + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        self.paths["config"] = config_path

    def app_config(self) -> dict[str, Any]:
        """The one YAML config shared by exporter and bot (design.md), before overrides."""
        config: dict[str, Any] = {
            "iss": {"base_url": self.urls.get("iss", "http://127.0.0.1:9"), "auth": "none"},
            "calendar": {"file": str(self.workdir / "calendar.yml")},
        }
        if self.delay_threshold_seconds is not None:
            config["delay_threshold_seconds"] = self.delay_threshold_seconds
        if self.poll_interval_seconds is not None:
            config["poll"] = {"interval_seconds": self.poll_interval_seconds}
        config["telegram"] = {
            "api_url": self.urls.get("telegram", "https://api.telegram.org"),
            "allowed_chat_ids": [GROUP_CHAT_ID],
        }
        if "prometheus" in self.urls:
            config["prometheus"] = {"url": self.urls["prometheus"]}
        if "alertmanager" in self.urls:
            config["alertmanager"] = {"url": self.urls["alertmanager"]}
        config["grafana"] = {"url": GRAFANA_URL}
        # The bot's dead-man check runs on the fast clock, Prometheus and Alertmanager on real
        # time: a just-started Prometheus re-sends the watchdog only after its 1-minute resend
        # delay, so the threshold must stay above ~90 s real or every start would be reported.
        config["deadman"] = {"threshold_seconds": max(180.0, SANDBOX_DEADMAN_REAL_SECONDS * self.clock_speed)}
        return deep_merge(config, self.config_overrides)

    def _env(self, component: str, **extra: str) -> dict[str, str]:
        # The operator's own settings (a sourced .env) must not leak into the sandbox:
        # empty values count as unset for the config loader.
        env = {name: "" for name in INHERITED_SETTINGS if name in os.environ}
        env.update({"ALGOPACK_CLOCK": self.clock_spec, "TZ": "UTC", **self.env})
        env.update(extra)
        env.update(self.component_env.get(component, {}))
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> ManagedProcess:
        proc = ManagedProcess(name, argv + self.extra_args.get(name, []),
                              self.workdir / "logs" / f"{name}.log", env=env, cwd=REPO_ROOT)
        self.procs[name] = proc
        return proc

    def _wait_ready(self, name: str, path: str) -> None:
        proc = self.procs[name]
        try:
            wait_http(self.urls[name] + path, timeout=self.startup_timeout, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            raise StackError(f"{name} did not become ready ({self.urls[name]}{path}): {exc}\n"
                             f"--- {name} log tail ({proc.log_path}) ---\n{proc.tail(40)}") from exc

    # ------------------------------------------------------------------ components

    def _start_telegram(self) -> None:
        log = self.workdir / "telegram.jsonl"
        self.paths["telegram_log"] = log
        self._spawn("telegram", python_module("sandbox.telegram", "--listen", f"127.0.0.1:{self.ports['telegram']}",
                                              "--log", str(log)), self._env("telegram"))
        self._wait_ready("telegram", "/_control/health")

    def _start_iss(self) -> None:
        self._spawn("iss", python_module("sandbox.iss", "--listen", f"127.0.0.1:{self.ports['iss']}",
                                         "--calendar", str(self.paths["calendar"]),
                                         "--clock", self.clock_spec, "--auth", "none"),
                    self._env("iss"))
        self._wait_ready("iss", "/sandbox/health")

    def _start_exporter(self) -> None:
        self._spawn("exporter", python_module("exporter", f"--config.file={self.paths['config']}",
                                              f"--web.listen-address=127.0.0.1:{self.ports['exporter']}",
                                              f"--clock={self.clock_spec}"),
                    self._env("exporter"))
        self._wait_ready("exporter", "/-/ready")

    def _start_alertmanager(self) -> None:
        from deploy.render_alertmanager import render_alertmanager

        out_dir = self.workdir / "alertmanager"
        out_dir.mkdir(parents=True, exist_ok=True)
        environ = {
            "TELEGRAM_BOT_TOKEN": ALERT_BOT_TOKEN,
            "TELEGRAM_GROUP_CHATID": str(GROUP_CHAT_ID),
            "TELEGRAM_API_URL": self.urls.get("telegram", "http://127.0.0.1:9"),
            "GRAFANA_URL": GRAFANA_URL,
            **self.env,
            **self.component_env.get("alertmanager", {}),
        }
        config_path = Path(render_alertmanager(out_dir, environ))
        self.paths["alertmanager_config"] = config_path
        data = self.workdir / "alertmanager-data"
        data.mkdir(parents=True, exist_ok=True)
        self._spawn("alertmanager", [ALERTMANAGER_BIN, f"--config.file={config_path}", f"--storage.path={data}",
                                     f"--web.listen-address=127.0.0.1:{self.ports['alertmanager']}",
                                     "--cluster.listen-address="],
                    self._env("alertmanager"))
        self._wait_ready("alertmanager", "/-/ready")

    def _start_prometheus(self) -> None:
        exporter = f"127.0.0.1:{self.ports['exporter']}" if "exporter" in self.ports else None
        alertmanager = f"127.0.0.1:{self.ports['alertmanager']}" if "alertmanager" in self.ports else None
        scaled_flags: list[str] = []
        if self.time_scaled:
            from deploy.render_prometheus import (
                render_prometheus_config,
                render_scaled_rules,
                scaled_duration,
            )

            rules = render_scaled_rules(self.workdir / "rules-scaled", self.clock_speed, self.rules_dir)
            config_path = render_prometheus_config(self.workdir / "prometheus.yml", exporter, alertmanager, rules,
                                                   self.scrape_interval, self.eval_interval,
                                                   scrape_timeout=self.scrape_interval)
            scaled_flags = [f"--query.lookback-delta={scaled_duration('5m', self.clock_speed)}",
                            f"--rules.alert.resend-delay={scaled_duration('1m', self.clock_speed)}"]
        else:
            config_path = render_prometheus_yaml(self.workdir / "prometheus.yml", exporter, alertmanager,
                                                 self.rules_dir, self.scrape_interval, self.eval_interval)
        self.paths["prometheus_config"] = config_path
        data = self.workdir / "prometheus-data"
        data.mkdir(parents=True, exist_ok=True)
        self._spawn("prometheus", [PROMETHEUS_BIN, f"--config.file={config_path}", f"--storage.tsdb.path={data}",
                                   f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}",
                                   "--web.enable-lifecycle", "--storage.tsdb.retention.time=1d", *scaled_flags],
                    self._env("prometheus"))
        self._wait_ready("prometheus", "/-/ready")

    def _start_bot(self) -> None:
        data = self.workdir / "bot-data"
        data.mkdir(parents=True, exist_ok=True)
        env = self._env("bot", TELEGRAM_BOT_TOKEN_BOT=BOT_TOKEN,
                        TELEGRAM_API_URL=self.urls.get("telegram", "https://api.telegram.org"),
                        TELEGRAM_GROUP_CHATID=str(GROUP_CHAT_ID))
        proc = self._spawn("bot", python_module("bot", f"--config.file={self.paths['config']}"), env)
        # The bot has no HTTP endpoint: it is up once it polls the (fake) Bot API.
        if "telegram" in self.urls:
            deadline = time.monotonic() + self.startup_timeout
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise StackError(f"bot exited with {proc.poll()}\n--- bot log tail ---\n{proc.tail(40)}")
                counts = self._get("telegram", "/_control/requests")
                if any(key.lower() == "getupdates" for key in counts):
                    return
                time.sleep(0.2)
            raise StackError(f"bot did not poll getUpdates within {self.startup_timeout:.0f}s\n"
                             f"--- bot log tail ---\n{proc.tail(40)}")
        time.sleep(1.0)
        if proc.poll() is not None:
            raise StackError(f"bot exited with {proc.poll()}\n--- bot log tail ---\n{proc.tail(40)}")

    # ------------------------------------------------------------------ helpers for callers

    def _get(self, component: str, path: str, **params: Any) -> Any:
        response = self._http.get(self.urls[component] + path, params=params or None, timeout=10)
        response.raise_for_status()
        return response.json()

    def iss_fault(self, knob: str | None = None, /, **params: Any) -> Any:
        """Turn on sandbox ISS fault knobs (sandbox/README.md). Two forms:
        `iss_fault("stop", market="eq", dataset="tradestats")` posts {"stop": {...}};
        `iss_fault(stop={"market": "eq"}, slow={...})` posts several knobs at once."""
        body = {knob: params} if knob is not None else params
        response = self._http.post(self.urls["iss"] + "/sandbox/faults", json=body, timeout=10)
        response.raise_for_status()
        return response.json() if response.content else None

    def iss_clear_faults(self, knob: str | None = None, **scope: str) -> Any:
        """End one knob (optionally one market/dataset scope) or, without `knob`, all of them.
        Ending `stop` publishes the withheld backlog with systime = now."""
        path = "/sandbox/faults" + (f"/{knob}" if knob else "")
        response = self._http.delete(self.urls["iss"] + path, params=scope or None, timeout=10)
        response.raise_for_status()
        return response.json() if response.content else None

    def telegram_messages(self, since: int = 0, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Records of messages the fake Bot API received (sendMessage, edits, photos), oldest first.

        Each record: ts, bot_id, method, chat_id, message_id, text, parse_mode, reply_markup.
        `bot_id == ALERT_BOT_ID` for Alertmanager, `BOT_ID` for our bot.
        """
        params: dict[str, Any] = {"since": since}
        if chat_id is not None:
            params["chat_id"] = chat_id
        return self._get("telegram", "/_control/messages", **params)

    def wait_for_message(self, predicate: Callable[[dict[str, Any]], Any], timeout: float = 120.0,
                         since: int = 0, poll: float = 0.5) -> dict[str, Any]:
        """First message record (index >= `since`) matching `predicate`; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self.telegram_messages(since=since):
                if predicate(record):
                    return record
            dead = [name for name, ok in self.alive().items() if not ok]
            if dead:
                raise StackError(f"component(s) died while waiting: {', '.join(dead)}\n"
                                 + "\n".join(f"--- {n} ---\n{self.log_tail(n, 20)}" for n in dead))
            if time.monotonic() >= deadline:
                texts = [r.get("text") for r in self.telegram_messages()]
                raise TimeoutError(f"no matching Telegram message within {timeout:.0f}s; got: {texts!r}")
            time.sleep(poll)

    def telegram_command(self, text: str, user_id: int = 4242, chat_id: int = GROUP_CHAT_ID) -> dict[str, Any]:
        """Inject a message from a user into the bot's update queue (as if typed in the group)."""
        response = self._http.post(self.urls["telegram"] + "/_control/updates", timeout=10, json={
            "text": text, "chat_id": chat_id, "user_id": user_id, "token_id": BOT_ID})
        response.raise_for_status()
        return response.json()

    def prom_query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; returns `data.result` (vector items with `metric` and `value`)."""
        body = self._get("prometheus", "/api/v1/query", query=expr)
        if body.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {body}")
        return body["data"]["result"]

    def prom_alerts(self) -> list[dict[str, Any]]:
        """Alerts as Prometheus sees them (pending and firing)."""
        return self._get("prometheus", "/api/v1/alerts")["data"]["alerts"]

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds now (API v2)."""
        return self._get("alertmanager", "/api/v2/alerts")

    def exporter_metrics(self) -> str:
        response = self._http.get(self.urls["exporter"] + "/metrics", timeout=10)
        response.raise_for_status()
        return response.text

    def virtual_now(self) -> datetime:
        if self.clock is None:
            raise RuntimeError("stack not started")
        return self.clock.now()

    def virtual_to_real_seconds(self, virtual_seconds: float) -> float:
        return virtual_seconds / self.clock_speed

    def describe(self) -> str:
        """Human-readable summary: URLs, pids, workdir (the demo prints it)."""
        lines = [f"workdir: {self.workdir}", f"clock:   {self.clock_spec}"]
        for name in self.components:
            url = self.urls.get(name, "-")
            pid = self.procs[name].pid if name in self.procs else "-"
            lines.append(f"  {name:<13} {url:<28} pid {pid}")
        return "\n".join(lines)

