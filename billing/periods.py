"""UTC days, months and cap periods: every boundary the product speaks of is computed here.

Times are stored in UTC and every day or month in the product (usage filters, statements,
rollups, spend caps) is a UTC one, so a range of days is [midnight of the first, midnight
after the last).
"""

from datetime import UTC, date, datetime, time, timedelta

# The periods a spend cap counts over (billing.models.SpendLimit.Period).
DAY = "day"
MONTH = "month"
TOTAL = "total"
# The one period start of a "total" cap.
TOTAL_PERIOD_START = date(1970, 1, 1)


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of `day`."""
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_end(day: date) -> datetime:
    """Midnight UTC after `day`: the exclusive end of its instants (the last instant there is after 9999-12-31)."""
    if day == date.max:
        return datetime.max.replace(tzinfo=UTC)
    return day_start(day + timedelta(days=1))


def days_span(first: date, last: date) -> tuple[datetime, datetime]:
    """The instants of the days `first` to `last`, both included: (midnight of the first, midnight after the last)."""
    return day_start(first), day_end(last)


def month_first(day: date) -> date:
    return day.replace(day=1)


def month_last(day: date) -> date:
    return next_month_first(day) - timedelta(days=1)


def next_month_first(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def today_utc(now: datetime) -> date:
    return now.astimezone(UTC).date()


def period_start(period: str, now: datetime) -> date:
    """The first day of the cap period that `now` falls in (TOTAL_PERIOD_START for a total cap)."""
    today = today_utc(now)
    if period == DAY:
        return today
    if period == MONTH:
        return month_first(today)
    return TOTAL_PERIOD_START


def period_reset(period: str, start: date) -> datetime | None:
    """When a period that began on `start` ends and its cap starts afresh, or None for a total cap."""
    if period == DAY:
        return day_end(start)
    if period == MONTH:
        return day_start(next_month_first(start))
    return None
