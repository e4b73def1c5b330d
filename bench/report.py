"""BENCHMARKS.md from one run's results (bench.__main__); every number is from that run."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime

from deploy.render_prometheus import scaled_rules

from . import detection, scenario
from .scoring import count_episodes, first_detection, percentile, summarize

OUT = scenario.REPO / "BENCHMARKS.md"
TZ = scenario.DAY_START.tzinfo
TARGET = scenario.PUBLISH_GRACE + 60


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "not found"


def commit() -> str:
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h %s"], capture_output=True, text=True, timeout=10,
                             cwd=str(scenario.REPO))
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10, cwd=str(scenario.REPO)).stdout.strip()
        return out.stdout.strip()[:80] + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hhmm(ts: float) -> str:
    return f"{datetime.fromtimestamp(ts, TZ):%H:%M}"


def fmt_s(value) -> str:
    return "–" if value is None else f"{value:.0f} s"


def mb(n: float) -> str:
    return f"{n / 1e6:,.2f} MB"


def kb(n: float) -> str:
    return f"{n / 1e3:,.0f} KB"


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("**met**" if ok else "**missed**")


def score(res: dict) -> dict:
    """Per strategy, over the windows: incidents in scope, messages in scope, the summary."""
    truth = res["truth"]
    out: dict = {"ours": {"incidents": [], "messages": [], "others": {}}, "old300": {"incidents": [], "messages": []},
                 "old60": {"incidents": [], "messages": []}}
    for window in res["windows"]:
        lo, hi = window["score_from"].timestamp(), window["end"].timestamp()
        scoped = [i for i in truth["incidents"] if detection.in_scope(i, window)]
        messages, _ = detection.to_messages(window["records"], truth["grids"])
        _, others = detection.to_messages([r for r in window["records"] if r[0] >= lo], truth["grids"])
        window["incidents"] = scoped
        window["messages"] = messages
        out["ours"]["incidents"] += scoped
        out["ours"]["messages"] += [m for m in messages if m.ts >= lo]
        for name, n in others.items():
            out["ours"]["others"][name] = out["ours"]["others"].get(name, 0) + n
        for key in ("old300", "old60"):
            if key in res:
                out[key]["incidents"] += scoped
                out[key]["messages"] += [m for m in res[key]["messages"] if lo <= m.ts <= hi]
    for key, val in out.items():
        if key != "ours" and key not in res:
            val["summary"] = None
            continue
        episodes = count_episodes(val["messages"]) if key == "ours" else (len(val["messages"]),) * 2
        val["summary"] = summarize(val["incidents"], val["messages"], truth["bad"], episodes)
    return out


def detection_section(res: dict) -> list[str]:
    if "truth" not in res or not res["windows"]:
        return ["Not measured in this run (see errors below).", ""]
    sc = score(res)
    windows = res["windows"]
    first = windows[0]
    speed = detection.SPEED
    fors = sorted({(r["alert"], str(r.get("for"))) for doc in scaled_rules(speed).values() for g in doc["groups"]
                   for r in g["rules"] if "alert" in r and "for" in r})
    keys = [k for k in ("ours", "old60", "old300") if sc[k]["summary"] is not None]
    heads = {"ours": "ours (exporter + real Prometheus rules + real Alertmanager)", "old60": "old, 1-min jobs",
             "old300": "old, 5-min jobs"}
    rows = ["| | " + " | ".join(heads[k] for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]

    def line(label: str, fn) -> None:
        rows.append(f"| {label} | " + " | ".join(fn(sc[k]["summary"]) for k in keys) + " |")

    line("incidents (stops + holes) detected", lambda x: f"{x.detected} / {x.incidents}")
    line("latency due → first message, median", lambda x: fmt_s(percentile(x.latencies, 50)))
    line("latency due → first message, p90", lambda x: fmt_s(percentile(x.latencies, 90)))
    line("latency due → first message, max", lambda x: fmt_s(max(x.latencies) if x.latencies else None))
    line("alert messages (firing)", lambda x: str(x.firing_messages))
    line("**false alarms** (messages about buckets that arrived within the grace)",
         lambda x: f"**{x.false_alarm_messages}**")
    line("alerts notified (old: every message is one)", lambda x: str(x.alerts_fired))
    line("**alerts without a resolve message** (at the window's end)", lambda x: f"**{x.missing_resolves}**")
    ours = sc["ours"]["summary"]
    p50, p90 = percentile(ours.latencies, 50), percentile(ours.latencies, 90)
    worst = max(ours.latencies) if ours.latencies else None
    per_window = []
    for w in windows:
        lat = []
        for incident in w["incidents"]:
            moment = first_detection(incident, w["messages"])
            lat.append(f"{incident.pair[0]}/{incident.pair[1]} {hhmm(incident.due)} "
                       + ("never named" if moment is None else f"{moment - incident.due:.0f} s"))
        h = w["health"]
        per_window.append(
            f"- **{w['name']}**: {hhmm(w['start'].timestamp())}–{hhmm(w['end'].timestamp())} virtual "
            f"({w['real_seconds']:.0f} s real), exporter ready {hhmm(w['ready'].timestamp())}, scored "
            f"{hhmm(w['score_from'].timestamp())}–{hhmm(w['score_to'].timestamp())}: "
            + ("; ".join(lat) if lat else "no incident due") + f". Scrapes {h.get('scrapes', 0):.0f}, failed "
            f"{h.get('failed_scrapes', 0):.0f}, scrape p99 {h.get('scrape_p99_ms', 0):.0f} ms, missed rule "
            f"evaluations {h.get('missed_evaluations', 0):.0f}.")
    others = ", ".join(f"{name} {n}" for name, n in sorted(sc["ours"]["others"].items())) or "none"
    return [
        *rows,
        "",
        f"Target: first message ≤ grace + 60 s = {TARGET:.0f} s after the bucket is due — median and p90 "
        f"{verdict(p50 is not None and p90 is not None and p90 <= TARGET)}, max {fmt_s(worst)}; "
        f"0 false alarms {verdict(ours.false_alarm_messages == 0)}.",
        f"Other alerts ours sent in the scored part of the windows (not scored; by title): {others}.",
        "",
        "How it runs:",
        f"- **ours: the real pipeline, time-scaled ×{speed:g}.** `LocalStack(time_scaled=True)` (deploy/stack.py): "
        "sandbox ISS and exporter on one shared virtual clock; real Prometheus and Alertmanager (versions above) "
        "with every production time constant divided by the clock speed, rendered from the production files, "
        "never a hand-made copy: Prometheus scrape and evaluation interval 15 s → "
        f"{first['timings']['scrape/evaluation']}, the query look-back 5 m and the alert resend delay 1 m the same "
        "way; the rules are `deploy/render_prometheus.py::render_scaled_rules` of prometheus/rules: every `for:` ("
        + ", ".join(f"{a} {f}" for a, f in fors) + "), and every range window and offset inside PromQL, also "
        "in the annotations' queries (the SLO windows `[5m]`…`[30d]` become "
        f"`[{scaled_rules(speed)['slo.yml']['groups'][0]['rules'][1]['expr'].split('[')[1].split(']')[0]}]`…): "
        "counters grow at the virtual pace, so an unscaled `[1h]` would span "
        f"{speed:g} virtual hours; Alertmanager group_wait 30 s → {first['timings']['group_wait']}, "
        f"group_interval 1 m → {first['timings']['group_interval']}, repeat_interval 4 h → "
        f"{first['timings']['repeat_interval']} (`render_alertmanager.scaled_timings`). Thresholds stay: the "
        "exporter's numbers (lag, elapsed session) are virtual seconds already. Not scaled: the scrape timeout "
        "(= the scaled interval; the exporter's CPU does not get faster) and Prometheus' start-up (its first "
        "scrape comes ~5 s real after start, so a just-started stack may page AlgopackExporterDown once: that is "
        "before the scored part).",
        "- **Windows, not the whole day**: at a speed the 2 shared cores keep up with (scrape every "
        f"{first['timings']['scrape/evaluation']} real), the 17-hour day would take "
        f"{(scenario.DAY_END - scenario.DAY_START).total_seconds() / speed / 60:.0f} min; the benchmark runs "
        f"{len(windows)} representative windows of the same day, each on a fresh stack (the exporter starts at "
        f"the window's start and catches up with the day so far). Incidents are scored when due from "
        f"{detection.WARMUP.total_seconds() / 60:.0f} min after the window's start until "
        f"{scenario.PUBLISH_GRACE + 90:.0f} s before its end; messages are read from the fake Bot API and parsed "
        "(alertmanager/templates/telegram.tmpl): a message names an incident when an alert listing one of its "
        "buckets is sent for the first time (a hole alert lists its run's holes; a lag alert, every due bucket "
        "after the last interval it names). Virtual latency = real Telegram arrival mapped onto the virtual clock. "
        "What does not get faster with the clock (HTTP between the processes, rule and template evaluation, the "
        f"exporter's scrape time, notification) is multiplied by it: each 100 ms real reads as {speed / 10:g} s "
        "virtual, so the latencies are upper bounds of production's (the un-scaled stack, ×1 Prometheus and "
        "Alertmanager with a ×5 exporter, measured 169 s for the first hole of a quiet group: BENCHMARKS.md of "
        "commit f6f9dab). A hole alert joining a group that is already open waits for the group's next "
        "group_interval tick (≤ 60 s virtual).",
        *per_window,
        "- **old strategy: simulation** of the tool we replace (`bench/oldstrategy.py`), the same sandbox data, "
        "the whole day, scored over the same windows. It sends Telegram messages directly, so a message is sent "
        "at the job that sees the gap: jobs at :30 s, the 5-min jobs in the most favourable phase (30 s after each "
        "bucket end), no grace, no resolves. Its model follows the issue's description (today's and yesterday's "
        "FO obstats, all pages; one page of today's FO tradestats) and picks the FO contract by `val`, as ours does.",
        "",
        "Ground truth from the sandbox's own publish plan (the old tool's in-process sandbox, same seed, calendar, "
        "faults): a bucket of a watched pair is an *incident* bucket if the probe's row came more than the publish "
        f"grace ({scenario.PUBLISH_GRACE:.0f} s) after the bucket's end, or never; consecutive incident buckets "
        f"form one incident (a stop). Over the whole day: {len(res['truth']['incidents'])} incidents on the 8 pairs "
        f"both tools watch for holes; {len(sc['ours']['incidents'])} of them are due in the scored windows. A late "
        "bucket that arrives within the grace is *not* an incident: a message about it is a false alarm.",
        "",
    ]


def load_section(res: dict) -> tuple[list[str], dict]:
    ours = res.get("ours_load")
    if not ours or "old300" not in res:
        return ["Not measured in this run (see errors below).", ""], {}
    day = ours["day"]
    rows = ["| | requests | response bytes | ours is … fewer requests | … fewer bytes |", "|---|---|---|---|---|",
            f"| ours, the scenario's day (exporter running since the day before) | {day['requests']:,} | "
            f"{mb(day['bytes'])} | – | – |"]
    ratios = {}
    for key, label in (("old300", "old, 5-min jobs"), ("old60", "old, 1-min jobs")):
        if key in res:
            load = res[key]["load"]
            ratios[key] = (load.requests / day["requests"], load.bytes / day["bytes"])
            rows.append(f"| {label} | {load.requests:,} | {mb(load.bytes)} | {ratios[key][0]:,.1f}× | {ratios[key][1]:,.0f}× |")
    ignored = (res.get("ours_load_ignored") or {}).get("day")
    if ignored and "old300" in res:
        load = res["old300"]["load"]
        ratios["ignored"] = (load.requests / ignored["requests"], load.bytes / ignored["bytes"])
        rows.append(f"| ours, the same day if ISS ignores `latest=1` on the FUTOI route (sandbox knob "
                    f"`latest_per_instrument`) | {ignored['requests']:,} | {mb(ignored['bytes'])} | "
                    f"{ratios['ignored'][0]:,.1f}× | {ratios['ignored'][1]:,.0f}× |")
    cold = ours.get("cold")
    if cold:
        rows.append(f"| ours, the day before: a cold start at 06:55 (for reference) | {cold['requests']:,} | "
                    f"{mb(cold['bytes'])} | | |")
    old = res["old300"]
    d1 = res.get("day1")
    return [
        *rows,
        "",
        f"Ours: the real poller, ISS client (HTTP) and collector against the sandbox ISS in-process, on a manual "
        "clock driven by `exporter.virtual.VirtualDriver` (every planned poll happens, however busy the machine), "
        "the sandbox's own counters (requests, response body bytes). The exporter starts cold at 06:55 the day "
        f"before, so the scenario's day ({scenario.DAY}: delay profile, never-published buckets, the three stops) "
        f"is a normal one, its previous-day aggregates observed the day before: {day['polls']:,} polls."
        + (f" Cross-check, the exporter as a process on a ×{d1['speed']:g} clock, started cold at 06:55 of the "
           f"scenario's day: {d1['requests']:,} requests / {mb(d1['bytes'])} ({d1['polls']:,.0f} polls; a fast "
           "clock lets it skip some polls)." if d1 else ""),
        f"Old tool: every request of the model is accounted; a request repeated while the data set it reads is "
        "unchanged (same path and parameters, same published buckets) is counted with the body size the sandbox "
        f"counted for it the first time instead of being re-sent (sent for real, 5-min: {old['sent']['requests']:,}"
        f" requests / {mb(old['sent']['bytes'])}; replayed {old['load'].replayed:,}). The 1-min tool runs only with "
        "`ALGOPACK_BENCH_OLD_1MIN=1` (minutes more of loopback JSON).",
        "",
        *route_table(ours.get("routes") or {}),
    ], ratios


def route_table(routes: dict) -> list[str]:
    """Where our requests of the scenario's day go, by the sandbox's route kind and dataset."""
    if not routes:
        return []
    out = ["Ours, the scenario's day by route (sandbox counters):", "", "| route | requests | bytes |", "|---|---|---|"]
    for route, (n, b) in sorted(routes.items(), key=lambda kv: -kv[1][0]):
        out.append(f"| `{route}` | {n:,} | {mb(b)} |")
    return [*out, ""]


def issue16_section(res: dict, ratios: dict) -> list[str]:
    d1, d10, rs, cl, sc = (res.get(k) for k in ("day1", "day10", "restart", "closed", "scrape"))
    r10 = res.get("ready10")
    r5, ri = ratios.get("old300"), ratios.get("ignored")
    load = sc["load"] if sc else None
    storage = "available" if res["storage"] else "**not available** (`--storage.path` unknown to the exporter on main)"
    rows = [
        ("exporter peak RSS over a simulated day, scale 1", "97–109 MB", "≤ 60 MB",
         d1 and f"{d1['hwm_mb']:.0f} MB", d1 and d1["hwm_mb"] <= 60),
        ("exporter peak RSS, scale 10", "197–233 MB", "≤ 70 MB (flat)", d10 and f"{d10['hwm_mb']:.0f} MB",
         d10 and d10["hwm_mb"] <= 70),
        ("restart to `/-/ready`: ISS requests / bytes", "124 / 2.3 MB", "≤ 15 / ≤ 200 KB",
         rs and f"{rs['requests']} / {kb(rs['bytes'])} (ready in {rs['ready_seconds']:.1f} s; "
                f"{rs['requests_after']} / {kb(rs['bytes_after'])} incl. the next 10 virtual min, against "
                f"{rs['requests_normal']} / {kb(rs['bytes_normal'])} in the 10 min before the stop)",
         rs and rs["requests"] <= 15 and rs["bytes"] <= 200e3),
        ("`/-/ready` after start, scale 10", "10–25 s", "≤ 3 s",
         r10 and f"{r10['ready_seconds']:.1f} s ({r10['requests']:,} requests / {mb(r10['bytes'])} until then)",
         r10 and r10["ready_seconds"] <= 3),
        ("ISS requests on a closed day", "72–158", "0", cl and f"{cl['requests']} ({kb(cl['bytes'])})",
         cl and cl["requests"] == 0),
        ("ISS requests per trading day vs the old 5-min tool", "5.9× fewer (old sandbox)", "≥ 8× fewer",
         r5 and f"{r5[0]:.1f}× fewer", r5 and r5[0] >= 8),
        ("ISS bytes per trading day vs the old 5-min tool", "634× fewer", "≥ 1000× fewer",
         r5 and (f"{r5[1]:,.0f}× fewer with ISS honouring `latest=1` on FUTOI (the sandbox's default)"
                 + (f"; {ri[1]:,.0f}× if it ignores it (unverified, iss-api.md §3)" if ri else "")),
         r5 and r5[1] >= 1000),
        ("CPU per scrape", "~5 ms", "≤ 2.5 ms", sc and f"{sc['cpu_per_scrape_ms']:.2f} ms",
         sc and sc["cpu_per_scrape_ms"] <= 2.5),
        ("`/metrics` p99 at 100 scrapes/s", "6 ms", "< 20 ms, kept",
         load and f"{load['p99_ms']:.1f} ms (p50 {load['p50_ms']:.1f}, max {load['max_ms']:.1f}; "
                  f"{load['sent']} sent, {load['errors']} errors)", load and load["p99_ms"] < 20),
    ]
    out = ["| figure | today (issue 16) | target | this run | |", "|---|---|---|---|---|"]
    for label, today, target, value, ok in rows:
        out.append(f"| {label} | {today} | {target} | {value or 'not measured'} | "
                   f"{verdict(None if value is None else bool(ok))} |")
    out += ["", f"Persisted state (`--storage.path`): {storage}.", "", "Method:"]
    floor = request_floor(res)
    if floor:
        out.append(floor)
    if d1:
        out.append(f"- Peak RSS = the exporter process's VmHWM at the end of the scenario's day (06:55–23:58, ×{d1['speed']:g} "
                   f"clock, exporter started cold at 06:55); RSS at the end {d1['rss_mb']:.0f} MB, CPU {d1['cpu_s']:.1f} s, "
                   f"{d1['threads']} threads, {d1['fds']} fds." + (
                       f" Scale 10 (sandbox `--scale 10`: 10× the secids of every market): RSS at the end "
                       f"{d10['rss_mb']:.0f} MB, CPU {d10['cpu_s']:.1f} s, {d10['polls']:,.0f} polls, "
                       f"{d10['requests']:,} requests / {mb(d10['bytes'])}." if d10 else ""))
    if r10:
        out.append("- `/-/ready` after start: from spawning the exporter until `/-/ready` answers 200, real seconds, "
                   f"scale 10, in session (12:03:50 virtual) on a ×{r10['speed']:g} clock; the sandbox is up and has "
                   "generated its data before (it does so lazily, seconds at scale 10), its counters reset."
                   + (f" The scale-1 day's start at 06:55 took {d1['ready_seconds']:.1f} s." if d1 else "")
                   + (f" The scale-10 day (×{d10['speed']:g}, run beside the simulations, peak RSS only) took "
                      f"{d10['ready_seconds']:.1f} s." if d10 else ""))
    out += [
        "- Restart: scale 1, in session (12:10 virtual, ×60): the exporter is stopped by pid and started again with "
        "the same config (and so the same state directory, `data/` beside the config, when the exporter has one); "
        "ISS requests and body bytes from the sandbox's counters until `/-/ready`, then also for the next 10 "
        "virtual minutes (reads done off the readiness path, and the normal polls of those minutes).",
        f"- Closed day: Saturday {costs_saturday()} of calendar.yml (weekend, no market trades); the exporter runs from "
        f"Friday 23:52 (after every close) at ×{res.get('closed_speed', 0):g}; requests counted from Saturday 00:00 "
        "to 23:59:30, the date change included.",
        "- CPU per scrape: real-time clock, in session, scale 1; exporter CPU (user+sys, /proc) over 20 s of "
        "100 scrapes/s from a separate load-generator process (`bench/loadgen.py`, 4 keep-alive connections, "
        "paced) minus its CPU over the 20 s before (polls only), divided by the scrapes answered. "
        + (f"The exposition had {sc['series']:,} series." if sc else ""),
        "",
    ]
    return out


def request_floor(res: dict) -> str | None:
    """Where the day's requests go, against the ≥ 8× budget (the old tool's requests / 8)."""
    ours, old = res.get("ours_load"), res.get("old300")
    if not ours or not old or not ours.get("routes"):
        return None
    routes = ours["routes"]
    probe = sum(n for route, (n, _) in routes.items() if route.startswith("secid "))
    coverage = sum(n for route, (n, _) in routes.items() if route.endswith("/obstats") and route.startswith("day "))
    rest = ours["day"]["requests"] - probe - coverage
    budget = old["load"].requests / 8
    folded = probe + rest
    return (f"- Requests against the ≥ 8× target: it allows {budget:,.0f} a day. Of ours, {probe:,} are the probe "
            "instruments' polls (one per bucket and watched pair; a late bucket is retried every minute until its "
            f"grace, at most three polls a bucket), {coverage:,} the obstats coverage reads (`latest=1` of all "
            f"instruments after every new bucket, one per market, as the issue asks) and {rest:,} the rest (FO "
            f"probe choice, hi2). The probe polls alone take {probe / budget:.0%} of the budget. Even with the "
            "obstats probe poll folded into the coverage read (one request per bucket for each of the 9 intraday "
            f"pairs and nothing more) the day would cost ≈ {folded:,} requests ({old['load'].requests / folded:.1f}×), "
            "and that coverage answer would then need `systime` for the probe's lag and SLO, which doubles it "
            "(≈ +2.7 MB a day: below 1000× in bytes). No ISS route returns two datasets at once, so 8× needs fewer "
            "than one poll per bucket and pair (holes judged after their grace) or a sparser coverage read: a "
            "product decision, not an implementation one.")


def costs_saturday() -> str:
    from .costs import SATURDAY

    return SATURDAY.isoformat()


def soak_section(res: dict) -> list[str]:
    soak = res.get("soak")
    if not soak:
        return ["Not measured in this run (see errors below).", ""]
    out = [f"Five virtual days from {scenario.DAY} (Wed–Sun of calendar.yml: 3 trading days, then a closed weekend), "
           f"scale 1, the scenario's delay profile, one exporter process on a ×{soak['speed']:g} clock, read at every "
           "virtual midnight. At this speed the exporter cannot poll every minute (a virtual minute lasts "
           f"{60 / soak['speed'] * 1000:.0f} ms): polls and requests here are what it managed, not a day's cost "
           "(that is section 2); memory, threads and fds are what the soak is for.", "",
           "| day | RSS | peak RSS (VmHWM) | threads | fds | series in /metrics | polls | ISS requests | ISS bytes |",
           "|---|---|---|---|---|---|---|---|---|"]
    for row in soak["rows"]:
        out.append(f"| {row['day']} | {row['rss_mb']:.0f} MB | {row['hwm_mb']:.0f} MB | {row['threads']} | {row['fds']} | "
                   f"{row['series']:,} | {row['polls']:,.0f} | {row['requests']:,} | {mb(row['bytes'])} |")
    rss = [r["rss_mb"] for r in soak["rows"]]
    out += ["", f"RSS from the first to the last midnight: {rss[0]:.0f} → {rss[-1]:.0f} MB; threads "
            f"{soak['rows'][0]['threads']} → {soak['rows'][-1]['threads']}; fds {soak['rows'][0]['fds']} → "
            f"{soak['rows'][-1]['fds']}.", ""]
    return out


def write(res: dict, command: str) -> None:
    load_lines, ratios = load_section(res)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (which runs `python -m bench`); do not edit by hand. Every number below is "
        "from this run. All traffic is on loopback; every process is started and stopped by pid.",
        "",
        f"- date: {datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- code at the start of the run: `{res.get('commit') or commit()}`",
        f"- command: `{command}` (wall time {res['elapsed'] / 60:.1f} min)",
        f"- `uname -a`: `{' '.join(platform.uname())}`",
        f"- cores: {os.cpu_count()}; Python {platform.python_version()}",
        f"- prometheus: `{_version(['prometheus', '--version'])}`; alertmanager: "
        f"`{_version(['prometheus-alertmanager', '--version'])}`",
        "",
        "Machines here are shared and noisy: compare the ratios, not the absolute times.",
        "",
        "## The simulated day",
        "",
        f"One trading day ({scenario.DAY}, `calendar.yml`: EQ 10:00–18:40 + 19:05–23:50, FX 07:00–19:00, "
        "FO 09:00–23:50) of the sandbox ISS (seed 1, scale 1), identical for every strategy:",
        f"- publish-delay profile `{scenario.DELAY_PROFILE}`: most buckets 5–15 s after their end, "
        "10 % 30–90 s, 2 % never (drawn per market, dataset and bucket);",
        "- feed stops, resumed later with the backlog: " + ", ".join(
            e.label + f" {e.moment:%H:%M}" for e in scenario.events()) + ";",
        "- probe buckets never published: " + ", ".join(f"{m}/{d} {','.join(i)}" for m, d, i in scenario.DROPPED) + ".",
        "",
        "## 1. Detection speed and precision (real rules, real Prometheus and Alertmanager)",
        "",
        *detection_section(res),
        "## 2. Load on ISS per trading day",
        "",
        *load_lines,
        "## 3. Issue 16: memory, restart, readiness, closed days, scrape cost",
        "",
        *issue16_section(res, ratios),
        "## 4. Five-day soak",
        "",
        *soak_section(res),
    ]
    if res["errors"]:
        lines += ["## Errors in this run", "",
                  *["- `" + " / ".join(e.replace("`", "'").splitlines())[:600] + "`" for e in res["errors"]], ""]
    OUT.write_text("\n".join(lines) + "\n")
