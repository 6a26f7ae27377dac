"""Usage exports: our CSV writer (streamed or to a file) and the background export jobs in every format
(the FOCUS files are billing.usage.focus's).

The CSV columns are a documented contract (docs/finance.md): add columns at the
end, never rename or reorder them.
"""

import csv
import io
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO

from django.conf import settings
from django.core.files.base import File
from django.db.models import QuerySet
from django.utils import timezone

from billing.models import ExportFormat, UsageExport, UsageLineItem
from billing.usage import focus
from billing.usage.cells import CHUNK_ROWS, LineSink, csv_cell
from billing.usage.filter import UsageFilter
from billing.usage.rollups import margin
from gateway.core.money import format_usd
from gateway.core.queue import enqueue_on_commit
from providers.base import TokenUsage

# billing.tasks.usage_export_run, enqueued by name: the tasks module imports this one.
EXPORT_TASK = "billing.tasks.usage_export_run"

# Each CSV column and the database value behind it, in order.
_COLUMN_SOURCES = (
    ("request_id", "request_id"),
    ("time", "created_at"),
    ("organization", "organization__slug"),
    ("key_prefix", "api_key__prefix"),
    ("key_name", "api_key__name"),
    ("end_user", "end_user"),
    ("provider", "provider"),
    ("model", "model"),
    ("size", "size"),
    ("quality", "quality"),
    ("n", "n"),
    ("unit_price", "unit_price"),
    ("cost", "cost"),
    ("currency", "currency"),
    ("status", "status"),
    ("error_code", "error_code"),
    ("latency_ms", "latency_ms"),
    ("cached", "details__cached"),
    ("provider_cost", "provider_cost"),
)
# A line item's fields as the CSV and the usage API both name and order them; `margin` is worked out
# from cost and provider_cost (billing.usage.rollups.margin).
LINE_COLUMNS = (*(column for column, _ in _COLUMN_SOURCES), "margin")
# Then one column per token bucket (text_input_tokens, …), from the line item's `tokens`: empty for a
# model priced per image.
TOKEN_COLUMNS = tuple(f"{bucket}_tokens" for bucket in TokenUsage.BUCKETS)
# Then the columns added since, in the order they were added: the project the request was made in
# (empty outside any project).
LATER_COLUMNS = ("project",)
CSV_COLUMNS = LINE_COLUMNS + TOKEN_COLUMNS + LATER_COLUMNS
_VALUES = (*(source for _, source in _COLUMN_SOURCES), "tokens", "project__name")


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cached(value) -> str:
    return "" if value is None else ("true" if value is True else "false" if value is False else csv_cell(str(value)))


def _token_cells(tokens: dict | None) -> list[str]:
    """One cell per bucket: the count the provider reported, empty where it reported none."""
    tokens = tokens or {}
    return [_count(tokens.get(bucket)) for bucket in TokenUsage.BUCKETS]


def _count(value) -> str:
    # Counts are written by the ledger as ints; anything else stored there is text, and escaped as text.
    return "" if value is None else str(value) if isinstance(value, int) else csv_cell(str(value))


def _csv_record(row: tuple) -> list[str]:
    (request_id, created_at, org, prefix, key_name, end_user, provider, model, size, quality, n, unit_price, cost,
     currency, status, error_code, latency_ms, cached, provider_cost, tokens, project) = row  # fmt: skip
    return [
        request_id,
        _utc_iso(created_at),
        org,
        prefix or "",
        csv_cell(key_name or ""),
        csv_cell(end_user),
        csv_cell(provider),
        csv_cell(model),
        csv_cell(size),
        csv_cell(quality),
        str(n),
        format_usd(unit_price),
        format_usd(cost),
        currency,
        status,
        csv_cell(error_code),
        str(latency_ms),
        _cached(cached),
        format_usd(provider_cost),
        format_usd(margin(cost=cost, provider_cost=provider_cost)),
        *_token_cells(tokens),
        csv_cell(project or ""),
    ]


def usage_csv_lines(items: QuerySet[UsageLineItem]) -> Iterator[str]:
    """The header and one CSV line per item, oldest first, read through a server-side cursor."""
    writer = csv.writer(LineSink(), lineterminator="\r\n")
    yield writer.writerow(CSV_COLUMNS)
    rows = items.order_by("created_at", "id").values_list(*_VALUES).iterator(chunk_size=CHUNK_ROWS)
    for row in rows:
        yield writer.writerow(_csv_record(row))


def usage_csv_write(*, items: QuerySet[UsageLineItem], output: IO[str], on_progress=None) -> int:
    """Write the CSV to a text file in batches; returns the number of data rows.

    `on_progress(rows_written)` is called after each batch of CHUNK_ROWS rows.
    """
    rows = -1  # the header is not a row
    batch: list[str] = []
    for line in usage_csv_lines(items):
        batch.append(line)
        rows += 1
        if len(batch) >= CHUNK_ROWS:
            output.write("".join(batch))
            batch.clear()
            if on_progress is not None:
                on_progress(rows)
    output.write("".join(batch))
    return rows


def export_is_large(*, items: QuerySet[UsageLineItem]) -> bool:
    """Whether the export is over the threshold and goes to a background job instead of streaming."""
    threshold = settings.USAGE_EXPORT_ASYNC_THRESHOLD
    # Counting up to threshold + 1 rows is all the decision needs, however large the range.
    return items[: threshold + 1].count() > threshold


def export_filename(*, organization, usage_filter: UsageFilter, export_format: str) -> str:
    """`usage-…csv` for our CSV, `focus-….csv|parquet` for FOCUS: the scope and the range it covers."""
    kind = "usage" if export_format == ExportFormat.CSV else "focus"
    scope = organization.slug if organization else "all"
    extension = focus.file_extension(export_format)
    return f"{kind}-{scope}-{usage_filter.date_from}-{usage_filter.date_to}.{extension}"


def usage_export_create(
    *, usage_filter: UsageFilter, requested_by, export_format: str = ExportFormat.CSV
) -> UsageExport:
    """Queue a background export of the filter's scope; the Celery job starts once this transaction commits."""
    export = UsageExport.objects.create(
        organization_id=usage_filter.organization_id,
        requested_by=requested_by,
        filters=usage_filter.as_params(),
        format=export_format,
    )
    enqueue_on_commit(EXPORT_TASK, export.pk)
    return export


def usage_export_run(*, export_id: int) -> UsageExport:
    """Produce an export's file, recording progress as it goes; the file expires after USAGE_EXPORT_TTL_DAYS."""
    claimed = UsageExport.objects.filter(pk=export_id, status=UsageExport.Status.QUEUED).update(
        status=UsageExport.Status.RUNNING
    )
    export = UsageExport.objects.select_related("organization").get(pk=export_id)
    if not claimed:
        # Another worker has it (or it already ran): a redelivered task must not write the file twice.
        return export
    usage_filter = UsageFilter.from_params(export.filters, organization_id=export.organization_id)
    is_focus = export.format != ExportFormat.CSV
    items = usage_filter.charges() if is_focus else usage_filter.line_items()
    UsageExport.objects.filter(pk=export_id).update(rows_total=items.count())

    def progress(rows: int) -> None:
        UsageExport.objects.filter(pk=export_id).update(rows_written=rows)

    name = export_filename(organization=export.organization, usage_filter=usage_filter, export_format=export.format)
    try:
        # A temporary file on disk: a million-row export never sits in memory.
        with tempfile.TemporaryFile() as raw:
            if is_focus:
                rows = focus.focus_write(
                    export_format=export.format, scope=focus.FocusScope(usage_filter), output=raw, on_progress=progress
                )
            else:
                text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                rows = usage_csv_write(items=items, output=text, on_progress=progress)
                text.flush()
                text.detach()
            raw.seek(0)
            export.file.save(name, File(raw), save=False)
    except Exception as exc:
        UsageExport.objects.filter(pk=export_id).update(
            status=UsageExport.Status.FAILED, error=str(exc)[:500], finished_at=timezone.now()
        )
        raise
    now = timezone.now()
    export.status = UsageExport.Status.DONE
    export.rows_total = rows
    export.rows_written = rows
    export.finished_at = now
    export.expires_at = now + timedelta(days=settings.USAGE_EXPORT_TTL_DAYS)
    export.save(update_fields=["status", "rows_total", "rows_written", "file", "finished_at", "expires_at"])
    return export


def usage_exports_expire(*, now: datetime | None = None) -> int:
    """Delete the files of expired exports and the exports themselves; returns how many."""
    now = now or timezone.now()
    expired = list(UsageExport.objects.filter(expires_at__lte=now))
    for export in expired:
        if export.file:
            export.file.delete(save=False)
        export.delete()
    return len(expired)


def csv_rows_to_text(rows: Iterable[Iterable[str]]) -> Iterator[str]:
    """CSV lines for already-escaped rows (statements)."""
    writer = csv.writer(LineSink(), lineterminator="\r\n")
    for row in rows:
        yield writer.writerow(list(row))
