"""When to poll next: the data's own rhythm, as pure functions of the calendar and "now".

A bucket labelled T (its END) is published a few seconds after T. So a pair is polled
once at T + publish_offset; only while that bucket is late is it retried every
`interval`, plus once just before the bucket would count as missing (T + grace) and once
just before the lag would cross the alert threshold. Once it counts as missing, the next
poll is the next bucket's (a stopped feed costs three polls a bucket, not one a minute).
Outside sessions nothing is polled until the next session's first bucket is due.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from .calendar import BUCKET_SECONDS, Calendar
from .checks import lag_reaches

MIN_STEP = timedelta(seconds=1)
# Poll this long before a deadline (missing-bucket grace, lag threshold), so the last
# chance to see the data happens before the alert condition, not after it.
DEADLINE_MARGIN = timedelta(seconds=5)
DAILY_LEAD = timedelta(minutes=15)        # start looking for a daily dataset before its deadline
DAILY_SLOW_AFTER = timedelta(minutes=30)  # then poll 5x less often while it stays missing
FAR_FUTURE = timedelta(hours=6)         # re-plan at least this often (calendar edits)
FUTURE_SLACK = timedelta(seconds=60)    # a bucket ending later than now + this is not published yet


@dataclass(frozen=True)
class RhythmParams:
    offset: timedelta      # first poll of bucket T at T + offset
    grace: timedelta       # T is missing once now > T + grace
    interval: timedelta    # retry cadence while a bucket is late
    threshold: timedelta   # lag alert threshold (DELAY)

    @classmethod
    def from_seconds(cls, offset: float, grace: float, interval: float, threshold: float) -> RhythmParams:
        return cls(timedelta(seconds=offset), timedelta(seconds=grace), timedelta(seconds=interval),
                   timedelta(seconds=threshold))


def first_pending_bucket(calendar: Calendar, market: str, now: datetime, last_seen: float | None,
                         params: RhythmParams) -> datetime | None:
    """The bucket to chase: the earliest of today after the newest seen one, skipping
    sessions long over, and skipping a bucket that already counts as missing (its grace has
    run out) when a later bucket of its session is still to come: polling faster than the
    data's rhythm for a missing bucket shows nothing new (the hole appears on the scrape
    after its grace either way; a late row is still read by the next bucket's poll).

    A "seen" bucket that cannot have been published yet (its end later than now + 60 s: a
    bad row that slipped through) is ignored, so it never moves the next poll hours ahead."""
    step = timedelta(seconds=BUCKET_SECONDS)
    if last_seen is not None and last_seen > now.timestamp() + FUTURE_SLACK.total_seconds():
        last_seen = None
    for session in calendar.sessions(market, now.date()):
        if now > session.end + params.grace + 2 * params.interval:
            continue  # that session is over: stop chasing its buckets
        bucket = session.start + step
        while bucket <= session.end:
            if last_seen is None or bucket.timestamp() > last_seen + 0.5:
                window_open = now < bucket + params.grace - DEADLINE_MARGIN
                if window_open or bucket + step > session.end:
                    return bucket
            bucket += step
    return None


def next_intraday_poll(calendar: Calendar, market: str, now: datetime, last_seen: float | None,
                       last_systime: float | None, params: RhythmParams) -> datetime:
    """Next poll moment of an intraday dataset of `market`."""
    bucket = first_pending_bucket(calendar, market, now, last_seen, params)
    if bucket is None:
        upcoming = calendar.next_session_start(market, now)
        if upcoming is None:
            return now + FAR_FUTURE
        return min(upcoming + timedelta(seconds=BUCKET_SECONDS) + params.offset, now + FAR_FUTURE)
    first_try = bucket + params.offset
    if now < first_try:
        candidates = [first_try]
    else:
        candidates = [now + params.interval]
        before_missing = bucket + params.grace - DEADLINE_MARGIN
        if before_missing > now:
            candidates.append(before_missing)
    session = calendar.current_session(market, now)
    if session is not None:
        reaches = lag_reaches(params.threshold.total_seconds(), last_systime, session.start.timestamp())
        before_threshold = datetime.fromtimestamp(reaches, now.tzinfo) - 2 * DEADLINE_MARGIN
        if before_threshold > now:
            candidates.append(before_threshold)
    return max(min(candidates), now + MIN_STEP)


def next_daily_poll(deadline_of: Callable[[date], datetime | None], now: datetime, present_today: bool,
                    params: RhythmParams) -> datetime:
    """A daily dataset (hi2) is published once a day: look for it from shortly before the
    day's deadline (`deadline_of(day)`, None on a day without one) until found."""
    deadline = deadline_of(now.date())
    if deadline is not None and not present_today:
        start = deadline - DAILY_LEAD
        if now < start:
            return start
        interval = params.interval if now < deadline + DAILY_SLOW_AFTER else 5 * params.interval
        return now + interval
    for days_ahead in range(1, 31):
        upcoming = deadline_of(now.date() + timedelta(days=days_ahead))
        if upcoming is not None:
            return min(upcoming - DAILY_LEAD, now + FAR_FUTURE)
    return now + FAR_FUTURE
