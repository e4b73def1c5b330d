"""calendar.yml texts for tests: the design's default sessions plus a test's own days."""

from __future__ import annotations

import textwrap

BASE_CALENDAR = """\
timezone: Europe/Moscow
weekend_default: holiday
markets:
  eq: {sessions: [["10:00", "18:40"], ["19:05", "23:50"]]}
  fx: {sessions: [["07:00", "19:00"]]}
  fo: {sessions: [["09:00", "23:50"]]}
checks:
  hi2_deadline: {eq: "19:01", fx: "19:31", fo: "19:31"}
"""


def calendar_text(days: str = "", comment: str = "") -> str:
    """BASE_CALENDAR, after an optional `# comment` line, with `days` (YAML lines of the
    `days:` mapping, any indentation) appended under `days:`."""
    text = (f"# {comment}\n" if comment else "") + BASE_CALENDAR
    if days:
        text += "days:\n" + textwrap.indent(textwrap.dedent(days).strip("\n"), "  ") + "\n"
    return text
