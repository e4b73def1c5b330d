"""The docs point at code and tests that exist.

RELIABILITY.md names the test behind every fault row as `U/`, `I/`, `R/` + file[::test]
(tests/unit, tests/integration, tests/reliability); README.md and docs/*.md name modules by
path. A move or rename that leaves such a pointer stale fails here, not in a reader's hands.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITES = {"U": "tests/unit", "I": "tests/integration", "R": "tests/reliability", "C": "tests/conformance"}
TEST_REF = re.compile(r"`([UIRC])/([\w./]+\.py)(?:::(\w+))?")
# A repository path in backticks or a markdown link: exporter/..., bot/..., sandbox/..., bench/..., deploy/..., tests/...
PATH_REF = re.compile(r"(?<![\w/.])((?:exporter|bot|sandbox|bench|deploy|tests|prometheus|alertmanager|grafana)/[\w./-]*"
                      r"\.(?:py|md|ya?ml|json|sh|txt|tmpl))(?![\w])")
DOCS = ["README.md", "RELIABILITY.md", "docs/*.md", "sandbox/README.md"]


def _docs() -> list[Path]:
    found: list[Path] = []
    for pattern in DOCS:
        found.extend(sorted(ROOT.glob(pattern)))
    return found


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_test_named_in_reliability_exists():
    text = (ROOT / "RELIABILITY.md").read_text(encoding="utf-8")
    stale = []
    for suite, name, test in TEST_REF.findall(text):
        path = ROOT / SUITES[suite] / name
        if not path.is_file():
            stale.append(f"{suite}/{name}: no such file")
        elif test and test not in _test_names(path):
            stale.append(f"{suite}/{name}::{test}: no such test")
    assert not stale, "RELIABILITY.md points at tests that do not exist:\n" + "\n".join(sorted(set(stale)))


def test_every_repository_path_in_the_docs_exists():
    stale = []
    for doc in _docs():
        for line_no, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for ref in PATH_REF.findall(line):
                ref = ref.rstrip(".")
                if any(ch in ref for ch in "*{}<>") or ref.endswith("/"):
                    continue
                if not (ROOT / ref).exists():
                    stale.append(f"{doc.relative_to(ROOT)}:{line_no}: {ref}")
    assert not stale, "the docs name paths that do not exist:\n" + "\n".join(stale)
