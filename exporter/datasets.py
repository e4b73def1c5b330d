"""The dataset registry: everything the exporter knows about one ISS dataset, in one spec.

Poller, collector, rhythm, config and the sandbox ISS read these specs; no other exporter
module names a dataset (config's default endpoint lists aside). A dataset is called
"endpoint" in the metric labels (the contract) and "dataset" in ISS paths and the sandbox.

A spec says:
- where its rows are: `path` (one instrument, `from`/`till`) and `day_path` (all
  instruments of a day, `date=`), the answer's `block`, the `time_columns` a poll needs;
- how it pages (iss-api.md §11): `paging="cursor"` (SuperCandles: rows ascending, read from
  `start = rows seen - 1`, more pages announced by `<block>.cursor`) or `paging="single"`
  (FUTOI: no cursor, `start` ignored, one request, `newest_first`);
- its `rhythm`: "intraday" (a 5-minute bucket at a time) or "daily" (once a day, by a
  calendar deadline);
- which `checks` apply: `holes` (missing buckets, runs, the feed SLO), `lag`, `secids`
  (distinct instruments per interval vs the previous trading day), `presence` (a daily
  publication by its deadline);
- the metric `families` it feeds and the `markets` it exists on;
- its `kind`, exposed as `algopack_dataset_info{endpoint,kind}` so the alert rules join on
  the kind instead of matching names.

Adding a dataset: one `Dataset(...)` below (or `register()` at run time, as the tests do),
plus its name in the config's default endpoint lists if it should be on by default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

ALGOPACK_DAY = "/iss/datashop/algopack/{market}/{dataset}.json"
ALGOPACK_SECID = "/iss/datashop/algopack/{market}/{dataset}/{secid}.json"
TIME_COLUMNS = ("tradedate", "tradetime", "systime")

# Kinds (the `kind` label of algopack_dataset_info): what the alert rules judge.
INTRADAY = "intraday"   # holes and lag
LAG_ONLY = "lag_only"   # intraday, alerted on by lag only (holes counted, not alerted)
DAILY = "daily"         # one publication a day, judged by presence after a deadline
KINDS = (INTRADAY, LAG_ONLY, DAILY)

CHECKS = ("holes", "lag", "secids", "presence")

# Families every pair feeds, and those of each check (the collector's families).
COMMON_FAMILIES = ("algopack_up", "algopack_polls_total", "algopack_poll_errors_total",
                   "algopack_poll_duration_seconds", "algopack_last_poll_success_timestamp_seconds",
                   "algopack_probe_info", "algopack_next_poll_timestamp_seconds", "algopack_dataset_info")
ROW_FAMILIES = ("algopack_last_tradetime_timestamp_seconds", "algopack_last_systime_timestamp_seconds",
                "algopack_publish_delay_seconds", "algopack_rows_rejected_total")
CHECK_FAMILIES = {
    "lag": ("algopack_lag_seconds",),
    "holes": ("algopack_missing_intervals", "algopack_missing_intervals_recent", "algopack_missing_run_intervals",
              "algopack_missing_interval_timestamp_seconds", "algopack_buckets_total",
              "algopack_bucket_publish_delay_seconds", "algopack_slo_target_ratio"),
    # per market, named after the dataset (the collector builds the names the same way)
    "secids": ("algopack_{name}_secids", "algopack_{name}_secids_prev_day_max",
               "algopack_{name}_secids_prev_day_same_interval"),
    "presence": ("algopack_{name}_present", "algopack_{name}_expected"),
}


@dataclass(frozen=True)
class Dataset:
    name: str                                   # the `endpoint` label, the ISS `{dataset}`
    kind: str = INTRADAY
    markets: tuple[str, ...] = ("eq", "fx", "fo")
    path: str = ALGOPACK_SECID                  # one instrument: {market} {dataset} {secid}; from/till
    day_path: str = ALGOPACK_DAY                # all instruments of one day: date=D
    block: str = "data"
    time_columns: tuple[str, ...] = TIME_COLUMNS  # required in a poll's answer
    ask_columns: tuple[str, ...] | None = None  # `<block>.columns` to ask for (None: all)
    paging: str = "cursor"                      # "cursor" (start + <block>.cursor) | "single" (one request)
    newest_first: bool = False                  # row order of an answer
    rhythm: str = "intraday"                    # "intraday" | "daily"
    checks: frozenset[str] = frozenset({"holes", "lag"})
    probe_setting: str = "probe"                # the market config field naming the probe instrument
    secid_column: str = "secid"                 # the instrument column of a row (FUTOI: ticker)
    # daily datasets: the calendar's publication deadline of (market, day), or None
    deadline: Callable[[Any, str, date], datetime | None] | None = None
    families: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"dataset {self.name}: kind {self.kind!r} is not one of {KINDS}")
        unknown = set(self.checks) - set(CHECKS)
        if unknown:
            raise ValueError(f"dataset {self.name}: unknown checks {sorted(unknown)}")
        if self.paging not in ("cursor", "single"):
            raise ValueError(f"dataset {self.name}: paging {self.paging!r}")
        if self.rhythm == "daily" and self.deadline is None:
            raise ValueError(f"dataset {self.name}: a daily dataset needs a deadline")
        if not self.families:
            names = [*COMMON_FAMILIES]
            if self.rhythm == "intraday":
                names += ROW_FAMILIES
            for check in CHECKS:
                if check in self.checks:
                    names += [f.format(name=self.name) for f in CHECK_FAMILIES[check]]
            object.__setattr__(self, "families", tuple(names))

    @property
    def intraday(self) -> bool:
        return self.rhythm == "intraday"

    def judges(self, check: str) -> bool:
        return check in self.checks

    def route(self, market: str, secid: str) -> str:
        """The one-instrument route (query `from`/`till`)."""
        return self.path.format(market=market, dataset=self.name, secid=secid)

    def day_route(self, market: str) -> str:
        """The all-instruments route of one day (query `date`)."""
        return self.day_path.format(market=market, dataset=self.name)


def _hi2_deadline(calendar, market: str, day: date) -> datetime | None:
    return calendar.hi2_deadline(market, day)


REGISTRY: dict[str, Dataset] = {spec.name: spec for spec in (
    # SuperCandles (iss-api.md §2, §11): ascending rows, paged by start with data.cursor. A
    # poll asks only for the time columns (`data.columns`, general ISS §3): a 2-row answer is
    # ~0.3 KB instead of ~1 KB with every column of the dataset.
    Dataset("tradestats", ask_columns=TIME_COLUMNS),
    # FO orderstats exists upstream only maybe (iss-api.md §2): allowed, off by default (config).
    Dataset("orderstats", ask_columns=TIME_COLUMNS),
    Dataset("obstats", checks=frozenset({"holes", "lag", "secids"}), ask_columns=TIME_COLUMNS),
    # HI2: once a day, looked for from shortly before the calendar's hi2_deadline until found.
    Dataset("hi2", kind=DAILY, rhythm="daily", checks=frozenset({"presence"}),
            time_columns=("tradedate", "secid"), deadline=_hi2_deadline),
    # FUTOI (§11): no cursor, `start` ignored, newest first; one request a poll with only the
    # time columns; per ticker (config `futoi_ticker`), fo only. Its holes are counted (and
    # its feed SLO), but kind lag_only: the hole alert leaves it to the lag alert.
    Dataset("futoi", kind=LAG_ONLY, markets=("fo",), block="futoi", paging="single", newest_first=True,
            path="/iss/analyticalproducts/futoi/securities/{secid}.json",
            day_path="/iss/analyticalproducts/futoi/securities.json",
            ask_columns=TIME_COLUMNS, probe_setting="futoi_ticker",
            secid_column="ticker"),
)}

# The dataset whose day of all instruments (column `val`) chooses an `auto` probe.
LIQUIDITY_DATASET = "tradestats"


def get(name: str) -> Dataset:
    return REGISTRY[name]


def names() -> tuple[str, ...]:
    """Every dataset, in the registry's (stable) order."""
    return tuple(REGISTRY)


def specs() -> tuple[Dataset, ...]:
    return tuple(REGISTRY.values())


def with_check(check: str, among: Iterable[str] | None = None) -> tuple[Dataset, ...]:
    chosen = REGISTRY.values() if among is None else (REGISTRY[n] for n in among)
    return tuple(spec for spec in chosen if spec.judges(check))


def register(spec: Dataset) -> Dataset:
    """Add (or replace) a dataset at run time; `unregister` removes it."""
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def liquidity() -> Dataset:
    return REGISTRY[LIQUIDITY_DATASET]
