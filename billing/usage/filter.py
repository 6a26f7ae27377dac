"""The one usage filter: which line items a page, an export, a statement or the usage API covers, and their pages.

Every consumer narrows and pages line items through UsageFilter, so the dashboard, the
CSV, the statements and the API cannot disagree about what a filter selects.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from billing.models import UsageLineItem
from billing.periods import day_end, day_start, month_first, today_utc

MAX_RANGE_DAYS = 366
# The outcomes counted as failures: the overview's recent errors, the rollups' and statements' failures.
FAILED_STATUSES = (UsageLineItem.Status.FAILED, UsageLineItem.Status.REJECTED)


class FilterError(ValueError):
    """A filter the caller must fix; the message says how, `param` which query parameter (when one is at fault)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class UsageFilter:
    """Line items of a scope, optionally within UTC days (both included) and narrowed by their fields.

    The scope: one organization, or every organization when `organization_id` is None (staff only);
    `api_key_id` narrows to one key's own requests (usage API keys with the `own` scope) and
    `created_by_id` to the keys a member created.
    """

    organization_id: int | None
    date_from: date | None = None
    date_to: date | None = None
    key_prefix: str = ""
    model: str = ""
    provider: str = ""
    status: str = ""
    end_user: str = ""
    # A project's name: the requests made while their key was in it.
    project: str = ""
    api_key_id: int | None = None
    created_by_id: int | None = None

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, str],
        *,
        organization_id: int | None,
        api_key_id: int | None = None,
        today: date | None = None,
    ) -> "UsageFilter":
        """The filter from query parameters (`from`, `to`, `model`, `status`, `key`, `end_user`, `project`).

        Without dates the range is the current month up to today; FilterError says what to fix.
        """
        today = today or today_utc(timezone.now())
        date_from = _parse_day(params["from"], "from") if params.get("from") else month_first(today)
        date_to = _parse_day(params["to"], "to") if params.get("to") else today
        if date_from > date_to:
            raise FilterError(f"'from' ({date_from}) must not be after 'to' ({date_to})", "from")
        if (date_to - date_from).days >= MAX_RANGE_DAYS:
            raise FilterError(f"The range covers more than {MAX_RANGE_DAYS} days; split it into smaller ranges")
        status = params.get("status", "").strip()
        if status and status not in UsageLineItem.Status.values:
            raise FilterError(
                f"'status' must be one of {', '.join(UsageLineItem.Status.values)}, got '{status}'", "status"
            )
        return cls(
            organization_id=organization_id,
            api_key_id=api_key_id,
            date_from=date_from,
            date_to=date_to,
            model=params.get("model", "").strip(),
            status=status,
            key_prefix=params.get("key", "").strip(),
            end_user=params.get("end_user", "").strip(),
            project=params.get("project", "").strip(),
        )

    @classmethod
    def from_form(
        cls, cleaned_data: Mapping[str, Any], *, organization_id: int | None, created_by_id: int | None = None
    ) -> "UsageFilter":
        """The filter from the dashboard's UsageFilterForm; without dates it covers all time."""
        return cls(
            organization_id=organization_id,
            created_by_id=created_by_id,
            date_from=cleaned_data["date_from"],
            date_to=cleaned_data["date_to"],
            key_prefix=cleaned_data["key"],
            model=cleaned_data["model"],
            provider=cleaned_data["provider"],
            status=cleaned_data["status"],
            end_user=cleaned_data["end_user"],
            project=cleaned_data.get("project", ""),
        )

    def as_params(self) -> dict[str, str]:
        """The query parameters from_params reads back (what an export job stores in UsageExport.filters)."""
        params: dict[str, str] = {}
        if self.date_from:
            params["from"] = self.date_from.isoformat()
        if self.date_to:
            params["to"] = self.date_to.isoformat()
        for name in ("model", "status", "end_user", "project"):
            if getattr(self, name):
                params[name] = getattr(self, name)
        if self.key_prefix:
            params["key"] = self.key_prefix
        return params

    def line_items(self) -> QuerySet[UsageLineItem]:
        items = UsageLineItem.objects.all()
        if self.organization_id is not None:
            items = items.filter(organization_id=self.organization_id)
        if self.api_key_id is not None:
            items = items.filter(api_key_id=self.api_key_id)
        if self.created_by_id is not None:
            items = items.filter(api_key__created_by_id=self.created_by_id)
        if self.date_from:
            items = items.filter(created_at__gte=day_start(self.date_from))
        if self.date_to:
            items = items.filter(created_at__lt=day_end(self.date_to))
        if self.key_prefix:
            items = items.filter(api_key__prefix=self.key_prefix)
        for name in ("model", "provider", "status", "end_user"):
            if getattr(self, name):
                items = items.filter(**{name: getattr(self, name)})
        if self.project:
            items = items.filter(project__name=self.project)
        return items

    @property
    def narrowed(self) -> bool:
        """Whether the filter selects part of its scope's usage (a model, a key, an end user…), not all of it."""
        return any(
            (
                self.key_prefix,
                self.model,
                self.provider,
                self.status,
                self.end_user,
                self.project,
                self.api_key_id,
                self.created_by_id,
            )
        )

    def charges(self) -> QuerySet[UsageLineItem]:
        """The line items the organization is billed for: every succeeded request (at $0 too, for a free
        model) and anything that cost something. Failed, refused and still pending requests at $0 are
        not charges; leaving them out changes no total, since they cost nothing."""
        return self.line_items().filter(Q(status=UsageLineItem.Status.SUCCEEDED) | Q(cost__gt=0))

    def page(self, *, cursor: str = "", size: int) -> "UsagePage":
        """One page of the line items, newest first (see keyset_page)."""
        return keyset_page(self.line_items().select_related("api_key", "organization"), cursor=cursor, size=size)


def _parse_day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise FilterError(f"'{name}' must be a date as YYYY-MM-DD, got '{text}'", name) from None


# --- Keyset pages ------------------------------------------------------------------

# A cursor with this prefix pages towards newer items (the usage API's `previous` link).
NEWER_PREFIX = "p"
MAX_ID = 2**63 - 1
CURSOR_HINT = "pass a page's `next` or `previous` link as it is, or leave `cursor` out to start from the newest items."


class CursorError(FilterError):
    """A page cursor that was not produced by us (edited by hand or truncated)."""


@dataclass(frozen=True)
class PageCursor:
    """A position in the newest-first order: the pages older than an item, or (`newer`) the ones newer than it.

    Written `<microseconds>-<id>`, with NEWER_PREFIX in front for the newer direction.
    """

    created_at: datetime
    pk: int
    newer: bool = False

    @classmethod
    def at(cls, item: UsageLineItem, *, newer: bool = False) -> "PageCursor":
        return cls(item.created_at, item.pk, newer)

    def encode(self) -> str:
        micros = int(self.created_at.timestamp()) * 1_000_000 + self.created_at.microsecond
        return f"{NEWER_PREFIX if self.newer else ''}{micros}-{self.pk}"

    @classmethod
    def decode(cls, text: str) -> "PageCursor":
        newer = text.startswith(NEWER_PREFIX)
        micros, _, pk = text.removeprefix(NEWER_PREFIX).partition("-")
        # ASCII digits only ("²".isdigit() holds), and an id a bigint column can hold.
        if not all(part.isascii() and part.isdigit() for part in (micros, pk)) or int(pk) > MAX_ID:
            raise CursorError(f"The page cursor is malformed: {CURSOR_HINT}", "cursor")
        seconds, rest = divmod(int(micros), 1_000_000)
        try:
            created_at = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest)
        except (OverflowError, ValueError, OSError):
            raise CursorError(f"The page cursor is out of range: {CURSOR_HINT}", "cursor") from None
        return cls(created_at, int(pk), newer)


@dataclass
class UsagePage:
    items: list[UsageLineItem]
    next_cursor: str | None
    previous_cursor: str | None = None


def keyset_page(items: QuerySet[UsageLineItem], *, cursor: str, size: int) -> UsagePage:
    """One page of `items`, newest first on (created_at, id), from `cursor` on (keyset: page 500 costs what
    page 1 costs). CursorError when the cursor is not one of ours."""
    if not cursor:
        rows = list(items.order_by("-created_at", "-id")[: size + 1])
        return UsagePage(rows[:size], _older_than(rows[size - 1]) if len(rows) > size else None)
    position = PageCursor.decode(cursor)
    # Either way, the plain `lte`/`gte` bound lets PostgreSQL start the index scan at the cursor;
    # the OR then drops the rows of that same instant already shown.
    if position.newer:
        newer = items.filter(created_at__gte=position.created_at).filter(
            Q(created_at__gt=position.created_at) | Q(created_at=position.created_at, pk__gt=position.pk)
        )
        rows = list(newer.order_by("created_at", "id")[: size + 1])
        if len(rows) < size:
            # Less than a page is newer (items were deleted, or the cursor was written by hand): the newest page.
            return keyset_page(items, cursor="", size=size)
        page = rows[:size][::-1]
        return UsagePage(page, _older_than(page[-1]), _newer_than(page[0]) if len(rows) > size else None)
    older = items.filter(created_at__lte=position.created_at).filter(
        Q(created_at__lt=position.created_at) | Q(created_at=position.created_at, pk__lt=position.pk)
    )
    rows = list(older.order_by("-created_at", "-id")[: size + 1])
    page = rows[:size]
    return UsagePage(page, _older_than(page[-1]) if len(rows) > size else None, _newer_than(page[0]) if page else None)


def _older_than(item: UsageLineItem) -> str:
    return PageCursor.at(item).encode()


def _newer_than(item: UsageLineItem) -> str:
    return PageCursor.at(item, newer=True).encode()
