"""Named ranges of UTC days ("7 days", "last month"): the usage page's presets and the overview chart's ranges.

Both pages resolve a preset here, so "this month" covers the same days wherever it is offered.
"""

from dataclasses import dataclass
from datetime import date, timedelta

from billing.periods import month_first


@dataclass(frozen=True)
class DayRange:
    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def _last_days(count: int):
    return lambda today: DayRange(today - timedelta(days=count - 1), today)


def _this_month(today: date) -> DayRange:
    return DayRange(month_first(today), today)


def _last_month(today: date) -> DayRange:
    last = month_first(today) - timedelta(days=1)
    return DayRange(month_first(last), last)


# name → (label, the days it covers as of `today`), in the order the pages offer them.
PRESETS = {
    "today": ("Today", _last_days(1)),
    "7d": ("7 days", _last_days(7)),
    "30d": ("30 days", _last_days(30)),
    "90d": ("90 days", _last_days(90)),
    "this-month": ("This month", _this_month),
    "last-month": ("Last month", _last_month),
}


def preset_range(name: str, *, today: date) -> DayRange:
    """The days of preset `name` (a key of PRESETS) as of `today`, both included."""
    return PRESETS[name][1](today)


def preset_choices(names: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(name, PRESETS[name][0]) for name in names]
