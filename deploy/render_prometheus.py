"""Render a Prometheus configuration for local runs (tests, demo).

`prometheus/prometheus.yml` is the docker-compose form (targets `exporter:9877` and
`alertmanager:9093`, rules next to it). Local runs need loopback targets and absolute rule
paths; everything else (job name, rule files) stays the committed file's.

CLI: python -m deploy.render_prometheus --out FILE --exporter HOST:PORT [--alertmanager HOST:PORT]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_CONFIG = REPO_ROOT / "prometheus" / "prometheus.yml"
RULES_DIR = REPO_ROOT / "prometheus" / "rules"


def render_prometheus_config(
    out_path: str | os.PathLike[str],
    exporter_addr: str | None,
    alertmanager_addr: str | None,
    rules_dir: str | os.PathLike[str] = RULES_DIR,
    scrape_interval: str = "15s",
    eval_interval: str = "15s",
) -> Path:
    """Write a copy of prometheus/prometheus.yml with the given targets; return its path.

    `exporter_addr=None` keeps the job without targets (AlgopackExporterDown fires);
    `alertmanager_addr=None` leaves alerting out (rules are still evaluated).
    """
    config = yaml.safe_load(BASE_CONFIG.read_text(encoding="utf-8"))
    config["global"]["scrape_interval"] = scrape_interval
    config["global"]["evaluation_interval"] = eval_interval
    config["rule_files"] = [str(Path(rules_dir).resolve() / "*.yml")]
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == "algopack"]
    if len(jobs) != 1:
        raise ValueError(f"{BASE_CONFIG} must have exactly one scrape job named algopack")
    jobs[0]["static_configs"] = [{"targets": [exporter_addr] if exporter_addr else []}]
    if alertmanager_addr:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_addr]}]}]}
    else:
        config.pop("alerting", None)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--exporter", required=True, help="HOST:PORT of the exporter")
    parser.add_argument("--alertmanager", default=None, help="HOST:PORT of Alertmanager")
    parser.add_argument("--rules-dir", default=str(RULES_DIR))
    parser.add_argument("--scrape-interval", default="15s")
    parser.add_argument("--eval-interval", default="15s")
    args = parser.parse_args(argv)
    path = render_prometheus_config(args.out, args.exporter, args.alertmanager, args.rules_dir,
                                    args.scrape_interval, args.eval_interval)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
