"""docker-compose.yml, the image and every config the stack mounts.

No Docker engine here: the compose file is validated by Debian's docker-compose 1.29
(`config -q`), and the files it mounts are checked with the real tools the containers run
(promtool, amtool) or with our own loaders (exporter config, calendar).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sandbox.procs import REPO_ROOT
from tests.support import need_binary

COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
ENTRYPOINT = REPO_ROOT / "deploy" / "docker-entrypoint.sh"
LONG_RUNNING = ("exporter", "bot", "prometheus", "alertmanager", "grafana")

needs_compose = pytest.mark.needs_binary("docker-compose")


def _env_file(tmp_path: Path, **overrides: str) -> Path:
    """.env.example with the required values filled in (what an operator does first)."""
    lines = []
    for line in (REPO_ROOT / ".env.example").read_text().splitlines():
        key = line.split("=", 1)[0]
        if not line.startswith("#") and key in overrides:
            line = f"{key}={overrides.pop(key)}"
        lines.append(line)
    lines += [f"{k}={v}" for k, v in overrides.items()]
    path = tmp_path / "env"
    path.write_text("\n".join(lines) + "\n")
    return path


def _compose(env_file: Path, *args: str) -> subprocess.CompletedProcess:
    # A clean environment: the developer's shell (or a real .env) must not fill gaps.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(["docker-compose", "--env-file", str(env_file), "-f", str(COMPOSE), *args],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict:
    """The compose file as docker-compose resolves it (anchors, .env interpolation)."""
    need_binary("docker-compose")
    env_file = _env_file(tmp_path_factory.mktemp("env"), TELEGRAM_GROUP_CHATID="-1001234567890",
                         GRAFANA_ADMIN_PASSWORD="not-a-default")
    result = _compose(env_file, "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@needs_compose
def test_compose_config_validates(tmp_path):
    env_file = _env_file(tmp_path, TELEGRAM_GROUP_CHATID="-1001234567890", GRAFANA_ADMIN_PASSWORD="s3cret")
    result = _compose(env_file, "config", "-q")
    assert result.returncode == 0, result.stderr


@needs_compose
@pytest.mark.parametrize("missing", ["GRAFANA_ADMIN_PASSWORD", "TELEGRAM_GROUP_CHATID"])
def test_compose_refuses_to_run_without_required_settings(tmp_path, missing):
    """No default credentials: an unfilled .env.example is rejected, naming the variable."""
    values = {"TELEGRAM_GROUP_CHATID": "-1001", "GRAFANA_ADMIN_PASSWORD": "s3cret"}
    values[missing] = ""
    result = _compose(_env_file(tmp_path, **values), "config", "-q")
    assert result.returncode != 0
    assert missing in result.stderr


def test_services_and_images_pinned(resolved):
    services = resolved["services"]
    assert set(LONG_RUNNING) | {"init"} == set(services)
    images = {name: svc["image"] for name, svc in services.items()}
    for name in ("prometheus", "alertmanager", "grafana"):
        repo, _, tag = images[name].partition(":")
        assert repo in ("prom/prometheus", "prom/alertmanager", "grafana/grafana"), images[name]
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name} image not pinned to a version: {images[name]}"
    am_version = tuple(int(x) for x in images["alertmanager"].split(":v")[1].split("."))
    assert am_version >= (0, 27, 0), "bot_token_file needs Alertmanager >= 0.27"
    # exporter, bot and init share our one image, built from deploy/Dockerfile.
    assert len({images[n] for n in ("exporter", "bot", "init")}) == 1
    for name in ("exporter", "bot", "init"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert not images[name].endswith(":latest")


def test_ports_bound_to_loopback_only(resolved):
    published = 0
    for name, svc in resolved["services"].items():
        for port in svc.get("ports", []):
            text = port if isinstance(port, str) else f"{port.get('host_ip')}:{port.get('published')}"
            assert text.startswith("127.0.0.1:"), f"{name} publishes {port!r} beyond loopback"
            published += 1
    assert published == 4  # exporter, prometheus, alertmanager, grafana


def test_restart_and_healthchecks(resolved):
    services = resolved["services"]
    for name in LONG_RUNNING:
        assert services[name]["restart"] == "unless-stopped", name
    assert services["init"]["restart"] == "no"
    for name in ("prometheus", "alertmanager", "grafana"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD" and ("/-/ready" in test[-1] or "/api/health" in test[-1]), (name, test)
    # The exporter inherits the image's HEALTHCHECK (not disabled in compose).
    assert "healthcheck" not in services["exporter"]
    assert re.search(r"^HEALTHCHECK .*9877/-/healthy", DOCKERFILE.read_text(), re.M | re.S)


def _mounts(svc: dict) -> list[tuple[str, str, str]]:
    out = []
    for volume in svc.get("volumes", []):
        source, target, mode = (volume.split(":") + ["rw"])[:3]
        out.append((source, target, mode))
    return out


def test_volumes_configs_read_only_and_calendar_shared(resolved):
    services = resolved["services"]
    for name in ("prometheus", "grafana", "exporter", "bot"):
        for source, target, mode in _mounts(services[name]):
            if source.startswith("/"):  # a bind mount from the repository: configs
                assert mode == "ro", f"{name}: {source} -> {target} must be read-only"
                assert Path(source).exists(), f"{name} mounts a missing file {source}"
    calendar = {name: mode for name in ("exporter", "bot", "init")
                for source, target, mode in _mounts(services[name]) if source == "calendar"}
    assert calendar == {"exporter": "ro", "bot": "rw", "init": "rw"}
    assert ("prometheus-data", "/prometheus", "rw") in _mounts(services["prometheus"])
    command = " ".join(services["prometheus"]["command"])
    assert "--storage.tsdb.retention.time=90d" in command and "--storage.tsdb.path=/prometheus" in command
    assert {"prometheus-data", "alertmanager-data", "alertmanager-config", "grafana-data", "calendar"} \
        <= set(resolved["volumes"])
    # Alertmanager reads the config `init` renders, at the same path in both containers.
    am_config = next(a for a in services["alertmanager"]["command"] if a.startswith("--config.file="))
    assert am_config == "--config.file=/alertmanager-config/alertmanager.yml"
    assert ("alertmanager-config", "/alertmanager-config", "ro") in _mounts(services["alertmanager"])
    assert ("alertmanager-config", "/alertmanager-config", "rw") in _mounts(services["init"])
    for name in ("exporter", "bot", "alertmanager"):
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"


def test_secrets_are_files_outside_git_and_grafana_has_no_default_password(resolved):
    for name, secret in resolved["secrets"].items():
        assert Path(secret["file"]).parent == REPO_ROOT / "secrets", name
    gitignore = (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert "/secrets/" in gitignore and ".env" in gitignore
    dockerignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert "secrets" in dockerignore and ".env" in dockerignore
    grafana = resolved["services"]["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == "not-a-default"
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    # Every secret a service gets arrives as NAME_FILE -> /run/secrets/<secret>.
    for name in ("exporter", "bot", "init"):
        svc = resolved["services"][name]
        granted = {s["source"] if isinstance(s, dict) else s for s in svc["secrets"]}
        for key, value in svc["environment"].items():
            if key.endswith("_FILE"):
                assert value.startswith("/run/secrets/") and value.rsplit("/", 1)[1] in granted, (name, key)


def test_committed_deploy_files_carry_no_secrets():
    token = re.compile(r"\b\d{6,}:[A-Za-z0-9_-]{30,}\b")  # a real Bot API token shape
    for path in (COMPOSE, DOCKERFILE, REPO_ROOT / ".env.example", REPO_ROOT / "deploy" / "config.compose.yml"):
        text = path.read_text()
        assert not token.search(text), path
        for line in text.splitlines():
            if re.match(r"^(TELEGRAM_BOT_TOKEN\w*|MOEX_API_KEY|MOEX_PASSPORT_PASSWORD|GRAFANA_ADMIN_PASSWORD)=\S", line):
                pytest.fail(f"{path.name} sets a secret: {line.split('=')[0]}")


# ------------------------------------------------------------ what the stack mounts


@pytest.mark.needs_binary("promtool")
def test_prometheus_config_and_rules_pass_promtool(resolved):
    """The directory compose mounts at /etc/prometheus: config, and the rules it loads."""
    source = next(s for s, t, _ in _mounts(resolved["services"]["prometheus"]) if t == "/etc/prometheus")
    config = Path(source) / "prometheus.yml"
    result = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True,
                            cwd=source, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "rules" in result.stdout  # rule files were found and checked
    parsed = yaml.safe_load(config.read_text())
    targets = {t for job in parsed["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {"exporter:9877"}  # the compose service name and port
    am = parsed["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"]


@pytest.mark.needs_binary("amtool")
def test_rendered_alertmanager_config_passes_amtool(tmp_path, resolved):
    """Render exactly as the compose `init` service does (its environment, a token from a
    secret file through the entrypoint), then check it with amtool."""
    init = resolved["services"]["init"]
    secret = tmp_path / "telegram_bot_token"
    secret.write_text("123456:AAAA-sandbox-token\n")
    env = {k: str(v) for k, v in init["environment"].items()}
    env["TELEGRAM_BOT_TOKEN_FILE"] = str(secret)
    env["PATH"] = os.environ["PATH"]
    env["PYTHONPATH"] = str(REPO_ROOT)
    out = tmp_path / "alertmanager-config"
    script = init["command"][-1].replace("/alertmanager-config", str(out))
    script = script.replace("/data/calendar.yml", str(tmp_path / "calendar.yml"))
    script = script.replace("/app/calendar.yml", str(REPO_ROOT / "calendar.yml"))
    script = script.replace("python ", f"{sys.executable} ")
    result = subprocess.run(["sh", str(ENTRYPOINT), "sh", "-c", script], env=env, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    config = out / "alertmanager.yml"
    check = subprocess.run(["amtool", "check-config", str(config)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Found:" in check.stdout and " - 1 templates" in check.stdout, check.stdout
    assert "123456:AAAA-sandbox-token" in config.read_text()
    # Readable by Alertmanager's own user (nobody) in the other container.
    assert all(p.stat().st_mode & 0o004 for p in out.rglob("*") if p.is_file())
    # The calendar volume was seeded from the image's calendar.yml.
    assert (tmp_path / "calendar.yml").read_text() == (REPO_ROOT / "calendar.yml").read_text()


def test_compose_app_config_and_seed_calendar_load(resolved):
    """deploy/config.compose.yml and the seeded calendar pass our own loaders, with the
    environment compose gives the exporter (secrets as if read from their files)."""
    from exporter.calendar import load_calendar
    from exporter.config import load_config

    env = {k: str(v) for k, v in resolved["services"]["exporter"]["environment"].items() if not k.endswith("_FILE")}
    env["MOEX_API_KEY"] = "sandbox-key"
    config = load_config(REPO_ROOT / "deploy" / "config.compose.yml", env)
    assert str(config.calendar.file) == "/data/calendar.yml"
    assert config.iss.auth == "apikey"
    load_calendar(str(REPO_ROOT / "calendar.yml"))


def test_grafana_provisioning_mounted_where_it_points(resolved):
    mounts = {t: s for s, t, _ in _mounts(resolved["services"]["grafana"])}
    provider = yaml.safe_load((Path(mounts["/etc/grafana/provisioning"]) / "dashboards" / "algopack.yml").read_text())
    assert provider["providers"][0]["options"]["path"] in mounts
    assert list(Path(mounts["/var/lib/grafana/dashboards"]).glob("*.json"))
    datasource = yaml.safe_load((Path(mounts["/etc/grafana/provisioning"]) / "datasources" / "prometheus.yml")
                                .read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


# ------------------------------------------------------------ image


def test_dockerfile_is_slim_non_root_and_copies_what_exists():
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    assert bases and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", bases[0])
    assert re.search(r"^USER app$", text, re.M)
    assert "useradd" in text and "--uid 10001" in text
    copied = re.findall(r"^COPY --chown=\S+ (.+) \S+$", text, re.M)
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for sources in copied:
        for source in sources.split():
            assert (REPO_ROOT / source).exists(), f"Dockerfile copies missing {source}"
            assert source.rstrip("/") not in ignored, f".dockerignore excludes {source}"
    # The modules compose runs are in the image.
    for module in ("exporter", "bot", "deploy"):
        assert f"{module}/" in " ".join(copied)
    # Dependencies come from pyproject's pinned list.
    assert "tomllib" in text and "requirements.txt" in text


def test_entrypoint_turns_file_secrets_into_variables(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("value-from-file\n")
    empty = tmp_path / "empty"
    empty.write_text("")
    env = {"PATH": os.environ["PATH"], "A_FILE": str(secret), "B_FILE": str(empty),
           "C": "kept", "C_FILE": str(secret), "D_FILE": str(tmp_path / "missing")}
    result = subprocess.run(["sh", str(ENTRYPOINT), "env"], env=env, capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert seen["A"] == "value-from-file"   # trailing newline stripped
    assert "B" not in seen and "D" not in seen  # empty / missing files are ignored
    assert seen["C"] == "kept"  # an explicit variable wins
    assert "value-from-file" not in result.stderr


# ------------------------------------------------------------ make run: .env and secrets/


def test_env_file_parsing_and_layering(tmp_path):
    from deploy.run import build_environment, parse_env_file

    env_file = tmp_path / ".env"
    env_file.write_text("# comment\n\nexport A=1\nB='two words'\nC=\"x # not a comment\"\nD=3 # comment\n"
                        "E=\nMOEX_API_KEY=\n")
    assert parse_env_file(env_file) == {"A": "1", "B": "two words", "C": "x # not a comment", "D": "3",
                                        "E": "", "MOEX_API_KEY": ""}
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "moex_api_key").write_text("from-file\n")
    (secrets / "telegram_bot_token").write_text("")  # empty: ignored
    env = build_environment({"A": "from-shell", "PATH": "/bin"}, env_file, secrets)
    assert env["A"] == "from-shell"            # the shell wins over .env
    assert env["MOEX_API_KEY"] == "from-file"  # an empty .env value does not hide the secret file
    assert "TELEGRAM_BOT_TOKEN" not in env
    bad = tmp_path / "bad.env"
    bad.write_text("just words\n")
    with pytest.raises(ValueError, match="bad.env:1"):
        parse_env_file(bad)


def test_env_example_parses_and_names_only_settings():
    from deploy.run import parse_env_file

    values = parse_env_file(REPO_ROOT / ".env.example")
    assert {"TELEGRAM_GROUP_CHATID", "GRAFANA_ADMIN_PASSWORD", "GRAFANA_URL"} <= set(values)
    assert values["GRAFANA_ADMIN_PASSWORD"] == ""  # no default password


def test_alertmanager_entrypoint_redacts_telegram_tokens(tmp_path):
    """Alertmanager logs the Bot API URL of a failed delivery; the compose entrypoint must
    strip the token and still pass every argument through to Alertmanager."""
    fake = tmp_path / "alertmanager"
    fake.write_text('#!/bin/sh\necho "err=\\"Post http://x/bot123456:AAbb-cc_DD/sendMessage: EOF\\" args=$*"\n')
    fake.chmod(0o755)
    result = subprocess.run(["sh", str(REPO_ROOT / "deploy" / "alertmanager-entrypoint.sh"), "--config.file=a.yml",
                             "--cluster.listen-address="],
                            env={"ALERTMANAGER_BIN": str(fake), "TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "bot<redacted>/sendMessage" in out and "AAbb-cc_DD" not in out
    assert "args=--config.file=a.yml --cluster.listen-address=" in out
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["alertmanager"]["entrypoint"][-1].endswith("alertmanager-entrypoint.sh")


# ---------------------------------------------------------------------------- HA pair (deploy/ha)

HA_OVERRIDE = REPO_ROOT / "deploy" / "ha" / "docker-compose.ha.yml"
HA_SETTINGS = {"TELEGRAM_GROUP_CHATID": "-1001234567890", "GRAFANA_ADMIN_PASSWORD": "s3cret",
               "HA_REPLICA": "b", "HA_SELF_ADDRESS": "10.0.0.12", "HA_PEER_ADDRESS": "10.0.0.11",
               "ALERTMANAGER_HEARTBEAT_URL": "https://hc-ping.com/uuid-of-the-check"}


@needs_compose
def test_ha_override_validates_and_wires_the_pair(tmp_path):
    env_file = _env_file(tmp_path, **HA_SETTINGS)
    assert _compose(env_file, "-f", str(HA_OVERRIDE), "config", "-q").returncode == 0
    result = _compose(env_file, "-f", str(HA_OVERRIDE), "config")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    am = services["alertmanager"]["command"]
    assert {"--cluster.listen-address=0.0.0.0:9094", "--cluster.advertise-address=10.0.0.12:9094",
            "--cluster.peer=10.0.0.11:9094"} <= set(am)
    assert "--cluster.listen-address=" not in am
    prom = services["prometheus"]
    assert "--config.file=/etc/prometheus/ha/prometheus.yml" in prom["command"]
    assert "--enable-feature=expand-external-labels" in prom["command"]
    assert prom["environment"]["HA_REPLICA"] == "b"
    bot_env = services["bot"]["environment"]
    assert bot_env["PROMETHEUS_URL"] == "http://prometheus:9090,http://10.0.0.11:9090"
    assert bot_env["ALERTMANAGER_URL"] == "http://alertmanager:9093,http://10.0.0.11:9093"
    assert services["init"]["environment"]["ALERTMANAGER_HEARTBEAT_URL"] == HA_SETTINGS["ALERTMANAGER_HEARTBEAT_URL"]
    published = {str(p.get("published")) + "/" + p.get("protocol", "tcp") + "@" + str(p.get("host_ip"))
                 if isinstance(p, dict) else p for p in services["alertmanager"]["ports"]}
    assert any("9094" in p and "udp" in p for p in published), published
    # Without the addresses compose refuses, naming the variable.
    missing = _compose(_env_file(tmp_path, **{**HA_SETTINGS, "HA_SELF_ADDRESS": ""}),
                       "-f", str(HA_OVERRIDE), "config", "-q")
    assert missing.returncode != 0 and "HA_SELF_ADDRESS" in missing.stderr


@pytest.mark.needs_binary("promtool")
def test_ha_prometheus_config_passes_promtool_and_drops_the_replica_from_alerts():
    result = subprocess.run(["promtool", "check", "config", str(REPO_ROOT / "deploy" / "ha" / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((REPO_ROOT / "deploy" / "ha" / "prometheus.yml").read_text())
    assert config["global"]["external_labels"] == {"replica": "${HA_REPLICA}"}
    assert config["alerting"]["alert_relabel_configs"] == [{"action": "labeldrop", "regex": "replica"}]
    assert config["scrape_configs"][0]["relabel_configs"] == [{"target_label": "instance",
                                                               "replacement": "algopack-exporter"}]
    for example in ("exporter.yml.example", "alertmanagers.yml.example"):
        assert yaml.safe_load((REPO_ROOT / "deploy" / "ha" / example).read_text())[0]["targets"]
