"""The trading calendar as a package (which market trades when, per `calendar.yml`).

    model       Calendar, DayOverride, Session: day rules, sessions, buckets (no I/O)
    yamldoc     the one YAML library (ruamel round-trip, YAML 1.2) for read and write
    fileformat  calendar.yml <-> model: validation naming the key, the YAML of a day
    store       CalendarStore: the last good calendar, hot-reloaded
    edit        locked, atomic, comment-keeping writes decided on the model
    views       day views for people (the bot)
    issreader   the ISS calendar routes -> IssDay / session hours (library)
    merge       ISS days -> day entries (library)
    sync        calendar-sync = issreader + merge + edit
    syncjob     the exporter's daily sync job and its collector
    sync_cli    the calendar-sync subcommand (dispatched by exporter/cli.py)

Everything a reader of the calendar needs is importable from `exporter.calendar`; the
sync parts (they talk to ISS) are imported from their modules.
"""

from .edit import (
    EditOutcome,
    Toggled,
    apply_change,
    apply_edit,
    edit_calendar,
    set_day,
    toggle,
    toggle_day,
    write_target,
)
from .fileformat import load_calendar, parse_calendar, parse_calendar_text
from .model import (
    BUCKET_SECONDS,
    DEFAULT_TIMEZONE,
    MARKETS,
    SOURCES,
    STATUSES,
    Calendar,
    CalendarError,
    CalendarReadOnly,
    CalendarUnreadable,
    DayOverride,
    Session,
    SessionTimes,
)
from .store import CalendarStore
from .views import DayView, MarketNow, day_info, day_view, market_now, month_days, trading_markets
from .yamldoc import clean_comment_text

__all__ = ["BUCKET_SECONDS", "DEFAULT_TIMEZONE", "MARKETS", "SOURCES", "STATUSES", "Calendar", "CalendarError",
           "CalendarReadOnly", "CalendarStore", "CalendarUnreadable", "DayOverride", "DayView", "EditOutcome",
           "MarketNow", "Session", "SessionTimes", "Toggled", "apply_change", "apply_edit", "clean_comment_text", "day_info",
           "day_view", "edit_calendar", "load_calendar", "market_now", "month_days", "parse_calendar",
           "parse_calendar_text", "set_day", "toggle", "toggle_day", "trading_markets", "write_target"]
