"""Interim alias of `exporter.calendar.edit` for bot/ until it uses the day-view API
(`from exporter.calendar import toggle_day, CalendarReadOnly`); removed after that."""

from exporter.calendar import CalendarReadOnly, CalendarUnreadable, day_info, set_day, toggle_day

__all__ = ["CalendarReadOnly", "CalendarUnreadable", "day_info", "set_day", "toggle_day"]
