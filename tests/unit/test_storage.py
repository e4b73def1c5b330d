"""exporter/storage.py: the persisted state (--storage.path) — codec, file, writer, wiring."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest
import yaml

from exporter import slo, storage
from exporter.clock import MSK, ManualClock
from exporter.state import Histogram, PairState, ProbeChoice, Snapshot, StateStore
from exporter.storage import FILE_NAME, PersistentStore, StateStorage, StorageCollector, decode, encode

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 25, 11, 0, tzinfo=MSK)
PAIRS = (("eq", "tradestats"), ("eq", "obstats"), ("fo", "futoi"))
BASE_URL = "http://127.0.0.1:9"


def _rich_state(market: str = "eq", endpoint: str = "obstats") -> PairState:
    """A state with a value in every kind of field the codec must carry."""
    buckets = [NOW.replace(hour=10, minute=5 * i).timestamp() for i in range(1, 8)]
    return replace(
        PairState(market=market, endpoint=endpoint),
        day=NOW.date(), probe="SBER", rows_seen=17, last_row_key=("2026-11-25", "10:35:00"),
        seen_buckets=frozenset(buckets),
        rejected=MappingProxyType({"bad_time": 2}),
        rejected_keys=frozenset({(("secid", "'SBER'"), ("tradetime", "None")), (("secid", "'SBER'"),)}),
        last_tradetime_ts=buckets[-1], last_systime_ts=buckets[-1] + 31.5, publish_delay_seconds=31.5,
        secids_interval="10:35:00", secids=250, secids_day=NOW.date(), prev_day=date(2026, 11, 24),
        prev_day_max=260, prev_day_counts=MappingProxyType({"10:05:00": 255, "10:10:00": 260}),
        observed_counts=MappingProxyType({"2026-11-25": MappingProxyType({"10:05:00": 250, "10:10:00": 251})}),
        arrivals=MappingProxyType({b: b + 30.25 for b in buckets}), judged=frozenset(buckets[:5]),
        buckets_total=MappingProxyType({"on_time": 4, "late": 1, "missing": 0}),
        bucket_delay=Histogram.empty(slo.DELAY_BUCKETS).observe(30.25).observe(150.0),
        polled=True, up=True, polls_total=9, errors=MappingProxyType({"timeout": 1}),
        last_success_ts=NOW.timestamp(), last_error="boom", next_poll_ts=NOW.timestamp() + 60)


def _snapshot() -> Snapshot:
    pairs = {pair: PairState(market=pair[0], endpoint=pair[1]) for pair in PAIRS}
    pairs[("eq", "obstats")] = _rich_state()
    probes = {"fo": ProbeChoice(NOW.date(), "SiZ6", "today", NOW.timestamp() - 5)}
    return Snapshot(pairs=MappingProxyType(pairs), probes=MappingProxyType(probes), taken_ts=NOW.timestamp())


def _storage(tmp_path: Path, clock=None, **kwargs) -> StateStorage:
    return StateStorage(tmp_path / "data", clock or ManualClock(NOW), BASE_URL, **kwargs)


def _warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "exporter.storage" and r.levelno >= logging.WARNING]


def test_round_trip_keeps_every_field_but_the_process_health(tmp_path):
    snapshot = _snapshot()
    disk = _storage(tmp_path, since=lambda: NOW.timestamp() - 3600)
    assert disk.write(snapshot)
    loaded = disk.load(PAIRS)
    assert loaded is not None and loaded.pairs == 3
    assert loaded.since_ts == NOW.timestamp() - 3600       # same day: the SLO goes on judging
    state = loaded.snapshot.pairs[("eq", "obstats")]
    expected = _rich_state()
    fresh = PairState(market="eq", endpoint="obstats")
    for name in storage.VOLATILE:
        assert getattr(state, name) == getattr(fresh, name), name
        expected = replace(expected, **{name: getattr(fresh, name)})
    assert state == expected
    assert isinstance(state.arrivals, MappingProxyType) and isinstance(state.seen_buckets, frozenset)
    assert isinstance(state.observed_counts["2026-11-25"], MappingProxyType)
    assert loaded.snapshot.probes == snapshot.probes


def test_volatile_and_urgent_names_are_state_fields():
    """A renamed health field would otherwise be persisted (a restarted exporter would look
    polled and up before its first poll)."""
    from dataclasses import fields

    names = {f.name for f in fields(PairState)}
    assert storage.VOLATILE <= names and set(storage.URGENT) <= names


def test_codec_is_generic_and_strict():
    assert decode(encode({1.5: 2.0}), dict[float, float]) == {1.5: 2.0}
    assert decode(encode(frozenset({("a", 1)})), frozenset[tuple]) == frozenset({("a", 1)})
    assert decode(encode(date(2026, 1, 2)), date | None) == date(2026, 1, 2)
    assert decode(None, date | None) is None
    assert decode(3, float) == 3.0 and isinstance(decode(3, float), float)
    for obj, hint in ((True, int), ("x", float), (1, str), ([1], date), ({"a": 1}, frozenset[int]),
                      ("2026-13-01", date), ([1, 2, 3], tuple[int, int])):
        with pytest.raises(storage.CodecError):
            decode(obj, hint)
    with pytest.raises(storage.CodecError):
        decode({"market": "eq"}, PairState)          # endpoint has no default
    with pytest.raises(storage.CodecError):
        encode(object())


def test_histogram_of_other_bounds_goes_back_to_its_default(tmp_path):
    disk = _storage(tmp_path)
    disk.write(_snapshot())
    doc = json.loads(disk.path.read_text())
    for _pair, state in doc["snapshot"]["pairs"]:
        state["bucket_delay"]["bounds"] = [1.0, 2.0]
        state["bucket_delay"]["counts"] = [1, 1]
    disk.path.write_text(json.dumps(doc))
    state = disk.load(PAIRS).snapshot.pairs[("eq", "obstats")]
    assert state.bucket_delay == Histogram.empty(slo.DELAY_BUCKETS)
    assert dict(state.buckets_total) == {"on_time": 4, "late": 1, "missing": 0}


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path, monkeypatch):
    disk = _storage(tmp_path)
    assert disk.write(_snapshot())
    before = disk.path.read_bytes()
    assert oct(disk.path.stat().st_mode & 0o777) == oct(0o600)

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.os, "replace", crash)
    other = replace(_snapshot(), taken_ts=1.0)
    assert not disk.write(other)
    assert disk.path.read_bytes() == before            # the old state is intact
    assert sorted(p.name for p in disk.directory.iterdir()) == [FILE_NAME]
    assert disk.failures == 1 and disk.writes == 1


@pytest.mark.parametrize("content", [
    b"", b"{", b"\xff\xfe not utf-8", b"[1, 2, 3]", b"null", b"[" * 100_000,
    b'{"format": "algopack-exporter-state", "version": 1}',
    "truncated",
    "bad-types",
    "bad-histogram",
])
def test_corrupt_truncated_or_empty_file_is_ignored_with_one_warning(tmp_path, caplog, content):
    disk = _storage(tmp_path)
    disk.write(_snapshot())
    good = disk.path.read_bytes()
    if content == "truncated":
        content = good[: len(good) // 2]
    elif content == "bad-types":
        doc = json.loads(good)
        doc["snapshot"]["pairs"][0][1]["rows_seen"] = "many"
        content = json.dumps(doc).encode()
    elif content == "bad-histogram":
        doc = json.loads(good)
        doc["snapshot"]["pairs"][0][1]["bucket_delay"]["counts"] = "x"
        content = json.dumps(doc).encode()
    disk.path.write_bytes(content)
    caplog.set_level(logging.INFO, logger="exporter.storage")
    assert disk.load(PAIRS) is None
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and warnings[0].exc_info is None, [r.getMessage() for r in warnings]
    assert "state ignored" in warnings[0].getMessage() and "\n" not in warnings[0].getMessage()
    assert not disk.loaded


@pytest.mark.parametrize("change", ["format", "version", "upstream", "pairs", "future"])
def test_foreign_state_is_ignored_with_one_warning(tmp_path, caplog, change):
    disk = _storage(tmp_path)
    disk.write(_snapshot())
    doc = json.loads(disk.path.read_text())
    pairs = PAIRS
    if change == "format":
        doc["format"] = "prometheus-snapshot"
    elif change == "version":
        doc["version"] = storage.VERSION + 1
    elif change == "upstream":
        doc["upstream"] = storage.fingerprint("https://apim.moex.com")
    elif change == "pairs":
        pairs = (("fx", "hi2"),)
    else:
        doc["saved_ts"] = NOW.timestamp() + 3600
    disk.path.write_text(json.dumps(doc))
    caplog.set_level(logging.INFO, logger="exporter.storage")
    assert disk.load(pairs) is None
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "reason=foreign" in warnings[0].getMessage()


def test_missing_file_is_no_warning_and_other_pairs_start_fresh(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="exporter.storage")
    disk = _storage(tmp_path)
    assert disk.load(PAIRS) is None and not _warnings(caplog)
    disk.write(_snapshot())
    loaded = disk.load((("eq", "obstats"), ("fx", "tradestats")))   # a config with another market
    assert set(loaded.snapshot.pairs) == {("eq", "obstats"), ("fx", "tradestats")}
    assert loaded.snapshot.pairs[("fx", "tradestats")] == PairState(market="fx", endpoint="tradestats")
    assert loaded.snapshot.pairs[("eq", "obstats")].rows_seen == 17


def test_state_of_an_earlier_day_is_kept_but_the_slo_starts_anew(tmp_path):
    clock = ManualClock(NOW)
    disk = _storage(tmp_path, clock, since=lambda: NOW.timestamp() - 600)
    disk.write(_snapshot())
    clock.set(NOW + timedelta(days=1, hours=-1))
    loaded = disk.load(PAIRS)
    assert loaded.since_ts is None                    # only buckets after this start are judged
    state = loaded.snapshot.pairs[("eq", "obstats")]
    assert state.day == NOW.date() and state.prev_day_counts["10:10:00"] == 260   # the poller rolls the day


def test_unwritable_directory_warns_once_counts_and_recovers(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    disk = StateStorage(blocker / "data", ManualClock(NOW), BASE_URL)
    caplog.set_level(logging.INFO, logger="exporter.storage")
    assert not disk.write(_snapshot()) and not disk.write(_snapshot())
    assert disk.failures == 2 and len(_warnings(caplog)) == 1
    metrics = {m.name: m.samples[0].value for m in StorageCollector(disk).collect()}
    assert metrics["algopack_state_persist_failures"] == 2.0 and metrics["algopack_state_loaded"] == 0.0
    blocker.unlink()
    assert disk.write(_snapshot()) and disk.writes == 1
    assert any("saved again" in r.getMessage() for r in caplog.records)


def test_no_secret_in_the_state_file(tmp_path):
    secret = "Pa55-word-in-url"
    disk = StateStorage(tmp_path / "data", ManualClock(NOW), f"https://robot:{secret}@iss.example")
    disk.write(_snapshot())
    text = disk.path.read_text()
    assert secret not in text and "robot" not in text and "boom" not in text   # last_error is not kept


def test_writer_debounces_and_writes_once_more_at_stop(tmp_path):
    disk = _storage(tmp_path, min_interval=0.5)
    store = PersistentStore(PAIRS, disk)
    disk.start(store)
    started = time.monotonic()
    for rows in range(1, 200):
        store.put(replace(store.get(("eq", "tradestats")), rows_seen=rows))
        time.sleep(0.005)
    elapsed = time.monotonic() - started
    assert disk.writes <= elapsed / 0.5 + 2, (disk.writes, elapsed)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and json.loads(disk.path.read_text())["snapshot"]["pairs"][0][1]["rows_seen"] != 199:
        time.sleep(0.05)
    store.put(replace(store.get(("eq", "tradestats")), rows_seen=500))
    disk.stop()
    assert disk.load(PAIRS).snapshot.pairs[("eq", "tradestats")].rows_seen == 500
    assert not any(t.name == "state-writer" and t.is_alive() for t in threading.enumerate())


def test_volatile_changes_write_nothing_and_verdicts_are_written_before_they_are_published(tmp_path):
    disk = _storage(tmp_path, min_interval=3600)
    store = PersistentStore(PAIRS, disk)
    pair = ("eq", "tradestats")
    store.put(replace(store.get(pair), polls_total=5, next_poll_ts=1.0))
    assert not disk._dirty.is_set() and not disk.path.exists()

    seen = []
    real_write = disk.write

    def spy(snapshot=None):
        seen.append(store.get(pair).buckets_total["late"])   # what a scrape could see while writing
        return real_write(snapshot)

    disk.write = spy
    store.put(store.get(pair).with_verdicts([slo.Verdict(NOW.timestamp(), "late", 150.0)]))
    assert seen == [0]                                        # written first, then published
    assert store.get(pair).buckets_total["late"] == 1
    assert disk.load(PAIRS).snapshot.pairs[pair].buckets_total["late"] == 1


def test_app_restores_before_the_first_poll_and_continues_the_slo(tmp_path):
    from exporter.app import ExporterApp
    from exporter.config import load_config

    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump({"iss": {"base_url": BASE_URL, "auth": "none"},
                                   "calendar": {"file": str(REPO / "calendar.yml")}}))
    config = load_config(str(cfg), environ={})
    clock = ManualClock(NOW)
    first = ExporterApp(config, clock, storage_path=str(tmp_path / "data"))
    assert isinstance(first.store, PersistentStore) and not first.storage.loaded
    first.store.put(_rich_state())
    first.storage.write()
    clock.set(NOW + timedelta(minutes=30))
    second = ExporterApp(config, clock, storage_path=str(tmp_path / "data"))
    assert second.storage.loaded
    assert second.poller.started_ts == NOW.timestamp()        # judging goes on from the first start
    state = second.store.get(("eq", "obstats"))
    assert state.judged == _rich_state().judged and not state.polled
    names = {m.name for m in second.registry.collect()}
    assert {"algopack_state_loaded", "algopack_state_persist_failures"} <= names
    plain = ExporterApp(config, clock)
    assert type(plain.store) is StateStore and plain.storage is None


def test_cli_storage_path_default_is_data_beside_the_config(tmp_path):
    from exporter.cli import build_parser, storage_path

    cfg = tmp_path / "etc" / "config.yml"
    args = build_parser().parse_args([f"--config.file={cfg}"])
    assert storage_path(args) == str(tmp_path / "etc" / "data")
    assert storage_path(build_parser().parse_args([f"--config.file={cfg}", "--storage.path=/var/x"])) == "/var/x"
    assert storage_path(build_parser().parse_args(["--storage.path="])) is None
    assert storage_path(build_parser().parse_args([])) == os.path.join(os.getcwd(), "data")


def test_compose_keeps_the_state_on_a_named_volume():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    exporter = compose["services"]["exporter"]
    flag = next(a for a in exporter["command"] if a.startswith("--storage.path="))
    target = flag.split("=", 1)[1]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in exporter["volumes"]}
    assert mounts[target] in compose["volumes"] and not exporter["volumes"][0].endswith(f"{target}:ro")
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert target in dockerfile and f"--storage.path={target}" in dockerfile
