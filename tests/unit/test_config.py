"""exporter.config: defaults, validation (every error names its key), env overrides, secrets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from exporter import __version__
from exporter.config import (
    DEFAULT_APIM_URL,
    CalendarSyncConfig,
    Config,
    ConfigError,
    load_config,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "MOEX_PASSPORT_LOGIN": "robot@example.com",
    "MOEX_PASSPORT_PASSWORD": "pa55-Very-Secret",
    "MOEX_API_KEY": "key-0123456789abcdef",
    "TELEGRAM_BOT_TOKEN": "123456:AAAlertToken",
    "TELEGRAM_BOT_TOKEN_BOT": "654321:BBBBotToken",
}


def write(tmp_path: Path, text: str, name: str = "config.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ or {})
    assert str(info.value).count("\n  - ") == len(info.value.errors)
    return info.value.errors


def test_minimal_file_gets_every_default(tmp_path):
    cfg = load_config(write(tmp_path, "iss: {base_url: https://iss.moex.com}\ncalendar: {file: calendar.yml}\n"), {})
    assert cfg.iss.base_url == "https://iss.moex.com" and cfg.iss.auth == "none"
    assert cfg.iss.passport_url == "https://passport.moex.com/authenticate"
    assert (cfg.iss.timeout_seconds, cfg.iss.retries, cfg.iss.backoff_seconds) == (10, 2, 0.5)
    assert cfg.iss.user_agent == f"algopack-monitor/{__version__}"
    assert cfg.calendar.file == tmp_path / "calendar.yml" and cfg.calendar.reload_interval_seconds == 2
    assert cfg.calendar.sync == CalendarSyncConfig(enabled=False, time="06:17", days_ahead=366, retry_minutes=60)
    assert (cfg.poll.interval_seconds, cfg.poll.publish_offset_seconds, cfg.poll.publish_grace_seconds,
            cfg.poll.max_workers) == (60, 20, 120, 2)
    assert cfg.delay_threshold_seconds == 600
    assert cfg.markets["eq"].probe == "SBER" and cfg.markets["fx"].probe == "CNYRUB_TOM"
    assert cfg.markets["fo"].probe == "auto" and cfg.markets["fo"].futoi_ticker == "RI"
    assert "orderstats" not in cfg.markets["fo"].endpoints
    assert cfg.web.listen_address == "127.0.0.1:9877" and cfg.web.port == 9877
    assert cfg.telegram.api_url == "https://api.telegram.org" and cfg.telegram.report_time is None
    assert cfg.prometheus.url == "http://127.0.0.1:9090"
    assert cfg.alertmanager.url == "http://127.0.0.1:9093"
    assert cfg.grafana.url == "http://127.0.0.1:3000"
    assert cfg.path == tmp_path / "config.yml"
    assert cfg.enabled_pairs() == [
        ("eq", "tradestats"), ("eq", "orderstats"), ("eq", "obstats"), ("eq", "hi2"),
        ("fx", "tradestats"), ("fx", "orderstats"), ("fx", "obstats"), ("fx", "hi2"),
        ("fo", "tradestats"), ("fo", "obstats"), ("fo", "hi2"), ("fo", "futoi"),
    ]


def test_no_file_is_all_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, {})
    assert cfg.path is None and cfg.calendar.file == tmp_path / "calendar.yml"
    assert cfg == dataclasses.replace(Config(), calendar=cfg.calendar)


def test_example_file_is_valid_and_documents_the_defaults():
    example = load_config(REPO_ROOT / "config.example.yml", {})
    defaults = load_config(None, {})
    for field in dataclasses.fields(Config):
        if field.name not in ("path", "calendar"):
            assert getattr(example, field.name) == getattr(defaults, field.name), field.name
    assert example.calendar.file == REPO_ROOT / "calendar.yml"
    assert example.calendar.sync == defaults.calendar.sync


def test_empty_file_is_all_defaults(tmp_path):
    assert load_config(write(tmp_path, "# nothing yet\n"), {}).poll.interval_seconds == 60


def test_apikey_defaults_to_apim_host(tmp_path):
    cfg = load_config(write(tmp_path, "iss: {auth: apikey}\n"), {})
    assert cfg.iss.base_url == DEFAULT_APIM_URL
    cfg = load_config(write(tmp_path, "iss: {auth: apikey, base_url: 'http://127.0.0.1:8080/'}\n"), {})
    assert cfg.iss.base_url == "http://127.0.0.1:8080"


def test_relative_calendar_path_resolves_against_config_dir(tmp_path, monkeypatch):
    (tmp_path / "etc").mkdir()
    monkeypatch.chdir(REPO_ROOT)
    cfg = load_config(write(tmp_path / "etc", "calendar: {file: data/cal.yml}\n"), {})
    assert cfg.calendar.file == tmp_path / "etc" / "data" / "cal.yml"
    absolute = tmp_path / "elsewhere.yml"
    cfg = load_config(write(tmp_path, f"calendar: {{file: '{absolute}'}}\n"), {})
    assert cfg.calendar.file == absolute


def test_calendar_sync_section(tmp_path):
    cfg = load_config(write(tmp_path, "calendar: {sync: {enabled: true, time: 05:43, days_ahead: 30}}\n"), {})
    # an unquoted 05:43 is a YAML 1.1 base-60 integer; it is read back as the time it says
    assert cfg.calendar.sync == CalendarSyncConfig(enabled=True, time="05:43", days_ahead=30, retry_minutes=60)
    compose = load_config(REPO_ROOT / "deploy" / "config.compose.yml", {})
    assert compose.calendar.sync.enabled


def test_partial_market_override_keeps_other_defaults(tmp_path):
    cfg = load_config(write(tmp_path, """
markets:
  fx: {enabled: false}
  fo: {probe: SiZ6, endpoints: [futoi, orderstats]}
"""), {})
    assert cfg.markets["eq"].endpoints == ("tradestats", "orderstats", "obstats", "hi2")
    assert not cfg.markets["fx"].enabled
    assert cfg.markets["fo"].probe == "SiZ6"
    assert cfg.enabled_pairs()[-2:] == [("fo", "orderstats"), ("fo", "futoi")]
    assert not any(market == "fx" for market, _ in cfg.enabled_pairs())


BAD_ENTRIES = [
    ("iss: {auth: oauth}", "iss.auth"),
    ("iss: {base_url: ftp://iss.moex.com}", "iss.base_url"),
    ("iss: {passport_url: not-a-url}", "iss.passport_url"),
    ("iss: {timeout_seconds: 0}", "iss.timeout_seconds"),
    ("iss: {timeout_seconds: ten}", "iss.timeout_seconds"),
    ("iss: {retries: -1}", "iss.retries"),
    ("iss: {retries: 1.5}", "iss.retries"),
    ("iss: {backoff_seconds: -0.1}", "iss.backoff_seconds"),
    ("iss: {user_agent: ''}", "iss.user_agent"),
    ("calendar: {reload_interval_seconds: 0}", "calendar.reload_interval_seconds"),
    ("calendar: {file: 5}", "calendar.file"),
    ("calendar: {sync: true}", "calendar.sync"),
    ("calendar: {sync: {enabled: 'yes'}}", "calendar.sync.enabled"),
    ("calendar: {sync: {time: '6:17'}}", "calendar.sync.time"),
    ("calendar: {sync: {time: '24:00'}}", "calendar.sync.time"),
    ("calendar: {sync: {days_ahead: 0}}", "calendar.sync.days_ahead"),
    ("calendar: {sync: {days_ahead: 1000}}", "calendar.sync.days_ahead"),
    ("calendar: {sync: {retry_minutes: 0}}", "calendar.sync.retry_minutes"),
    ("calendar: {sync: {when: '06:17'}}", "calendar.sync.when"),
    ("poll: {interval_seconds: -60}", "poll.interval_seconds"),
    ("poll: {publish_offset_seconds: -1}", "poll.publish_offset_seconds"),
    ("poll: {publish_grace_seconds: 0}", "poll.publish_grace_seconds"),
    ("poll: {max_workers: 0}", "poll.max_workers"),
    ("poll: {max_workers: true}", "poll.max_workers"),
    ("delay_threshold_seconds: 0", "delay_threshold_seconds"),
    ("delay_threshold_seconds: .nan", "delay_threshold_seconds"),
    ("markets: {eq: {endpoints: [trades]}}", "markets.eq.endpoints[0]"),
    ("markets: {fx: {endpoints: [hi2, futoi]}}", "markets.fx.endpoints[1]"),
    ("markets: {eq: {endpoints: [hi2, hi2]}}", "markets.eq.endpoints[1]"),
    ("markets: {eq: {endpoints: tradestats}}", "markets.eq.endpoints"),
    ("markets: {eq: {endpoints: []}}", "markets.eq.endpoints"),
    ("markets: {eq: {probe: auto}}", "markets.eq.probe"),
    ("markets: {fx: {probe: ''}}", "markets.fx.probe"),
    ("markets: {eq: {probe: 'SB ER'}}", "markets.eq.probe"),
    ("markets: {eq: {enabled: yes please}}", "markets.eq.enabled"),
    ("markets: {eq: {futoi_ticker: RI}}", "markets.eq.futoi_ticker"),
    ("markets: {fo: {futoi_ticker: ''}}", "markets.fo.futoi_ticker"),
    ("markets: {eq: [SBER]}", "markets.eq"),
    ("web: {listen_address: '127.0.0.1'}", "web.listen_address"),
    ("web: {listen_address: '127.0.0.1:99999'}", "web.listen_address"),
    ("telegram: {report_time: '19:05'}", "telegram.report_time"),
    ("telegram: {report_time: '25:01'}", "telegram.report_time"),
    ("telegram: {report_time: 'seven'}", "telegram.report_time"),
    ("telegram: {allowed_chat_ids: [-100123, abc]}", "telegram.allowed_chat_ids[1]"),
    ("telegram: {allowed_user_ids: 5}", "telegram.allowed_user_ids"),
    ("telegram: {report_chat_id: group}", "telegram.report_chat_id"),
    ("telegram: {api_url: telegram}", "telegram.api_url"),
    ("prometheus: {url: localhost:9090}", "prometheus.url"),
    ("grafana: {url: 'http://'}", "grafana.url"),
    ("iss: [1, 2]", "iss"),
]


@pytest.mark.parametrize(("text", "key"), BAD_ENTRIES, ids=[key for _, key in BAD_ENTRIES])
def test_each_bad_entry_names_its_key(tmp_path, text, key):
    errors = errors_of(tmp_path, text + "\n")
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{key}: ")


def test_all_errors_reported_at_once(tmp_path):
    errors = errors_of(tmp_path, "\n".join(text for text, _ in BAD_ENTRIES[:6]).replace("iss: ", "x: ") + """
iss: {auth: oauth, timeout_seconds: 0, retries: -1}
poll: {interval_seconds: 0, max_workers: 0}
markets: {eq: {probe: auto, endpoints: [futoi]}}
""")
    keys = {error.split(":")[0] for error in errors}
    assert {"iss.auth", "iss.timeout_seconds", "iss.retries", "poll.interval_seconds", "poll.max_workers",
            "markets.eq.probe", "markets.eq.endpoints[0]", "x"} <= keys


def test_report_time_unquoted_yaml_base60_is_understood(tmp_path):
    # YAML 1.1 reads 19:07 as the integer 1147
    cfg = load_config(write(tmp_path, "telegram: {report_time: 19:07}\n"), {})
    assert cfg.telegram.report_time == "19:07"


@pytest.mark.parametrize(("text", "key"), [
    ("promethues: {url: 'http://x'}", "promethues"),
    ("poll: {interval: 60}", "poll.interval"),
    ("iss: {base_ur: 'https://iss.moex.com'}", "iss.base_ur"),
    ("markets: {eq: {probes: SBER}}", "markets.eq.probes"),
    ("markets: {cur: {enabled: true}}", "markets.cur"),
])
def test_unknown_keys_are_errors(tmp_path, text, key):
    errors = errors_of(tmp_path, text + "\n")
    assert errors == [e for e in errors if e.startswith(f"{key}: unknown key")] and errors


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yml", {})
    errors = errors_of(tmp_path, "iss: {base_url: [\n")
    assert "not valid YAML" in errors[0]
    assert "top level must be a mapping" in errors_of(tmp_path, "- a\n- b\n")[0]


# --------------------------------------------------------------------------- environment


def test_env_overrides(tmp_path):
    path = write(tmp_path, """
delay_threshold_seconds: 300
poll: {interval_seconds: 30}
telegram: {api_url: 'https://api.telegram.org', allowed_chat_ids: [42]}
prometheus: {url: 'http://10.0.0.1:9090'}
""")
    cfg = load_config(path, {
        "DELAY": "5", "INTERVAL_REQUEST": "2",
        "TELEGRAM_API_URL": "http://127.0.0.1:8081/",
        "PROMETHEUS_URL": "http://prom:9090", "ALERTMANAGER_URL": "http://am:9093",
        "GRAFANA_URL": "https://grafana.example.com/",
        "TELEGRAM_GROUP_CHATID": "-1001234567890",
    })
    assert cfg.delay_threshold_seconds == 300  # 5 minutes
    assert cfg.poll.interval_seconds == 120
    assert cfg.telegram.api_url == "http://127.0.0.1:8081"
    assert (cfg.prometheus.url, cfg.alertmanager.url, cfg.grafana.url) == (
        "http://prom:9090", "http://am:9093", "https://grafana.example.com")
    assert cfg.telegram.group_chat_id == -1001234567890
    assert set(cfg.telegram.allowed_chat_ids) == {42, -1001234567890}
    assert cfg.telegram.report_chat_id == -1001234567890


def test_report_chat_id_from_file_wins_over_group(tmp_path):
    cfg = load_config(write(tmp_path, "telegram: {report_chat_id: 77}\n"), {"TELEGRAM_GROUP_CHATID": "-5"})
    assert cfg.telegram.report_chat_id == 77 and cfg.telegram.allowed_chat_ids == (-5,)


@pytest.mark.parametrize(("value", "seconds"), [("10", 600), ("600s", 600), ("10m", 600), ("1.5", 90),
                                                 ("1h", 3600), (" 2M ", 120)])
def test_delay_units(value, seconds):
    assert load_config(None, {"DELAY": value}).delay_threshold_seconds == seconds


def test_empty_env_values_are_ignored(tmp_path):
    cfg = load_config(write(tmp_path, "delay_threshold_seconds: 120\n"),
                      {"DELAY": "", "MOEX_API_KEY": " ", "TELEGRAM_API_URL": ""})
    assert cfg.delay_threshold_seconds == 120 and cfg.iss.api_key is None
    assert cfg.telegram.api_url == "https://api.telegram.org"


@pytest.mark.parametrize(("env", "value", "key"), [
    ("DELAY", "ten minutes", "delay_threshold_seconds (env DELAY)"),
    ("DELAY", "0", "delay_threshold_seconds (env DELAY)"),
    ("INTERVAL_REQUEST", "-1", "poll.interval_seconds (env INTERVAL_REQUEST)"),
    ("INTERVAL_REQUEST", "0s", "poll.interval_seconds (env INTERVAL_REQUEST)"),
    ("TELEGRAM_API_URL", "telegram", "telegram.api_url (env TELEGRAM_API_URL)"),
    ("GRAFANA_URL", "grafana:3000", "grafana.url (env GRAFANA_URL)"),
    ("TELEGRAM_GROUP_CHATID", "@mygroup", "TELEGRAM_GROUP_CHATID (env)"),
])
def test_env_errors_name_the_variable(env, value, key):
    with pytest.raises(ConfigError) as info:
        load_config(None, {env: value})
    assert len(info.value.errors) == 1 and info.value.errors[0].startswith(f"{key}: "), info.value.errors


def test_bot_token_preference():
    cfg = load_config(None, {"TELEGRAM_BOT_TOKEN": "a:1"})
    assert cfg.telegram.bot_token == "a:1" and cfg.telegram.alert_token == "a:1"
    cfg = load_config(None, {"TELEGRAM_BOT_TOKEN": "a:1", "TELEGRAM_BOT_TOKEN_BOT": "b:2"})
    assert cfg.telegram.bot_token == "b:2" and cfg.telegram.alert_token == "a:1"
    assert load_config(None, {}).telegram.check_secrets()
    assert cfg.telegram.check_secrets() == []


# --------------------------------------------------------------------------- secrets


def test_secrets_come_from_env_and_never_show(tmp_path):
    cfg = load_config(write(tmp_path, "iss: {auth: passport}\n"), SECRETS)
    assert cfg.iss.passport_login == SECRETS["MOEX_PASSPORT_LOGIN"]
    assert cfg.iss.passport_password == SECRETS["MOEX_PASSPORT_PASSWORD"]
    assert cfg.iss.api_key == SECRETS["MOEX_API_KEY"]
    assert cfg.telegram.bot_token == SECRETS["TELEGRAM_BOT_TOKEN_BOT"]
    for text in (repr(cfg), str(cfg), repr(cfg.iss), str(cfg.telegram)):
        for secret in SECRETS.values():
            assert secret not in text


def test_errors_never_contain_secrets(tmp_path):
    bad = """
iss: {auth: passport, base_url: 'https://robot:pa55-Very-Secret@iss.moex.com', password: pa55-Very-Secret}
poll: {interval_seconds: 0}
"""
    errors = errors_of(tmp_path, bad, SECRETS)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, bad), SECRETS)
    for text in (str(info.value), repr(info.value), *errors):
        for secret in (*SECRETS.values(), "pa55-Very-Secret", "robot:"):
            assert secret not in text


@pytest.mark.parametrize(("text", "key", "env"), [
    ("iss: {password: x}", "iss.password", "MOEX_PASSPORT_PASSWORD"),
    ("iss: {api_key: x}", "iss.api_key", "MOEX_API_KEY"),
    ("iss: {apikey: x}", "iss.apikey", "MOEX_API_KEY"),
    ("iss: {login: x}", "iss.login", "MOEX_PASSPORT_LOGIN"),
    ("iss: {passport_login: x}", "iss.passport_login", "MOEX_PASSPORT_LOGIN"),
    ("telegram: {bot_token: x}", "telegram.bot_token", "TELEGRAM_BOT_TOKEN"),
    ("token: x", "token", "TELEGRAM_BOT_TOKEN"),
    ("markets: {eq: {api_key: x}}", "markets.eq.api_key", "MOEX_API_KEY"),
])
def test_secret_looking_keys_are_rejected(tmp_path, text, key, env):
    errors = errors_of(tmp_path, text + "\n")
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{key}: secrets come from the environment: set {env}")


def test_check_secrets_per_auth_mode(tmp_path):
    none = load_config(None, {})
    assert none.iss.check_secrets() == []
    passport = load_config(write(tmp_path, "iss: {auth: passport}\n"), {"MOEX_PASSPORT_LOGIN": "me"})
    assert passport.iss.check_secrets() == ["iss.auth=passport: set MOEX_PASSPORT_PASSWORD in the environment"]
    apikey = load_config(write(tmp_path, "iss: {auth: apikey}\n"), {})
    assert apikey.iss.check_secrets() == ["iss.auth=apikey: set MOEX_API_KEY in the environment"]
    ok = load_config(write(tmp_path, "iss: {auth: apikey}\n"), {"MOEX_API_KEY": "k"})
    assert ok.iss.check_secrets() == []


def test_config_is_frozen():
    cfg = load_config(None, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.iss.auth = "apikey"  # type: ignore[misc]


# ----- hosts, response cap, hostile files (issues 13 and 14) ------------------------

def billion_laughs(levels: int = 9, width: int = 9, pad: int = 0) -> str:
    """The classic alias bomb: `width ** levels` strings from a few hundred bytes."""
    lines = ['lol0: &lol0 "' + "lol" * (1 + pad) + '"']
    for level in range(1, levels + 1):
        lines.append(f"lol{level}: &lol{level} [" + ", ".join([f"*lol{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _cli_exit(config: Path, env_extra: dict | None = None):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOEX_", "TELEGRAM_"))}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "exporter", f"--config.file={config}", "--once"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("text, names", [
    ("iss: {auth: apikey, base_url: 'https://iss.moex.com'}\n", ("iss.base_url", "iss.auth=apikey", "apim.moex.com")),
    ("iss: {auth: passport, base_url: 'https://APIM.moex.com/'}\n", ("iss.base_url", "iss.auth=passport",
                                                                    "iss.moex.com")),
])
def test_credential_sent_to_the_wrong_host_is_refused(tmp_path, text, names):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), SECRETS)
    message = str(info.value)
    assert all(name in message for name in names), message
    assert SECRETS["MOEX_API_KEY"] not in message and SECRETS["MOEX_PASSPORT_PASSWORD"] not in message


def test_host_follows_the_auth_mode_unless_set(tmp_path):
    assert load_config(write(tmp_path, "iss: {auth: passport}\n"), SECRETS).iss.base_url == "https://iss.moex.com"
    assert load_config(write(tmp_path, "iss: {auth: none}\n"), {}).iss.base_url == "https://iss.moex.com"
    assert load_config(write(tmp_path, "iss: {auth: apikey}\n"), SECRETS).iss.base_url == DEFAULT_APIM_URL
    # passport on iss.moex.com and apikey on apim are the right pairs; other hosts are not judged
    load_config(write(tmp_path, "iss: {auth: passport, base_url: 'https://iss.moex.com'}\n"), SECRETS)
    load_config(write(tmp_path, "iss: {auth: apikey, base_url: 'https://apim.moex.com'}\n"), SECRETS)


def test_wrong_host_exits_2_at_start_naming_the_keys(tmp_path):
    config = write(tmp_path, "iss: {auth: apikey, base_url: 'https://iss.moex.com'}\n")
    done = _cli_exit(config, {"MOEX_API_KEY": SECRETS["MOEX_API_KEY"]})
    assert done.returncode == 2, done.stderr
    assert "iss.base_url" in done.stderr and "iss.auth=apikey" in done.stderr
    assert SECRETS["MOEX_API_KEY"] not in done.stderr + done.stdout


def test_example_does_not_pin_the_host():
    """Switching the example to apikey must not keep iss.moex.com (base_url is commented)."""
    text = (REPO_ROOT / "config.example.yml").read_text(encoding="utf-8")
    assert "\n  base_url:" not in text and "# base_url: https://iss.moex.com" in text
    switched = text.replace("\n  auth: none\n", "\n  auth: apikey\n")
    assert switched != text
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yml"
        path.write_text(switched, encoding="utf-8")
        assert load_config(path, SECRETS).iss.base_url == DEFAULT_APIM_URL


def test_max_response_bytes(tmp_path):
    assert load_config(None, {}).iss.max_response_bytes == 64 * 1024 * 1024 == 67108864
    assert load_config(write(tmp_path, "iss: {max_response_bytes: 1000}\n"), {}).iss.max_response_bytes == 1000
    for bad in ("0", "-5", "1.5", "'big'", "true"):
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, f"iss: {{max_response_bytes: {bad}}}\n"), {})
        assert "iss.max_response_bytes" in str(info.value)


def test_non_utf8_config_is_a_reason_not_a_traceback(tmp_path):
    path = tmp_path / "config.yml"
    path.write_bytes("# конфиг\npoll: {interval_seconds: 60}\n".encode("cp1251"))
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert "not UTF-8" in str(info.value) and "line 1" in str(info.value)
    done = _cli_exit(path)
    assert done.returncode == 2, done.stderr
    assert "not UTF-8" in done.stderr and "Traceback" not in done.stderr


def test_billion_laughs_config_is_refused_fast(tmp_path):
    import time

    text = billion_laughs(pad=4600)   # ~15 KB, 9**9 strings when expanded
    assert 14_000 < len(text.encode()) < 20_000
    path = write(tmp_path, "poll: {interval_seconds: 60}\n" + text.replace("lol", "x_lol"))
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert time.monotonic() - started < 0.5
    assert "aliases" in str(info.value) and len(str(info.value)) < 600
    done = _cli_exit(path)
    assert done.returncode == 2 and "aliases" in done.stderr


def test_a_few_aliases_still_work(tmp_path):
    cfg = load_config(write(tmp_path, "telegram: {allowed_user_ids: &ids [1, 2], admin_user_ids: *ids}\n"), {})
    assert cfg.telegram.admin_user_ids == (1, 2)


def test_error_messages_never_render_a_huge_value(tmp_path):
    huge, key = "A" * 200_000, "K" * 1000   # YAML keys stop at 1024 characters
    text = (f"iss: {{auth: '{huge}'}}\nmarkets: {{eq: {{endpoints: ['{huge}']}}}}\n"
            f"{key}: 1\npoll: {{{key}: 1}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), {})
    assert len(info.value.errors) >= 4
    assert all(len(line) <= 300 for line in info.value.errors), [len(line) for line in info.value.errors]
