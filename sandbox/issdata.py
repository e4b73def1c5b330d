"""Deterministic ALGOPACK data for the sandbox ISS.

A day of one (market, dataset) is a `DayFrame`: the calendar's buckets in time order,
each with its rows (sorted by secid) and three seed-derived uniforms that decide its
publish delay. Frames are generated lazily (numpy, vectorised per bucket) and cached;
serving a request only decides which buckets are published at "now" and slices rows.

Nothing here knows about HTTP or fault knobs: `sandbox.faults` turns a bucket's base
publish moment into the effective one.
"""

from __future__ import annotations

import hashlib
import string
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from exporter import datasets as registry

MARKETS = ("eq", "fx", "fo")
DATASETS = ("tradestats", "orderstats", "obstats", "hi2")  # the algopack ones with realistic columns below
MSK = ZoneInfo("Europe/Moscow")

_PRICE = ["pr_open", "pr_high", "pr_low", "pr_close", "pr_std", "vol", "val", "trades", "pr_vwap",
          "pr_change", "trades_b", "trades_s", "val_b", "val_s", "vol_b", "vol_s", "disb",
          "pr_vwap_b", "pr_vwap_s"]
_SEC_PR = ["sec_pr_open", "sec_pr_high", "sec_pr_low", "sec_pr_close"]
_HEAD = ["tradedate", "tradetime", "secid"]
_ORDERS_SIDES = ["put_orders_b", "put_orders_s", "put_val_b", "put_val_s", "put_vol_b", "put_vol_s",
                 "put_vwap_b", "put_vwap_s"]
_CANCEL_SIDES = [c.replace("put_", "cancel_") for c in _ORDERS_SIDES]


def _levels(prefix: str, levels: list[int]) -> list[str]:
    return [f"{prefix}{n}" for n in levels]


COLUMNS: dict[tuple[str, str], list[str]] = {
    ("eq", "tradestats"): _HEAD + _PRICE + ["systime"] + _SEC_PR,
    ("fx", "tradestats"): _HEAD + _PRICE + _SEC_PR + ["systime"],
    ("fo", "tradestats"): _HEAD + ["asset_code"] + _PRICE
    + ["im", "oi_open", "oi_high", "oi_low", "oi_close"] + _SEC_PR + ["systime"],
    ("eq", "orderstats"): _HEAD + _ORDERS_SIDES + ["put_vol", "put_val", "put_orders"]
    + _CANCEL_SIDES + ["cancel_vol", "cancel_val", "cancel_orders", "systime"],
    ("fx", "orderstats"): _HEAD + _ORDERS_SIDES + _CANCEL_SIDES + ["systime"],
    # FO orderstats is unverified upstream (iss-api.md §2); served with the eq column set.
    ("fo", "orderstats"): _HEAD + ["asset_code"] + _ORDERS_SIDES + ["put_vol", "put_val", "put_orders"]
    + _CANCEL_SIDES + ["cancel_vol", "cancel_val", "cancel_orders", "systime"],
    ("eq", "obstats"): _HEAD + ["spread_bbo", "spread_lv10", "spread_1mio", "levels_b", "levels_s",
                                "vol_b", "vol_s", "val_b", "val_s", "imbalance_vol_bbo",
                                "imbalance_val_bbo", "imbalance_vol", "imbalance_val", "vwap_b",
                                "vwap_s", "vwap_b_1mio", "vwap_s_1mio", "systime"],
    ("fo", "obstats"): _HEAD + ["asset_code", "mid_price", "micro_price"]
    + _levels("spread_l", [1, 2, 3, 5, 10, 20]) + ["levels_b", "levels_s"]
    + _levels("vol_b_l", [1, 2, 3, 5, 10, 20]) + _levels("vol_s_l", [1, 2, 3, 5, 10, 20])
    + _levels("vwap_b_l", [3, 5, 10, 20]) + _levels("vwap_s_l", [3, 5, 10, 20]) + ["systime"],
    ("fx", "obstats"): _HEAD + ["mid_price", "micro_price"] + _levels("spread_l", [1, 2, 3, 5, 10])
    + ["levels_b", "levels_s"] + _levels("vol_b_l", [1, 2, 3, 5, 10]) + _levels("vol_s_l", [1, 2, 3, 5, 10])
    + _levels("vwap_b_l", [3, 5, 10]) + _levels("vwap_s_l", [3, 5, 10]) + ["systime"],
}
for _m in MARKETS:
    COLUMNS[(_m, "hi2")] = ["tradedate", "tradetime", "secid", "metric", "value", "reference", "systime"]
# FO HI2 adds asset_code (iss-api.md §11 "HI2 (FO)"; its position is not documented: after secid).
COLUMNS[("fo", "hi2")] = ["tradedate", "tradetime", "secid", "asset_code", "metric", "value", "reference",
                          "systime"]
# SuperCandles and HI2 answers carry SYSTIME in upper case, all other names lower case
# (iss-api.md §11 "column casing"); FUTOI keeps lower-case systime.
for _key, _columns in COLUMNS.items():
    if _key[1] != "futoi":
        COLUMNS[_key] = ["SYSTIME" if c == "systime" else c for c in _columns]
COLUMNS[("fo", "futoi")] = ["sess_id", "seqnum", "tradedate", "tradetime", "ticker", "clgroup", "pos",
                            "pos_long", "pos_short", "pos_long_num", "pos_short_num", "systime",
                            "trade_session_date"]



def columns_for(market: str, dataset: str) -> list[str]:
    """The answer's columns: the realistic list above, or for any other dataset of the
    registry (exporter/datasets.py) its instrument column, the time columns and one value."""
    known = COLUMNS.get((market, dataset))
    if known is not None:
        return known
    spec = registry.get(dataset)
    return ["tradedate", "tradetime", spec.secid_column, "value", "SYSTIME"]


def systime_index(columns: list[str]) -> int:
    """Position of the system-time column (`SYSTIME` or FUTOI's `systime`)."""
    return [c.lower() for c in columns].index("systime")


HI2_METRICS = ["hhi_volume", "hhi_buy", "hhi_sell", "hhi_passive", "hhi_passive_buy", "hhi_passive_sell",
               "hhi_agressive", "hhi_agressive_buy", "hhi_agressive_sell"]
DEFAULT_HI2_TIMES = {"eq": "18:45:40", "fx": "19:05:00", "fo": "19:05:00"}
PROBES = {"eq": "SBER", "fx": "CNYRUB_TOM", "fo": "SiZ6", "futoi": "ri"}

_EQ_REAL = ["SBER", "GAZP", "LKOH", "GMKN", "NVTK", "ROSN", "YDEX", "TATN", "SNGS", "SNGSP", "VTBR",
            "MGNT", "PLZL", "CHMF", "NLMK", "MTSS", "ALRS", "MOEX", "AFLT", "SBERP", "TATNP", "POLY",
            "RUAL", "PHOR", "IRAO", "HYDR", "FEES", "RTKM", "MAGN", "PIKK", "AFKS", "CBOM", "TRNFP",
            "OZON", "T", "X5", "HEAD", "ASTR", "SMLT", "SOFL", "POSI", "VKCO", "BSPB", "UPRO", "FLOT",
            "SELG", "ENPG", "LSRG", "MTLR", "MTLRP", "RASP", "SGZH", "SVCB", "UGLD", "WUSH", "AQUA",
            "BELU", "CIAN", "DELI", "DIAS", "ELFV", "EUTR", "FESH", "GECO", "HNFG", "IVAT", "KZOS",
            "LENT", "LEAS", "MBNK", "MDMG", "MRKC", "MSNG", "MVID", "NMTP", "OGKB", "PRMD", "RENI",
            "RNFT", "SFIN", "TGKA", "TRMK", "UWGN", "VSEH", "ZAYM"]
_FX_REAL = ["CNYRUB_TOM", "USD000UTSTOM", "EUR_RUB__TOM", "CNY000000TOD", "USD000000TOD", "EUR_RUB__TOD",
            "HKDRUB_TOM", "KZTRUB_TOM", "TRYRUB_TOM", "BYNRUB_TOM", "AMDRUB_TOM", "GLDRUB_TOM",
            "SLVRUB_TOM", "USDCNY_TOM", "EURUSD000TOM", "CNYRUBTODTOM", "USDRUBTODTOM", "UZSRUB_TOM",
            "AEDRUB_TOM", "KGSRUB_TOM"]
# FO underlying codes (futoi tickers are their lower-case forms).
_FO_ASSETS = ["Si", "RI", "BR", "GD", "MX", "NG", "Eu", "CR", "SR", "GZ", "LK", "VB", "SV", "ED", "MM",
              "RN", "GK", "YD", "AF", "MN", "PD", "PT", "SN", "TT", "AL", "ME", "MT", "NK", "PZ", "HY",
              "IR", "FS", "CH", "MG", "NM", "OZ", "PH", "RT", "X5", "W4"]
_QUARTERS = ["H6", "M6", "U6", "Z6", "H7", "M7"]
_MONTHS = ["F7", "G7", "H7", "J7", "K7", "M7", "N7", "Q7", "U7", "V7", "X7", "Z7"]
_BASE_PRICES = {"eq": 250.0, "fx": 12.0, "fo": 90000.0}

# secid_daypattern knob (iss-api.md §11 "FX instruments"; the exact lists and times are
# not published: these are documented sandbox choices, see sandbox/README.md).
EQ_EVENING_AFTER = "19:00:00"    # buckets ending after this belong to the evening session
FX_TOD_LAST_BUCKET = {"CNY": "15:00:00", "": "17:45:00"}  # TOD instruments: last bucket (CNY / others)


@dataclass(frozen=True)
class Instrument:
    secid: str
    liquidity: float        # probability of a row in a bucket (1.0 for probes)
    weight: float           # relative size of volumes/values (probe of fo is the largest)
    price: float
    asset_code: str | None = None


def _stable_seed(*parts: object) -> int:
    digest = hashlib.blake2b("|".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def bucket_uniforms(seed: int, market: str, dataset: str, day: date, tradetime: str) -> tuple[float, float]:
    """Two deterministic uniforms in [0, 1) for one bucket: (delay position, late/never draw)."""
    digest = hashlib.blake2b(f"{seed}|{market}|{dataset}|{day}|{tradetime}".encode(), digest_size=16).digest()
    return (int.from_bytes(digest[:8], "big") / 2**64, int.from_bytes(digest[8:], "big") / 2**64)


def _generated_names(count: int, prefix: str, taken: set[str], rng: np.random.Generator,
                     width: int = 3, suffix: str = "") -> list[str]:
    names: list[str] = []
    letters = np.array(list(string.ascii_uppercase))
    while len(names) < count:
        name = prefix + "".join(rng.choice(letters, width)) + suffix
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def build_universe(market: str, scale: float, seed: int) -> list[Instrument]:
    """Instruments of a market ('futoi' for FUTOI tickers), sorted by secid."""
    rng = np.random.default_rng(_stable_seed(seed, "universe", market))
    if market == "eq":
        target = max(1, round(250 * scale))
        names = list(_EQ_REAL[:target])
        names += _generated_names(target - len(names), "Z", set(names), rng)
    elif market == "fx":
        target = max(1, round(20 * scale))
        names = list(_FX_REAL[:target])
        names += _generated_names(target - len(names), "X", set(names), rng, suffix="RUB_TOM")
    elif market == "fo":
        return _fo_universe(scale, rng)
    elif market == "futoi":
        target = max(1, round(40 * scale))
        codes = [a.lower() for a in _FO_ASSETS[:target]]
        codes += [c.lower() for c in _generated_names(target - len(codes), "Q", set(codes), rng, width=2)]
        instruments = [Instrument(c, 1.0 if c == PROBES["futoi"] else float(rng.uniform(0.5, 0.98)),
                                  1.0, 0.0) for c in codes]
        return sorted(instruments, key=lambda i: i.secid)
    else:
        raise ValueError(f"unknown market {market!r}")
    probe = PROBES[market]
    instruments = []
    for rank, name in enumerate(names):
        if name == probe:
            liquidity = 1.0
        elif rank < 30:
            liquidity = float(rng.uniform(0.9, 0.99))
        else:
            liquidity = float(rng.uniform(0.15, 0.85))
        weight = float(rng.lognormal(0, 1)) / (1 + rank / 10)
        price = float(_BASE_PRICES[market] * rng.lognormal(0, 1))
        instruments.append(Instrument(name, liquidity, weight, price))
    return sorted(instruments, key=lambda i: i.secid)


def _fo_universe(scale: float, rng: np.random.Generator) -> list[Instrument]:
    n_assets = max(1, round(len(_FO_ASSETS) * scale))
    assets = list(_FO_ASSETS[:n_assets])
    assets += _generated_names(n_assets - len(assets), "Q", set(assets), rng, width=2)
    instruments = []
    for a_rank, asset in enumerate(assets):
        # Monthly contracts for commodities, quarterly for the rest (about 6.5 per asset).
        expiries = _MONTHS if asset in ("BR", "NG", "GD") else _QUARTERS
        for e_rank, expiry in enumerate(expiries):
            secid = asset + expiry
            if secid == PROBES["fo"]:
                liquidity, weight = 1.0, 1000.0
            elif e_rank == 0 or (asset == "Si" and expiry != "Z6") or secid == "RIZ6":
                liquidity, weight = float(rng.uniform(0.8, 0.98)), float(rng.uniform(5, 50))
            else:
                liquidity = float(rng.uniform(0.02, 0.4)) / (1 + e_rank / 3)
                weight = float(rng.uniform(0.01, 2)) / (1 + a_rank / 10)
            price = float(_BASE_PRICES["fo"] * rng.lognormal(-1, 1.2))
            instruments.append(Instrument(secid, liquidity, weight, price, asset_code=asset))
    return sorted(instruments, key=lambda i: i.secid)


@dataclass
class Bucket:
    end: datetime                    # bucket END (or hi2 tradetime) in MSK
    end_ts: float
    tradetime: str                   # "HH:MM:SS"
    uniforms: tuple[float, float]
    rows: list[list]                 # systime cell left None; filled per request
    secids: list[str]                # secid (or ticker) of each row
    base_publish_ts: float | None = None  # fixed publish moment (hi2); None = end + delay


@dataclass
class DayFrame:
    market: str
    dataset: str
    day: date
    columns: list[str]
    buckets: list[Bucket]
    systime_index: int
    _by_secid: dict[str, list[tuple[int, int]]] | None = field(default=None, repr=False)

    @property
    def rows_total(self) -> int:
        return sum(len(b.rows) for b in self.buckets)

    def secid_positions(self, secid: str) -> list[tuple[int, int]]:
        """(bucket index, row index) of one instrument's rows, in time order."""
        if self._by_secid is None:
            index: dict[str, list[tuple[int, int]]] = {}
            for b_idx, bucket in enumerate(self.buckets):
                for r_idx, sec in enumerate(bucket.secids):
                    index.setdefault(sec.upper(), []).append((b_idx, r_idx))
            self._by_secid = index
        return self._by_secid.get(secid.upper(), [])


def _round(values: np.ndarray, digits: int) -> list:
    return np.round(values, digits).tolist()


def _ints(values: np.ndarray) -> list:
    return np.maximum(values, 0).astype(np.int64).tolist()


def _numeric_columns(market: str, dataset: str, names: list[str], insts: list[Instrument],
                     rng: np.random.Generator) -> dict[str, list]:
    """Vectorised values of one bucket for the instruments present in it."""
    n = len(insts)
    price = np.array([i.price for i in insts]) * (1 + rng.normal(0, 0.002, n))
    weight = np.array([i.weight for i in insts])
    if market == "fo":  # contract counts scale inversely with price, so val follows weight (probe = max)
        vol = np.ceil(weight * rng.uniform(50, 500, n) * _BASE_PRICES["fo"] / price).astype(np.int64)
    else:
        vol = np.ceil(weight * rng.uniform(50, 500, n)).astype(np.int64)
    val = vol * price * (10 if market == "fo" else 1)
    out: dict[str, list] = {}
    high = price * (1 + np.abs(rng.normal(0, 0.002, n)))
    low = price * (1 - np.abs(rng.normal(0, 0.002, n)))
    share_b = rng.uniform(0.2, 0.8, n)
    known = {
        "pr_open": price, "pr_close": price * (1 + rng.normal(0, 0.001, n)), "pr_high": high, "pr_low": low,
        "pr_vwap": price, "pr_vwap_b": price * 1.0005, "pr_vwap_s": price * 0.9995,
        "pr_std": price * 0.001, "pr_change": rng.normal(0, 0.1, n), "disb": 2 * share_b - 1,
        "mid_price": price, "micro_price": price * (1 + rng.normal(0, 0.0002, n)),
        "vwap_b": price * 0.999, "vwap_s": price * 1.001, "vwap_b_1mio": price * 0.998,
        "vwap_s_1mio": price * 1.002, "imbalance_vol_bbo": rng.uniform(-1, 1, n),
        "imbalance_val_bbo": rng.uniform(-1, 1, n), "imbalance_vol": rng.uniform(-1, 1, n),
        "imbalance_val": rng.uniform(-1, 1, n), "im": price * 0.15,
    }
    for name in names:
        if name in known:
            out[name] = _round(known[name], 4)
        elif name == "vol":
            out[name] = vol.tolist()
        elif name == "val":
            out[name] = _round(val, 2)
        elif name in ("vol_b", "vol_s") and dataset == "tradestats":
            part = share_b if name == "vol_b" else 1 - share_b
            out[name] = _ints(vol * part)
        elif name in ("val_b", "val_s") and dataset == "tradestats":
            part = share_b if name == "val_b" else 1 - share_b
            out[name] = _round(val * part, 2)
        elif name.startswith("trades"):
            out[name] = _ints(np.ceil(vol / rng.uniform(5, 20, n)))
        elif name.startswith("sec_pr_"):
            out[name] = _ints(rng.uniform(0, 300, n))
        elif name.startswith("oi_"):
            out[name] = _ints(weight * 10000 * rng.uniform(0.99, 1.01, n))
        elif name.startswith("spread"):
            out[name] = _round(rng.uniform(1, 30, n), 2)
        elif name.startswith("levels"):
            out[name] = _ints(rng.uniform(5, 200, n))
        elif name.startswith("vwap"):
            out[name] = _round(price * rng.uniform(0.995, 1.005, n), 4)
        elif "vwap" in name:
            out[name] = _round(price * rng.uniform(0.995, 1.005, n), 4)
        elif "_val" in name or name.startswith("val"):
            out[name] = _round(val * rng.uniform(0.5, 3, n), 2)
        else:  # volumes and order counts
            out[name] = _ints(vol * rng.uniform(0.5, 3, n))
    return out


def parse_hms(value: str) -> time:
    parts = [int(p) for p in value.split(":")]
    while len(parts) < 3:
        parts.append(0)
    return time(parts[0], parts[1], parts[2])


class DataSource:
    """Universe + lazily generated, cached day frames."""

    def __init__(self, calendar_provider, scale: float = 1.0, seed: int = 1,
                 hi2_times: dict[str, str] | None = None, cache_rows: int = 2_500_000):
        self._calendar = calendar_provider        # callable -> exporter.calendar.Calendar
        self.scale = scale
        self.seed = seed
        self.hi2_times = {m: parse_hms(t) for m, t in {**DEFAULT_HI2_TIMES, **(hi2_times or {})}.items()}
        self._universes: dict[str, list[Instrument]] = {}
        self._frames: OrderedDict[tuple, DayFrame] = OrderedDict()
        self._cache_rows = cache_rows  # LRU bound (~0.5-1 kB per cached row)
        self._lock = threading.Lock()
        self._gen_locks: dict[tuple, threading.Lock] = {}

    def universe(self, market: str) -> list[Instrument]:
        """Instruments of `market` ('eq', 'fx', 'fo' or 'futoi')."""
        if market not in self._universes:
            self._universes[market] = build_universe(market, self.scale, self.seed)
        return self._universes[market]

    def probe(self, market: str) -> str:
        return PROBES[market]

    def successor(self, secid: str) -> str | None:
        """The FO contract that takes over when `secid` expires: the next expiry of the same
        asset in the universe (SiZ6 -> SiH7); None when there is none."""
        by_id = {i.secid.upper(): i for i in self.universe("fo")}
        inst = by_id.get(secid.upper())
        if inst is None or not inst.asset_code:
            return None
        order = _MONTHS if inst.asset_code in ("BR", "NG", "GD") else _QUARTERS
        suffix = inst.secid[len(inst.asset_code):]
        if suffix not in order:
            return None
        for later in order[order.index(suffix) + 1:]:
            candidate = by_id.get((inst.asset_code + later).upper())
            if candidate is not None:
                return candidate.secid
        return None

    def daypattern(self, market: str):
        """secid_daypattern: tradetime -> set of secids absent from that bucket."""
        universe = [i.secid for i in self.universe(market)]
        if market == "eq":
            evening_out = {s for s in universe if s not in _EQ_REAL}   # generated names trade by day only
            return lambda tradetime: evening_out if tradetime > EQ_EVENING_AFTER else set()
        if market == "fx":
            tod = {s: FX_TOD_LAST_BUCKET["CNY" if s.startswith("CNY") else ""] for s in universe if "TOD" in s}

            def absent(tradetime: str) -> set[str]:
                return {s for s, last in tod.items() if tradetime > last}
            return absent
        return None

    def invalidate(self) -> None:
        """Drop cached frames (the calendar changed)."""
        with self._lock:
            self._frames.clear()

    def frame(self, market: str, dataset: str, day: date) -> DayFrame:
        key = (market, dataset, day)
        with self._lock:
            cached = self._frames.get(key)
            if cached is not None:
                self._frames.move_to_end(key)
                return cached
            gen_lock = self._gen_locks.setdefault(key, threading.Lock())
        with gen_lock:  # one generator per key; others wait for it
            with self._lock:
                cached = self._frames.get(key)
            if cached is None:
                cached = self._generate(market, dataset, day)
                with self._lock:
                    self._frames[key] = cached
                    total = sum(f.rows_total for f in self._frames.values())
                    while total > self._cache_rows and len(self._frames) > 1:
                        _, evicted = self._frames.popitem(last=False)
                        total -= evicted.rows_total
                    self._gen_locks.pop(key, None)
            return cached

    # ----- generation ------------------------------------------------------------------

    def _generate(self, market: str, dataset: str, day: date) -> DayFrame:
        columns = columns_for(market, dataset)
        calendar = self._calendar()
        ends = calendar.expected_buckets(market, day)
        rng = np.random.default_rng(_stable_seed(self.seed, market, dataset, day.isoformat()))
        if not registry.get(dataset).intraday:   # published once a day (hi2)
            buckets = self._hi2_buckets(market, dataset, day, ends, rng)
        elif dataset == "futoi":
            buckets = [self._futoi_bucket(day, end, rng) for end in ends]
        else:
            buckets = [self._bucket(market, dataset, day, end, columns, rng) for end in ends]
        return DayFrame(market, dataset, day, columns, buckets, systime_index(columns))

    def _new_bucket(self, market: str, dataset: str, day: date, end: datetime) -> Bucket:
        end = end.astimezone(MSK)
        tradetime = end.strftime("%H:%M:%S")
        return Bucket(end, end.timestamp(), tradetime,
                      bucket_uniforms(self.seed, market, dataset, day, tradetime), [], [])

    def _bucket(self, market: str, dataset: str, day: date, end: datetime, columns: list[str],
                rng: np.random.Generator) -> Bucket:
        bucket = self._new_bucket(market, dataset, day, end)
        universe = self.universe(market)
        liquidity = np.array([i.liquidity for i in universe])
        if dataset == "obstats":
            liquidity = np.maximum(liquidity, 0.97)
        present = rng.random(len(universe)) < liquidity
        present |= liquidity >= 1.0
        insts = [inst for inst, p in zip(universe, present, strict=True) if p]
        numeric = [c for c in columns if c not in ("tradedate", "tradetime", "secid", "asset_code", "SYSTIME")]
        values = _numeric_columns(market, dataset, numeric, insts, rng)
        n = len(insts)
        fixed = {"tradedate": [day.isoformat()] * n, "tradetime": [bucket.tradetime] * n,
                 "secid": [i.secid for i in insts], "asset_code": [i.asset_code for i in insts],
                 "SYSTIME": [None] * n}
        bucket.rows = list(map(list, zip(*(fixed[c] if c in fixed else values[c] for c in columns), strict=True)))
        bucket.secids = fixed["secid"]
        return bucket

    def _futoi_bucket(self, day: date, end: datetime, rng: np.random.Generator) -> Bucket:
        bucket = self._new_bucket("fo", "futoi", day, end)
        universe = self.universe("futoi")
        present = (rng.random(len(universe)) < np.array([i.liquidity for i in universe]))
        tradedate = day.isoformat()
        seq_base = int(bucket.end_ts) * 10
        for idx, inst in enumerate(universe):
            if not (present[idx] or inst.liquidity >= 1.0):
                continue
            for clgroup in ("FIZ", "YUR"):
                long_ = int(rng.integers(1000, 500000))
                short = -int(rng.integers(1000, 500000))
                bucket.rows.append([int(day.strftime("%Y%m%d")), seq_base + idx * 2 + (clgroup == "YUR"),
                                    tradedate, bucket.tradetime, inst.secid, clgroup, long_ + short, long_,
                                    short, int(rng.integers(100, 90000)), int(rng.integers(100, 90000)),
                                    None, tradedate])
                bucket.secids.append(inst.secid)
        return bucket

    def _hi2_buckets(self, market: str, dataset: str, day: date, ends: list[datetime],
                     rng: np.random.Generator) -> list[Bucket]:
        if not ends:
            return []
        publish = datetime.combine(day, self.hi2_times[market], tzinfo=MSK)
        eligible = [e for e in ends if e <= publish]
        end = eligible[-1] if eligible else ends[0]
        bucket = self._new_bucket(market, dataset, day, end)
        bucket.base_publish_ts = publish.timestamp()
        tradedate = day.isoformat()
        for inst in self.universe(market):
            if inst.liquidity < 0.3:  # too few participants: no hi2 row
                continue
            for metric in HI2_METRICS:
                value = round(float(rng.uniform(0.001, 0.4)), 6)
                head = [tradedate, bucket.tradetime, inst.secid]
                if market == "fo":
                    head.append(inst.asset_code)
                bucket.rows.append(head + [metric, value, round(float(rng.uniform(0.01, 0.2)), 6), None])
                bucket.secids.append(inst.secid)
        return [bucket]


def format_systime(ts: float) -> str:
    return datetime.fromtimestamp(ts, MSK).strftime("%Y-%m-%d %H:%M:%S")


def day_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
