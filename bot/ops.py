"""Thin clients for the Prometheus HTTP API and the Alertmanager API v2 (/status, /alerts,
/silences, /report). Blocking (requests); handlers call them through asyncio.to_thread.

Every failure — connection refused, timeout, HTTP error, an answer that is not what the API
documents — becomes `OpsError` with a short reason the bot can show.

A client takes one base URL or several (an HA pair, docs/deploy.md): a request goes to the
URL that answered last and moves on to the next one when it gets no answer (connection
error, timeout, HTTP 5xx). An HTTP 4xx is an answer and is not retried elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import requests

TIMEOUT_SECONDS = 5.0
# The dead man's switch alert (prometheus/rules/watchdog.yml): always firing, never listed.
WATCHDOG_ALERT = "AlgopackWatchdog"


class OpsError(Exception):
    """A backend (Prometheus or Alertmanager) could not answer; str() is a short reason."""


def _reason(exc: Exception) -> str:
    if isinstance(exc, requests.ConnectionError):
        return "нет соединения"
    if isinstance(exc, requests.Timeout):
        return "таймаут"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


def _answered(exc: Exception) -> bool:
    """The server answered (a 4xx, or a body that is not JSON): another replica would not help."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code < 500
    return isinstance(exc, ValueError) and not isinstance(exc, requests.RequestException)


class _Client:
    def __init__(self, base_urls: str | Sequence[str], timeout: float = TIMEOUT_SECONDS):
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("at least one base URL")
        self.base_urls = tuple(url.rstrip("/") for url in urls)
        self._current = 0
        self._singles: dict[int, Self] = {}
        self.timeout = timeout
        self.session = requests.Session()

    @property
    def base_url(self) -> str:
        """The URL that answered last (the first one until a failover)."""
        return self.base_urls[self._current]

    def only(self, index: int) -> Self:
        """A client for one of the URLs alone (the dead-man check judges each replica)."""
        if len(self.base_urls) == 1:
            return self
        if index not in self._singles:
            self._singles[index] = type(self)(self.base_urls[index], self.timeout)
        return self._singles[index]

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        first_error: OpsError | None = None
        for step in range(len(self.base_urls)):
            index = (self._current + step) % len(self.base_urls)
            try:
                response = self.session.request(method, self.base_urls[index] + path, timeout=self.timeout,
                                                **kwargs)
                response.raise_for_status()
                self._current = index
                if not response.content:
                    return None
                return response.json()
            except (requests.RequestException, ValueError) as exc:
                error = OpsError(_reason(exc))
                error.__cause__ = exc
                if _answered(exc):
                    self._current = index
                    raise error from exc
                first_error = first_error or error
        assert first_error is not None
        raise first_error


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class Prometheus(_Client):
    """`/api/v1/query` and `/api/v1/query_range`."""

    def _data(self, path: str, params: dict[str, Any]) -> Any:
        body = self._request("GET", path, params=params)
        if not isinstance(body, dict) or body.get("status") != "success":
            raise OpsError(str((body or {}).get("error", "неожиданный ответ")))
        return body["data"]

    def query(self, promql: str) -> list[Sample]:
        data = self._data("/api/v1/query", {"query": promql})
        if data.get("resultType") != "vector":
            raise OpsError(f"неожиданный тип {data.get('resultType')}")
        return [Sample(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]

    def query_at(self, promql: str, at: float) -> Any:
        """Instant query evaluated at Unix time `at`; the raw `data` ({"resultType", "result"}),
        whatever its type (a range selector such as `x[5m]` gives a matrix)."""
        return self._data("/api/v1/query", {"query": promql, "time": f"{at:.3f}"})

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[tuple[dict[str, str],
                                                                                       list[tuple[float, float]]]]:
        data = self._data("/api/v1/query_range", {"query": promql, "start": f"{start:.3f}",
                                                  "end": f"{end:.3f}", "step": f"{step:g}"})
        if data.get("resultType") != "matrix":
            raise OpsError(f"неожиданный тип {data.get('resultType')}")
        return [(dict(item["metric"]), [(float(ts), float(value)) for ts, value in item["values"]])
                for item in data["result"]]


@dataclass(frozen=True)
class Alert:
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    state: str              # active | suppressed | unprocessed

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "?")


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: list[dict[str, Any]]
    starts_at: datetime | None
    ends_at: datetime | None
    created_by: str
    comment: str
    state: str


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Alertmanager(_Client):
    """API v2: alerts, silences."""

    def _alerts(self, params: dict[str, Any]) -> list[Alert]:
        body = self._request("GET", "/api/v2/alerts", params=params)
        if not isinstance(body, list):
            raise OpsError("неожиданный ответ")
        return [Alert(item.get("fingerprint", ""), dict(item.get("labels") or {}),
                      dict(item.get("annotations") or {}), _time(item.get("startsAt")),
                      (item.get("status") or {}).get("state", "active")) for item in body]

    def alerts(self, include_silenced: bool = False) -> list[Alert]:
        """Alerts for people: the always-firing watchdog is left out."""
        params = {"active": "true", "silenced": str(include_silenced).lower(),
                  "inhibited": str(include_silenced).lower(), "unprocessed": "true"}
        alerts = [a for a in self._alerts(params) if a.name != WATCHDOG_ALERT]
        return sorted(alerts, key=lambda a: (a.starts_at or datetime.min.replace(tzinfo=UTC),
                                             a.fingerprint))

    def watchdog_active(self) -> bool:
        """AlgopackWatchdog is active here: Prometheus evaluates rules and reaches us."""
        params = {"active": "true", "silenced": "false", "inhibited": "false", "unprocessed": "false",
                  "filter": f'alertname="{WATCHDOG_ALERT}"'}
        return any(a.name == WATCHDOG_ALERT and a.state == "active" for a in self._alerts(params))

    def alert(self, fingerprint: str) -> Alert | None:
        for alert in self.alerts(include_silenced=True):
            if alert.fingerprint == fingerprint:
                return alert
        return None

    def create_silence(self, labels: dict[str, str], starts_at: datetime, ends_at: datetime, created_by: str,
                       comment: str) -> str:
        """A silence matching exactly these labels; returns its id."""
        matchers = [{"name": name, "value": value, "isRegex": False, "isEqual": True}
                    for name, value in sorted(labels.items())]
        body = self._request("POST", "/api/v2/silences", json={
            "matchers": matchers, "startsAt": _rfc3339(starts_at), "endsAt": _rfc3339(ends_at),
            "createdBy": created_by, "comment": comment})
        if not isinstance(body, dict) or "silenceID" not in body:
            raise OpsError("неожиданный ответ")
        return str(body["silenceID"])

    def silences(self, active_only: bool = True) -> list[Silence]:
        body = self._request("GET", "/api/v2/silences")
        if not isinstance(body, list):
            raise OpsError("неожиданный ответ")
        result = [Silence(item["id"], list(item.get("matchers") or []), _time(item.get("startsAt")),
                          _time(item.get("endsAt")), item.get("createdBy", ""), item.get("comment", ""),
                          (item.get("status") or {}).get("state", "")) for item in body]
        if active_only:
            result = [s for s in result if s.state == "active"]
        return sorted(result, key=lambda s: (s.ends_at or datetime.max.replace(tzinfo=UTC), s.id))

    def silence(self, silence_id: str) -> Silence | None:
        for silence in self.silences(active_only=False):
            if silence.id == silence_id:
                return silence
        return None

    def expire_silence(self, silence_id: str) -> None:
        self._request("DELETE", f"/api/v2/silence/{silence_id}")
