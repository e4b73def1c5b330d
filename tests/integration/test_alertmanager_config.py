"""Alertmanager configuration rendering, the Telegram template (rendered by the real amtool),
and inhibition + delivery through a real Alertmanager to the fake Bot API."""

from __future__ import annotations

import html.parser
import json
import os
import re
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml

from deploy.render_alertmanager import RenderError, render_alertmanager
from sandbox.procs import ManagedProcess, free_port, wait_http
from sandbox.telegram import FakeTelegram
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[2]
TOKEN = "7000001:AAH-test_token-not-real"
CHAT_ID = -1001234567890
GRAFANA = "https://grafana.example.org/monitor"

pytestmark = pytest.mark.needs_binary("amtool")


def environ(**overrides: str) -> dict[str, str]:
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_GROUP_CHATID": str(CHAT_ID),
        "TELEGRAM_API_URL": "http://127.0.0.1:9",
        "GRAFANA_URL": GRAFANA,
    }
    env.update(overrides)
    return env


@pytest.fixture()
def rendered(tmp_path: Path) -> Path:
    return render_alertmanager(tmp_path / "am", environ())


# ---------------------------------------------------------------------------------------
# Rendering


def test_render_writes_a_valid_private_config(rendered: Path) -> None:
    template = rendered.parent / "templates" / "telegram.tmpl"
    for path in (rendered, template):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    result = subprocess.run(["amtool", "check-config", str(rendered)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout

    config = yaml.safe_load(rendered.read_text(encoding="utf-8"))
    telegram = config["receivers"][0]["telegram_configs"][0]
    assert telegram["bot_token"] == TOKEN
    assert telegram["chat_id"] == CHAT_ID and isinstance(telegram["chat_id"], int)
    assert telegram["api_url"] == "http://127.0.0.1:9"
    assert telegram["parse_mode"] == "HTML"
    assert telegram["send_resolved"] is True
    assert "bot_token_file" not in telegram
    route = config["route"]
    assert route["group_by"] == ["alertname", "market"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("30s", "1m", "4h")
    sources = {rule["source_matchers"][0] for rule in config["inhibit_rules"]}
    assert sources == {'alertname="AlgopackExporterDown"', 'alertname="AlgopackPollFailing"',
                       'alertname="AlgopackFeedSLOBurn"'}
    poll_rule = next(r for r in config["inhibit_rules"] if "PollFailing" in r["source_matchers"][0])
    assert poll_rule["equal"] == ["market", "endpoint"]
    assert GRAFANA in template.read_text(encoding="utf-8")
    assert "__GRAFANA_URL__" not in template.read_text(encoding="utf-8")


def test_render_takes_timing_from_the_environment(tmp_path: Path) -> None:
    path = render_alertmanager(tmp_path, environ(ALERTMANAGER_GROUP_WAIT="1s", ALERTMANAGER_GROUP_INTERVAL="2s",
                                                 ALERTMANAGER_REPEAT_INTERVAL="1m30s", TELEGRAM_API_URL=""))
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    route = config["route"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("1s", "2s", "1m30s")
    assert config["receivers"][0]["telegram_configs"][0]["api_url"] == "https://api.telegram.org"


def test_render_names_every_missing_variable(tmp_path: Path) -> None:
    with pytest.raises(RenderError) as error:
        render_alertmanager(tmp_path, {"GRAFANA_URL": GRAFANA})
    assert "TELEGRAM_BOT_TOKEN" in str(error.value)
    assert "TELEGRAM_GROUP_CHATID" in str(error.value)
    assert not (tmp_path / "alertmanager.yml").exists()


@pytest.mark.parametrize(("name", "value"), [
    ("TELEGRAM_GROUP_CHATID", "@mygroup"),
    ("GRAFANA_URL", "grafana:3000"),
    ("TELEGRAM_API_URL", "http://x/\"><b>"),
    ("ALERTMANAGER_GROUP_WAIT", "30 seconds"),
])
def test_render_rejects_bad_values(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(RenderError, match=name):
        render_alertmanager(tmp_path, environ(**{name: value}))


def test_a_bad_token_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    secret = "7000001:secret part\nwith: yaml"
    with pytest.raises(RenderError) as error:
        render_alertmanager(tmp_path, environ(TELEGRAM_BOT_TOKEN=secret))
    assert "TELEGRAM_BOT_TOKEN" in str(error.value)
    assert "secret" not in str(error.value)


def test_cli_renders_and_fails_clearly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "ALERTMANAGER_", "GRAFANA_"))}
    ok = subprocess.run([sys.executable, "-m", "deploy.render_alertmanager", "--out", str(tmp_path / "a")],
                        env={**env, **environ()}, capture_output=True, text=True, cwd=REPO, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "a" / "alertmanager.yml").exists()
    assert TOKEN not in ok.stdout + ok.stderr
    bad = subprocess.run([sys.executable, "-m", "deploy.render_alertmanager", "--out", str(tmp_path / "b")],
                         env={**env, "TELEGRAM_GROUP_CHATID": "-1"}, capture_output=True, text=True, cwd=REPO,
                         timeout=30)
    assert bad.returncode == 2
    assert "TELEGRAM_BOT_TOKEN is not set" in bad.stderr


def test_committed_alerting_files_hold_no_token() -> None:
    token_like = re.compile(r"\b\d{6,}:[A-Za-z0-9_-]{30,}\b")
    paths = [*(REPO / "alertmanager").rglob("*"), *(REPO / "prometheus").rglob("*"),
             REPO / "deploy" / "render_alertmanager.py"]
    for path in paths:
        if path.is_file():
            assert not token_like.search(path.read_text(encoding="utf-8")), path
    assert "bot_token: ${bot_token}" in (REPO / "alertmanager" / "alertmanager.yml.tmpl").read_text()


# ---------------------------------------------------------------------------------------
# The Telegram template, rendered by amtool 0.25 (the same template engine Alertmanager uses)

STARTS = datetime(2026, 11, 25, 9, 36, tzinfo=UTC)


def alert(name: str, market: str | None, endpoint: str | None, status: str = "firing",
          minutes: float = 7, **annotations: str) -> dict:
    labels = {"alertname": name, "severity": "critical"}
    if market:
        labels["market"] = market
    if endpoint:
        labels["endpoint"] = endpoint
    ends = STARTS + timedelta(minutes=minutes) if status == "resolved" else datetime(1, 1, 1, tzinfo=UTC)
    return {"status": status, "labels": labels, "annotations": annotations,
            "startsAt": STARTS.isoformat(), "endsAt": ends.isoformat().replace("+00:00", "Z"),
            "generatorURL": "http://prometheus/graph", "fingerprint": f"{name}{market}{endpoint}{status}"}


def delayed(market: str, endpoint: str, status: str = "firing", **kwargs) -> dict:
    annotations = dict(
        title="Задержка данных",
        description="Данные не обновлялись 14 мин (порог 10 мин), последний интервал 12:35 по SBER.",
        since="12:36", resolved="данные снова приходят",
        dashboard=f"/d/algopack-overview/?viewPanel=11&var-market={market}&var-endpoint={endpoint}",
        iss_url=f"https://iss.moex.com/iss/datashop/algopack/{market}/{endpoint}.json")
    annotations.update(kwargs)
    return alert("AlgopackDataDelayed", market, endpoint, status, **annotations)


def render(template_dir: Path, alerts: list[dict], tmp_path: Path) -> str:
    common = {k: v for k, v in alerts[0]["labels"].items()
              if all(a["labels"].get(k) == v for a in alerts)}
    data = {"receiver": "telegram", "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
            "alerts": alerts, "groupLabels": {k: common[k] for k in ("alertname", "market") if k in common},
            "commonLabels": common, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093"}
    data_path = tmp_path / "data.json"
    data_path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = subprocess.run(
        ["amtool", "template", "render", f"--template.glob={template_dir}/*.tmpl",
         '--template.text={{ template "algopack.telegram.message" . }}', f"--template.data={data_path}"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


class TelegramHtml(html.parser.HTMLParser):
    """What Telegram's HTML mode accepts here: <b> and <a href>, balanced; plain text kept."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in ("b", "a"), f"tag <{tag}> in message"
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"] or "")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(message: str) -> TelegramHtml:
    parser = TelegramHtml()
    parser.feed(message)
    parser.close()
    assert not parser.stack, f"unclosed tags {parser.stack}"
    return parser


def telegram_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_one_firing_alert_reads_like_the_operators_expect(rendered: Path, tmp_path: Path) -> None:
    text = render(rendered.parent / "templates", [delayed("eq", "tradestats")], tmp_path)
    assert text == (
        "🔴 <b>Задержка данных</b> · EQ | Акции · tradestats\n"
        "Данные не обновлялись 14 мин (порог 10 мин), последний интервал 12:35 по SBER.\n"
        "С 12:36 МСК\n"
        f'<a href="{GRAFANA}/d/algopack-overview/?viewPanel=11&amp;var-market=eq&amp;var-endpoint=tradestats">'
        "Grafana</a> · "
        '<a href="https://iss.moex.com/iss/datashop/algopack/eq/tradestats.json">ISS</a>'
    )
    parsed = parse_html(text)
    assert parsed.hrefs[0] == f"{GRAFANA}/d/algopack-overview/?viewPanel=11&var-market=eq&var-endpoint=tradestats"


def test_resolved_alert_says_what_recovered_and_how_long(rendered: Path, tmp_path: Path) -> None:
    text = render(rendered.parent / "templates", [delayed("fx", "obstats", status="resolved", minutes=7.2)], tmp_path)
    assert text == ("✅ <b>Решено</b> · Задержка данных · FX | Валюта · obstats — данные снова приходят "
                    "(длилось 7 мин)")
    long = render(rendered.parent / "templates", [delayed("fo", "futoi", status="resolved", minutes=150)], tmp_path)
    assert "FO | Фьючерсы · futoi" in long and "(длилось 2,5 ч)" in long


def test_values_are_html_escaped(rendered: Path, tmp_path: Path) -> None:
    nasty = delayed("eq", "tradestats", description='Нет данных по <b>"A&B"</b>', since="<12:36>")
    text = render(rendered.parent / "templates", [nasty], tmp_path)
    parsed = parse_html(text)
    assert "&lt;b&gt;&#34;A&amp;B&#34;&lt;/b&gt;" in text
    assert 'Нет данных по <b>"A&B"</b>' in "".join(parsed.text)
    assert "С <12:36> МСК" in "".join(parsed.text)


def test_group_with_firing_and_resolved_alerts(rendered: Path, tmp_path: Path) -> None:
    alerts = [delayed("eq", "tradestats"), delayed("eq", "orderstats"), delayed("eq", "obstats", status="resolved")]
    text = render(rendered.parent / "templates", alerts, tmp_path)
    parse_html(text)
    head, _, rest = text.partition("\n")
    assert head == "🔴 <b>Задержка данных</b> · EQ | Акции — 2"
    assert "• <b>tradestats</b>: Данные не обновлялись 14 мин" in rest
    assert "• <b>orderstats</b>: Данные не обновлялись 14 мин" in rest
    assert rest.rstrip().endswith(
        "✅ <b>Решено</b> · Задержка данных · EQ | Акции · obstats — данные снова приходят (длилось 7 мин)")


def test_alerts_without_market_or_links(rendered: Path, tmp_path: Path) -> None:
    down = alert("AlgopackExporterDown", None, None, title="Экспортёр не отвечает",
                 description="Prometheus не может получить метрики экспортёра (job algopack). "
                             "Остальные алерты подавлены до восстановления.",
                 resolved="экспортёр снова отвечает", dashboard="/d/algopack-health/?viewPanel=20")
    text = render(rendered.parent / "templates", [down], tmp_path)
    assert text == ("🔴 <b>Экспортёр не отвечает</b>\n"
                    "Prometheus не может получить метрики экспортёра (job algopack). "
                    "Остальные алерты подавлены до восстановления.\n"
                    f'<a href="{GRAFANA}/d/algopack-health/?viewPanel=20">Grafana</a>')


def test_alert_storm_stays_under_the_telegram_limit(tmp_path: Path) -> None:
    long_grafana = "https://grafana.example.org/" + "x" * 150
    template_dir = render_alertmanager(tmp_path / "am", environ(GRAFANA_URL=long_grafana)).parent / "templates"
    intervals = ", ".join(f"{10 + i // 12}:{(i % 12) * 5:02d}" for i in range(12))
    description = f"Нет данных за {intervals} … (пропущено интервалов: 140) по SiZ6."
    firing = [delayed("fo", f"endpoint{i:02d}", title="Пропущены интервалы", description=description)
              for i in range(60)]
    resolved = [delayed("fo", f"endpoint{i:02d}", status="resolved") for i in range(60, 120)]
    for alerts, tail in ((firing, "… и ещё 55"), (firing + resolved, "… и ещё 55")):
        text = render(template_dir, alerts, tmp_path)
        assert telegram_length(text) < 4096, telegram_length(text)
        parsed = parse_html(text)
        assert "… и ещё 55" in "".join(parsed.text)
        assert text.startswith("🔴 <b>Пропущены интервалы</b> · FO | Фьючерсы — 60")
        assert tail in text
    assert text.count("✅") == 1 and text.count("длилось") == 5


# ---------------------------------------------------------------------------------------
# A real Alertmanager: inhibition and delivery to the fake Bot API


def post_alerts(am_url: str, alerts: list[dict]) -> None:
    payload = []
    for item in alerts:
        payload.append({"labels": item["labels"], "annotations": item["annotations"],
                        "startsAt": datetime.now(UTC).isoformat(), "generatorURL": "http://prometheus/graph"})
    response = requests.post(f"{am_url}/api/v2/alerts", json=payload, timeout=5)
    assert response.status_code == 200, response.text


def am_alert_states(am_url: str) -> dict[tuple[str, str | None, str | None], dict]:
    alerts = requests.get(f"{am_url}/api/v2/alerts", timeout=5).json()
    return {(a["labels"]["alertname"], a["labels"].get("market"), a["labels"].get("endpoint")): a["status"]
            for a in alerts}


@pytest.mark.integration
@pytest.mark.needs_binary("prometheus-alertmanager")
def test_inhibition_and_delivery_through_a_real_alertmanager(tmp_path: Path) -> None:
    with FakeTelegram() as telegram:
        config = render_alertmanager(tmp_path / "am", environ(
            TELEGRAM_API_URL=telegram.url, ALERTMANAGER_GROUP_WAIT="1s", ALERTMANAGER_GROUP_INTERVAL="1s",
            ALERTMANAGER_REPEAT_INTERVAL="1h"))
        port = free_port()
        am_url = f"http://127.0.0.1:{port}"
        argv = ["prometheus-alertmanager", f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
        with ManagedProcess("alertmanager", argv, tmp_path / "alertmanager.log") as am:
            wait_http(f"{am_url}/-/ready", timeout=30, proc=am)

            # PollFailing of eq/orderstats hides the data alerts of eq/orderstats only.
            poll = alert("AlgopackPollFailing", "eq", "orderstats", title="Ошибки опроса ISS",
                         description="Опросы ISS для EQ orderstats завершаются ошибкой (timeout).")
            post_alerts(am_url, [poll, delayed("eq", "orderstats"), delayed("eq", "tradestats")])
            first = telegram.wait_for(lambda m: "Задержка данных" in (m["text"] or ""), timeout=20)
            telegram.wait_for(lambda m: "Ошибки опроса ISS" in (m["text"] or ""), timeout=20)
            assert first["chat_id"] == CHAT_ID and first["parse_mode"] == "HTML"
            assert first["text"].startswith("🔴 <b>Задержка данных</b> · EQ | Акции · tradestats\n")
            assert "orderstats" not in first["text"]
            states = am_alert_states(am_url)
            assert states[("AlgopackDataDelayed", "eq", "orderstats")]["state"] == "suppressed"
            assert states[("AlgopackDataDelayed", "eq", "orderstats")]["inhibitedBy"]
            assert states[("AlgopackDataDelayed", "eq", "tradestats")]["state"] == "active"

            # ExporterDown hides everything else, including a new data alert of another market.
            down = alert("AlgopackExporterDown", None, None, title="Экспортёр не отвечает",
                         description="Prometheus не может получить метрики экспортёра (job algopack).")
            down["labels"]["job"] = "algopack"
            post_alerts(am_url, [down])
            wait_until(lambda: am_alert_states(am_url)[("AlgopackExporterDown", None, None)]["state"] == "active")
            post_alerts(am_url, [delayed("fo", "futoi")])
            telegram.wait_for(lambda m: "Экспортёр не отвечает" in (m["text"] or ""), timeout=20)
            states = am_alert_states(am_url)
            for key, status in states.items():
                if key[0] != "AlgopackExporterDown":
                    assert status["state"] == "suppressed", key
            # The fo alert's group exists and its one alert is suppressed: Alertmanager mutes a
            # suppressed alert at every flush, so nothing about fo is ever sent (no sleep needed).
            fo_groups = [g for g in requests.get(f"{am_url}/api/v2/alerts/groups", timeout=5).json()
                         if any(a["labels"].get("market") == "fo" for a in g["alerts"])]
            assert fo_groups and all(a["status"]["state"] == "suppressed" for g in fo_groups for a in g["alerts"])
            texts = [m["text"] for m in telegram.messages(chat_id=CHAT_ID)]
            assert not any("FO | Фьючерсы" in text for text in texts), texts
            assert len(texts) == 3, texts


# ---------------------------------------------------------------------------------------
# The watchdog heartbeat (ALERTMANAGER_HEARTBEAT_URL)

HEARTBEAT_URL = "https://hc-ping.com/0f1e2d3c-aaaa-bbbb-cccc-000000000017"


def amtool_route(config: Path, *labels: str) -> str:
    result = subprocess.run(["amtool", "config", "routes", "test", f"--config.file={config}", *labels],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("url", ["", HEARTBEAT_URL])
def test_watchdog_goes_to_the_heartbeat_receiver_only(tmp_path: Path, url: str) -> None:
    path = render_alertmanager(tmp_path, environ(ALERTMANAGER_HEARTBEAT_URL=url))
    result = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert amtool_route(path, "alertname=AlgopackWatchdog", "severity=none") == "heartbeat"
    assert amtool_route(path, "alertname=AlgopackDataDelayed", "market=eq") == "telegram"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    (route,) = config["route"]["routes"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("0s", "60s", "240s")
    receivers = {r["name"]: r for r in config["receivers"]}
    assert set(receivers) == {"telegram", "heartbeat"}
    if url:
        (webhook,) = receivers["heartbeat"]["webhook_configs"]
        assert webhook == {"url": url, "send_resolved": False, "max_alerts": 1}
    else:
        assert receivers["heartbeat"] == {"name": "heartbeat"}
    exporter_down = next(r for r in config["inhibit_rules"] if "ExporterDown" in r["source_matchers"][0])
    assert 'alertname!="AlgopackWatchdog"' in exporter_down["target_matchers"]


def test_heartbeat_interval_is_bounded_and_the_url_never_echoed(tmp_path: Path) -> None:
    path = render_alertmanager(tmp_path, environ(ALERTMANAGER_HEARTBEAT_URL=HEARTBEAT_URL,
                                                 ALERTMANAGER_HEARTBEAT_INTERVAL="10s"))
    (route,) = yaml.safe_load(path.read_text(encoding="utf-8"))["route"]["routes"]
    assert (route["group_interval"], route["repeat_interval"]) == ("2s", "8s")
    for bad in ("6m", "1s", "soon"):
        with pytest.raises(RenderError, match="ALERTMANAGER_HEARTBEAT_INTERVAL"):
            render_alertmanager(tmp_path, environ(ALERTMANAGER_HEARTBEAT_INTERVAL=bad))
    with pytest.raises(RenderError) as caught:
        render_alertmanager(tmp_path, environ(ALERTMANAGER_HEARTBEAT_URL="ftp://secret-check-id"))
    assert "secret-check-id" not in str(caught.value)
