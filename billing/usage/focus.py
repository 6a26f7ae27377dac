"""Usage in the FinOps FOCUS 1.2 columns, as CSV or Parquet, on demand and as a daily drop into storage.

One row per charge: a usage line item the organization is billed for (UsageFilter.charges), or a
credit note issued in the range (ChargeCategory "Credit", negative cost). Every column, its type and
why a column is null: docs/finance.md, "FOCUS". Rows are built and written in batches of CHUNK_ROWS,
so a large export never holds the whole table in memory.
"""

import csv
import io
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import IO, Any

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import storages
from django.db.models import Q, QuerySet

from accounts.models import Organization
from billing.models import ExportFormat, Invoice, InvoiceIssuer
from billing.periods import day_start, month_first, next_month_first
from billing.usage.cells import CHUNK_ROWS, LineSink, csv_cell
from billing.usage.filter import UsageFilter
from gateway.core.money import CURRENCY, MONEY_PLACES

FOCUS_VERSION = "1.2"
# The gateway is the provider the organization buys from; the upstream vendor is the publisher.
PROVIDER_NAME = "imagegate"
SERVICE_NAME = "Image generation"
SERVICE_CATEGORY = "AI and Machine Learning"
SERVICE_SUBCATEGORY = "Generative AI"
STORAGE_ALIAS = "focus"
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}

# Column kinds; their Parquet types are in parquet_schema().
MONEY, QUANTITY, TIMESTAMP, TEXT, COUNT = "money", "quantity", "timestamp", "text", "count"

# Every column in order: the FOCUS 1.2 columns (alphabetical, as the spec lists them), then ours (x_).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("BilledCost", MONEY),
    ("BillingAccountId", TEXT),
    ("BillingAccountName", TEXT),
    ("BillingCurrency", TEXT),
    ("BillingPeriodEnd", TIMESTAMP),
    ("BillingPeriodStart", TIMESTAMP),
    ("ChargeCategory", TEXT),
    ("ChargeClass", TEXT),
    ("ChargeDescription", TEXT),
    ("ChargeFrequency", TEXT),
    ("ChargePeriodEnd", TIMESTAMP),
    ("ChargePeriodStart", TIMESTAMP),
    ("ConsumedQuantity", QUANTITY),
    ("ConsumedUnit", TEXT),
    ("ContractedCost", MONEY),
    ("ContractedUnitPrice", MONEY),
    ("EffectiveCost", MONEY),
    ("InvoiceId", TEXT),
    ("InvoiceIssuerName", TEXT),
    ("ListCost", MONEY),
    ("ListUnitPrice", MONEY),
    ("PricingCategory", TEXT),
    ("PricingQuantity", QUANTITY),
    ("PricingUnit", TEXT),
    ("ProviderName", TEXT),
    ("PublisherName", TEXT),
    ("RegionId", TEXT),
    ("RegionName", TEXT),
    ("ResourceId", TEXT),
    ("ServiceCategory", TEXT),
    ("ServiceName", TEXT),
    ("ServiceSubcategory", TEXT),
    ("SkuId", TEXT),
    ("SkuPriceId", TEXT),
    ("SubAccountId", TEXT),
    ("SubAccountName", TEXT),
    ("Tags", TEXT),
    ("x_ApiKeyPrefix", TEXT),
    ("x_Project", TEXT),
    ("x_EndUser", TEXT),
    ("x_RequestId", TEXT),
    ("x_RequestTime", TIMESTAMP),
    ("x_Organization", TEXT),
    ("x_Model", TEXT),
    ("x_Size", TEXT),
    ("x_Quality", TEXT),
    ("x_ImagesRequested", COUNT),
    ("x_Status", TEXT),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)


@cache
def parquet_schema() -> Any:
    """The Parquet schema: money and quantities exact to the micro-unit, times in UTC.

    pyarrow is imported here, not at the top: it adds about 70 MB to every process that imports it, and
    every web worker imports this module (through the tasks) without ever writing Parquet.
    """
    import pyarrow as pa

    types = {
        MONEY: pa.decimal128(18, MONEY_PLACES),
        QUANTITY: pa.decimal128(18, MONEY_PLACES),
        TIMESTAMP: pa.timestamp("us", tz="UTC"),
        TEXT: pa.string(),
        COUNT: pa.int32(),
    }
    return pa.schema([pa.field(name, types[kind]) for name, kind in COLUMNS], metadata={"focus_version": FOCUS_VERSION})


_LINE_VALUES = (
    "request_id", "created_at", "organization_id", "organization__slug", "organization__name", "api_key__prefix",
    "api_key__name", "end_user", "provider", "model", "size", "quality", "n", "unit_price", "cost", "status", "tokens",
    "project__name",
)  # fmt: skip


@dataclass(frozen=True)
class FocusScope:
    """What a FOCUS export covers: the charges of a usage filter, and the credit notes issued in its days.

    A filter narrowed to part of the usage (a model, a key, an end user, a status) has no credit notes:
    a credit note corrects an invoice, not a model's or a key's share of it.
    """

    usage_filter: UsageFilter

    def credit_notes(self) -> QuerySet[Invoice]:
        usage_filter = self.usage_filter
        notes = Invoice.objects.filter(kind=Invoice.Kind.CREDIT_NOTE).select_related("organization", "issuer")
        if usage_filter.narrowed:
            return notes.none()
        if usage_filter.organization_id is not None:
            notes = notes.filter(organization_id=usage_filter.organization_id)
        if usage_filter.date_from:
            notes = notes.filter(issue_date__gte=usage_filter.date_from)
        if usage_filter.date_to:
            notes = notes.filter(issue_date__lte=usage_filter.date_to)
        return notes.order_by("issue_date", "id")

    def invoice_numbers(self) -> dict[tuple[int, date], str]:
        """The number of each invoice issued for a month of the range, by (organization id, month's first day)."""
        invoices = Invoice.objects.filter(kind=Invoice.Kind.INVOICE)
        if self.usage_filter.organization_id is not None:
            invoices = invoices.filter(organization_id=self.usage_filter.organization_id)
        if self.usage_filter.date_from:
            invoices = invoices.filter(period_start__gte=month_first(self.usage_filter.date_from))
        if self.usage_filter.date_to:
            invoices = invoices.filter(period_start__lte=self.usage_filter.date_to)
        rows = invoices.values_list("organization_id", "period_start", "number")
        return {(org_id, period_start): number for org_id, period_start, number in rows}


def _period_bounds(day: date) -> tuple[datetime, datetime]:
    """The billing period (the UTC month) a day is billed in, [start, end)."""
    first = month_first(day)
    return day_start(first), day_start(next_month_first(first))


def _pricing(*, n: int, unit_price: Decimal, cost: Decimal, tokens: dict) -> tuple[Decimal, str, Decimal]:
    """(PricingQuantity, PricingUnit, unit price) such that quantity × unit price is the cost exactly.

    A model priced per image bills whole images at the line's unit price; a model priced per token
    (or a cost that is not a whole number of images) is billed as one request at its cost.
    """
    if not tokens:
        if unit_price == 0 and cost == 0:
            return Decimal(n), "Images", unit_price
        if unit_price > 0 and cost % unit_price == 0:
            return cost / unit_price, "Images", unit_price
    return Decimal(1), "Requests", cost


def _issuer_name() -> str:
    issuer = InvoiceIssuer.objects.order_by("pk").first()
    return issuer.name if issuer else PROVIDER_NAME


def _usage_row(row: tuple, *, issuer: str, invoice_numbers: dict) -> dict:
    (request_id, created_at, org_id, slug, org_name, prefix, key_name, end_user, provider, model, size, quality, n,
     unit_price, cost, status, tokens, project) = row  # fmt: skip
    quantity, unit, price = _pricing(n=n, unit_price=unit_price, cost=cost, tokens=tokens or {})
    period_start, period_end = _period_bounds(created_at.astimezone(UTC).date())
    hour = created_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    sku = f"{model}|{size}|{quality}"
    tags = {
        name: value
        for name, value in (("api_key", key_name or ""), ("project", project or ""), ("end_user", end_user))
        if value
    }
    return {
        "BilledCost": cost,
        "BillingAccountId": slug,
        "BillingAccountName": org_name,
        "BillingCurrency": CURRENCY,
        "BillingPeriodEnd": period_end,
        "BillingPeriodStart": period_start,
        "ChargeCategory": "Usage",
        "ChargeClass": None,
        "ChargeDescription": " ".join(part for part in (model, size, quality) if part) + f" via {provider}",
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": hour + timedelta(hours=1),
        "ChargePeriodStart": hour,
        "ConsumedQuantity": quantity if unit == "Images" else Decimal(n),
        "ConsumedUnit": "Images",
        "ContractedCost": cost,
        "ContractedUnitPrice": price,
        "EffectiveCost": cost,
        "InvoiceId": invoice_numbers.get((org_id, period_start.date())),
        "InvoiceIssuerName": issuer,
        "ListCost": cost,
        "ListUnitPrice": price,
        "PricingCategory": "Standard",
        "PricingQuantity": quantity,
        "PricingUnit": unit,
        "ProviderName": PROVIDER_NAME,
        "PublisherName": provider or PROVIDER_NAME,
        "RegionId": None,
        "RegionName": None,
        "ResourceId": request_id,
        "ServiceCategory": SERVICE_CATEGORY,
        "ServiceName": SERVICE_NAME,
        "ServiceSubcategory": SERVICE_SUBCATEGORY,
        "SkuId": sku,
        "SkuPriceId": f"{sku}|{price}",
        "SubAccountId": prefix,
        "SubAccountName": key_name,
        "Tags": json.dumps(tags, sort_keys=True),
        "x_ApiKeyPrefix": prefix,
        "x_Project": project,
        "x_EndUser": end_user or None,
        "x_RequestId": request_id,
        "x_RequestTime": created_at.astimezone(UTC),
        "x_Organization": slug,
        "x_Model": model,
        "x_Size": size or None,
        "x_Quality": quality or None,
        "x_ImagesRequested": n,
        "x_Status": status,
    }


def _credit_row(note: Invoice) -> dict:
    """A credit note: a correction of an invoiced period, given back as a negative charge (before tax)."""
    amount = -abs(note.subtotal)
    period_start, period_end = _period_bounds(note.issue_date)
    description = f"Credit note {note.number}" + (f": {note.reason}" if note.reason else "")
    return {
        **dict.fromkeys(COLUMN_NAMES),
        "BilledCost": amount,
        "BillingAccountId": note.organization.slug,
        "BillingAccountName": note.organization.name,
        "BillingCurrency": note.currency,
        "BillingPeriodEnd": period_end,
        "BillingPeriodStart": period_start,
        "ChargeCategory": "Credit",
        "ChargeClass": "Correction" if note.corrects_id else None,
        "ChargeDescription": description,
        "ChargeFrequency": "One-Time",
        "ChargePeriodEnd": day_start(note.period_end),
        "ChargePeriodStart": day_start(note.period_start),
        "ContractedCost": amount,
        "EffectiveCost": amount,
        "InvoiceId": note.number,
        "InvoiceIssuerName": note.issuer.name,
        "ListCost": amount,
        "ProviderName": PROVIDER_NAME,
        "PublisherName": PROVIDER_NAME,
        "ServiceCategory": SERVICE_CATEGORY,
        "ServiceName": SERVICE_NAME,
        "ServiceSubcategory": SERVICE_SUBCATEGORY,
        "Tags": "{}",
        "x_Organization": note.organization.slug,
    }


def focus_row_batches(scope: FocusScope) -> Iterator[list[dict]]:
    """The rows of the scope in batches of up to CHUNK_ROWS: its usage charges oldest first, then its credits."""
    items = scope.usage_filter.charges()
    issuer = _issuer_name()
    invoice_numbers = scope.invoice_numbers()
    batch: list[dict] = []
    rows = items.order_by("created_at", "id").values_list(*_LINE_VALUES).iterator(chunk_size=CHUNK_ROWS)
    for row in rows:
        batch.append(_usage_row(row, issuer=issuer, invoice_numbers=invoice_numbers))
        if len(batch) >= CHUNK_ROWS:
            yield batch
            batch = []
    batch.extend(_credit_row(note) for note in scope.credit_notes().iterator(chunk_size=CHUNK_ROWS))
    if batch:
        yield batch


# --- Writers ---------------------------------------------------------------------


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, int):
        return str(value)
    return csv_cell(value)


def _csv_record(row: dict) -> list[str]:
    return [_csv_value(row[name]) for name in COLUMN_NAMES]


def focus_csv_lines(scope: FocusScope) -> Iterator[str]:
    """The header, then the rows a batch at a time; nulls are empty cells, text cells are formula-escaped."""
    writer = csv.writer(LineSink(), lineterminator="\r\n")
    yield writer.writerow(COLUMN_NAMES)
    for batch in focus_row_batches(scope):
        yield "".join(writer.writerow(_csv_record(row)) for row in batch)


def focus_csv_write(*, scope: FocusScope, output: IO[str], on_progress=None) -> int:
    """Write the CSV to a text file; returns the number of rows. `on_progress(rows)` after each batch."""
    writer = csv.writer(output, lineterminator="\r\n")
    writer.writerow(COLUMN_NAMES)
    rows = 0
    for batch in focus_row_batches(scope):
        writer.writerows(_csv_record(row) for row in batch)
        rows += len(batch)
        if on_progress is not None:
            on_progress(rows)
    return rows


def focus_parquet_write(*, scope: FocusScope, output: IO[bytes], on_progress=None) -> int:
    """Write Parquet (parquet_schema()) to a binary file, one row group per batch; returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    rows = 0
    with pq.ParquetWriter(output, schema, compression="zstd") as writer:
        for batch in focus_row_batches(scope):
            writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
            rows += len(batch)
            if on_progress is not None:
                on_progress(rows)
    return rows


def focus_write(*, export_format: str, scope: FocusScope, output: IO[bytes], on_progress=None) -> int:
    """Write a FOCUS export (ExportFormat.FOCUS_CSV or FOCUS_PARQUET) to a binary file; returns the rows."""
    if export_format == ExportFormat.FOCUS_PARQUET:
        return focus_parquet_write(scope=scope, output=output, on_progress=on_progress)
    text = io.TextIOWrapper(output, encoding="utf-8", newline="")
    rows = focus_csv_write(scope=scope, output=text, on_progress=on_progress)
    text.flush()
    # Hand the binary file back to the caller: a collected TextIOWrapper would close it.
    text.detach()
    return rows


def file_extension(export_format: str) -> str:
    return "parquet" if export_format == ExportFormat.FOCUS_PARQUET else "csv"


# --- The daily drop ----------------------------------------------------------------


def focus_drop_name(*, organization: Organization, day: date, extension: str) -> str:
    return f"{organization.slug}/{day:%Y}/{day:%m}/{day.isoformat()}.{extension}"


def focus_drop_day(*, day: date, organizations: Iterable[Organization] | None = None) -> list[str]:
    """Write one day's FOCUS file per organization with charges or credit notes that day into the `focus` storage.

    Rewriting a day replaces its file. Parquet always, CSV beside it when FOCUS_DROP_CSV is on.
    Returns the names written.
    """
    storage = storages[STORAGE_ALIAS]
    formats = [ExportFormat.FOCUS_PARQUET] + ([ExportFormat.FOCUS_CSV] if settings.FOCUS_DROP_CSV else [])
    if organizations is None:
        everyone = FocusScope(UsageFilter(organization_id=None, date_from=day, date_to=day))
        with_rows = Q(pk__in=everyone.usage_filter.charges().values("organization_id")) | Q(
            pk__in=everyone.credit_notes().values("organization_id")
        )
        organizations = Organization.objects.filter(with_rows).order_by("slug")
    written = []
    for organization in organizations:
        scope = FocusScope(UsageFilter(organization_id=organization.pk, date_from=day, date_to=day))
        for export_format in formats:
            name = focus_drop_name(organization=organization, day=day, extension=file_extension(export_format))
            with tempfile.TemporaryFile() as raw:
                focus_write(export_format=export_format, scope=scope, output=raw)
                raw.seek(0)
                # Delete first: a file storage would otherwise save beside the old file under a new name.
                storage.delete(name)
                written.append(storage.save(name, File(raw)))
    return written
