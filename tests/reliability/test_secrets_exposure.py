"""Secrets and exposure without a full stack: the committed tree, the exporter's logs and
metrics in passport and API-key mode at debug level, and default listen addresses.

The running stack (all processes, Alertmanager included) is scanned in
test_alerting_e2e.py; compose ports are checked in tests/integration/test_compose.py
::test_ports_bound_to_loopback_only."""

from __future__ import annotations

import logging
import re
import subprocess

import pytest

from exporter.cli import build_parser
from exporter.config import WebConfig, load_config
from exporter.iss import IssError
from tests.integration.exporter_sim import Simulation, at

from .helpers import CONFIG_ONLY, REPO, SECRET_SHAPES, find_secrets

pytestmark = pytest.mark.reliability

LOGIN, PASSWORD, API_KEY = "secrets-robot", "Secrets-Passw0rd-0a9f", "secrets-api-key-5b2c9e0d7f1a"


def test_committed_files_hold_no_secret():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    scanned, findings = 0, []
    for name in filter(None, (f.decode() for f in files)):
        path = REPO / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (images)
        scanned += 1
        for what, pattern in SECRET_SHAPES.items():
            if what in CONFIG_ONLY and path.suffix == ".py":
                continue
            for match in pattern.finditer(text):
                findings.append(f"{name}: {what}: {match.group(0)[:40]}")
    assert scanned > 50
    assert not findings, "\n".join(findings)
    tracked = {f.decode() for f in files}
    assert not {n for n in tracked if re.search(r"(^|/)(\.env|secrets/.+|alertmanager\.yml)$", n)}, \
        "a rendered config, .env or secrets file is tracked"


def test_secret_scanner_catches_what_it_should():
    """The patterns above are not vacuous."""
    # Built from pieces so this file itself stays clean for the scan above.
    samples = ["123456789:" + "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_", "MicexPassportCert" + "=0123456789abcdefABCDEF",
               "Authorization: Bearer " + "abcdefghijklmnopqrstuvwxyz012345", "MOEX_PASSPORT_PASSWORD=hunter2hunter2",
               "  bot_token: 123:abcdefghijklmnop", "-----BEGIN RSA " + "PRIVATE KEY-----"]
    for sample in samples:
        assert any(p.search(sample) for p in SECRET_SHAPES.values()), sample
    for harmless in ["bot_token: ${bot_token}", "MOEX_PASSPORT_PASSWORD=", "password: '<from env>'",
                     'ALERT_BOT_TOKEN = "1000001:sandbox-alertmanager"']:
        assert not any(p.search(harmless) for p in SECRET_SHAPES.values()), harmless


@pytest.mark.parametrize("auth", ["passport", "apikey"])
def test_exporter_logs_metrics_and_errors_never_carry_credentials(tmp_path, caplog, auth):
    env = {"MOEX_PASSPORT_LOGIN": LOGIN, "MOEX_PASSPORT_PASSWORD": PASSWORD, "MOEX_API_KEY": API_KEY}
    caplog.set_level(logging.DEBUG)
    sim = Simulation(tmp_path, at(10, 20), auth=auth, environ=env)
    sim.iss.passport_login, sim.iss.passport_password, sim.iss.api_key = LOGIN, PASSWORD, API_KEY
    try:
        sim.run_until(at(10, 30))
        sim.iss.faults.set("expire_auth")                        # re-login path
        sim.iss.faults.set("http_error", market="eq", dataset="tradestats", status=401, count=2)
        sim.run_until(at(10, 40))
        secrets = [PASSWORD, API_KEY]
        cookie = sim.app.client._cert
        if auth == "passport":
            assert cookie, "no passport cookie was issued"
            secrets.append(cookie)
        errors = [state.last_error or "" for state in sim.app.store.snapshot.pairs.values()]
        assert any("401" in e for e in errors) or any("auth" in r.getMessage() for r in caplog.records)
        texts = {"log": "\n".join(r.getMessage() for r in caplog.records), "metrics": sim.exposition(),
                 "errors": "\n".join(errors), "config repr": repr(sim.config)}
        for where, text in texts.items():
            assert not find_secrets(text, secrets), f"secret in {where}"
        assert str(IssError("auth", "x")) == "auth: x"
    finally:
        sim.close()


def test_default_listen_addresses_are_loopback(tmp_path):
    assert WebConfig.listen_address.startswith("127.0.0.1:")
    config = tmp_path / "config.yml"
    config.write_text("iss: {auth: none}\ncalendar: {file: '" + str(REPO / "calendar.yml") + "'}\n")
    assert load_config(str(config), environ={}).web.listen_address.startswith("127.0.0.1:")
    assert build_parser().parse_args([]).listen_address is None     # no flag: the config's loopback default
    for module in ("sandbox.iss", "sandbox.telegram"):
        source = (REPO / (module.replace(".", "/") + ".py")).read_text()
        default = re.search(r'add_argument\("--listen".*?default=([^,)]+)', source, re.S).group(1)
        assert "127.0.0.1" in default, (module, default)
