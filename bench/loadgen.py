"""Bounded paced load generator: `python -m bench.loadgen URL RATE SECONDS`.

Sends GET URL at RATE requests/s (open loop: a request is sent at its scheduled moment,
or right after the previous one when behind) for SECONDS, one keep-alive connection per
worker thread, and prints JSON with latency quantiles in milliseconds.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import requests


def run(url: str, rate: float, seconds: float, workers: int = 4) -> dict:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    start = time.monotonic() + 0.2
    total = int(rate * seconds)

    def worker(index: int) -> None:
        nonlocal errors
        session = requests.Session()
        for n in range(index, total, workers):
            due = start + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter()
            try:
                ok = session.get(url, timeout=5).status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = (time.perf_counter() - t0) * 1000
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors += 1
        session.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    wall = time.monotonic() - start
    ordered = sorted(latencies)

    def q(p: float) -> float | None:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else None

    return {"sent": len(latencies) + errors, "errors": errors, "seconds": wall,
            "achieved_rate": (len(latencies) + errors) / wall if wall > 0 else 0.0,
            "p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99), "max_ms": ordered[-1] if ordered else None}


def main(argv: list[str]) -> int:
    url, rate, seconds = argv[0], float(argv[1]), float(argv[2])
    print(json.dumps(run(url, rate, seconds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
