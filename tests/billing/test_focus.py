"""FOCUS 1.2 exports: the spec's columns and types in CSV and Parquet, totals against the statement, credits,
the export_usage command, the export job and the daily drop into storage."""

import csv
import io
import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import time_machine
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

import billing.usage.focus as focus_module
from billing.models import Invoice, InvoiceIssuer, UsageExport
from billing.tasks import focus_drop_yesterday
from billing.usage.exports import usage_export_run
from billing.usage.filter import UsageFilter
from billing.usage.focus import COLUMN_NAMES, FocusScope, focus_drop_day, focus_parquet_write
from billing.usage.statements import statement_build

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}

# The FOCUS 1.2 columns we emit, as the specification defines them (FOCUS_Spec, specification/columns/*.md):
# data type, whether null is ever allowed, and the allowed values where the spec lists them.
# The first 21 are the spec's Mandatory columns; the rest are Conditional or Recommended ones that apply to us.
DECIMAL, DATETIME, STRING, JSON = "Decimal", "DateTime", "String", "JSON"
SPEC: dict[str, tuple[str, bool, tuple[str, ...]]] = {
    "BilledCost": (DECIMAL, False, ()),
    "BillingAccountId": (STRING, False, ()),
    "BillingAccountName": (STRING, True, ()),
    "BillingCurrency": (STRING, False, ("USD",)),
    "BillingPeriodEnd": (DATETIME, False, ()),
    "BillingPeriodStart": (DATETIME, False, ()),
    "ChargeCategory": (STRING, False, ("Usage", "Purchase", "Tax", "Credit", "Adjustment")),
    "ChargeClass": (STRING, True, ("Correction",)),
    "ChargeDescription": (STRING, True, ()),
    "ChargePeriodEnd": (DATETIME, False, ()),
    "ChargePeriodStart": (DATETIME, False, ()),
    "ContractedCost": (DECIMAL, False, ()),
    "EffectiveCost": (DECIMAL, False, ()),
    "InvoiceIssuerName": (STRING, False, ()),
    "ListCost": (DECIMAL, False, ()),
    "PricingQuantity": (DECIMAL, True, ()),
    "PricingUnit": (STRING, True, ()),
    "ProviderName": (STRING, False, ()),
    "PublisherName": (STRING, False, ()),
    "ServiceCategory": (STRING, False, ("AI and Machine Learning",)),
    "ServiceName": (STRING, False, ()),
    # Conditional and recommended columns.
    "ChargeFrequency": (STRING, False, ("One-Time", "Recurring", "Usage-Based")),
    "ConsumedQuantity": (DECIMAL, True, ()),
    "ConsumedUnit": (STRING, True, ()),
    "ContractedUnitPrice": (DECIMAL, True, ()),
    "InvoiceId": (STRING, True, ()),
    "ListUnitPrice": (DECIMAL, True, ()),
    "PricingCategory": (STRING, True, ("Standard", "Dynamic", "Committed", "Other")),
    "RegionId": (STRING, True, ()),
    "RegionName": (STRING, True, ()),
    "ResourceId": (STRING, True, ()),
    "ServiceSubcategory": (STRING, True, ("Generative AI",)),
    "SkuId": (STRING, True, ()),
    "SkuPriceId": (STRING, True, ()),
    "SubAccountId": (STRING, True, ()),
    "SubAccountName": (STRING, True, ()),
    "Tags": (JSON, True, ()),
}
MANDATORY = list(SPEC)[:21]
# FOCUS DateTimeFormat: ISO 8601 in UTC, "YYYY-MM-DDTHH:mm:ssZ".
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
PARQUET_TYPES = {
    DECIMAL: pa.types.is_decimal,
    DATETIME: lambda t: pa.types.is_timestamp(t) and t.tz == "UTC" and t.unit == "us",
    STRING: pa.types.is_string,
    JSON: pa.types.is_string,
}


def _focus_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _export(client, user, export_format, slug="acme", **params):
    client.force_login(user)
    return client.post(f"/orgs/{slug}/exports/", {**MARCH, "format": export_format, **params})


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def _check_csv_row(row: dict) -> None:
    for column, (kind, nullable, allowed) in SPEC.items():
        cell = row[column]
        if cell == "":
            assert nullable, f"{column} must not be null"
            continue
        if kind == DECIMAL:
            Decimal(cell)
        elif kind == DATETIME:
            assert ISO_UTC.match(cell), f"{column}: {cell!r}"
        elif kind == JSON:
            assert isinstance(json.loads(cell), dict), column
        if allowed:
            assert cell in allowed, f"{column}: {cell!r}"


@pytest.fixture
def credit_note(orgs, people):
    """A February invoice of acme and the credit note of March 5 that corrects part of it."""
    issuer = InvoiceIssuer.objects.create(name="Imagegate Ltd", number_prefix="T")
    common = {"issuer": issuer, "organization": orgs["acme"], "tax_label": "VAT", "tax_rate": Decimal("20")}
    invoice = Invoice.objects.create(
        **common, number="T-0001", issue_date=date(2026, 3, 1), period_start=date(2026, 2, 1),
        period_end=date(2026, 3, 1), subtotal=Decimal("10.00"), tax_amount=Decimal("2.00"), total=Decimal("12.00"),
    )  # fmt: skip
    return Invoice.objects.create(
        **common, number="T-0002", kind=Invoice.Kind.CREDIT_NOTE, corrects=invoice, issue_date=date(2026, 3, 5),
        period_start=date(2026, 2, 1), period_end=date(2026, 3, 1), subtotal=Decimal("1.50"),
        tax_amount=Decimal("0.30"), total=Decimal("1.80"), reason="Images that never arrived",
    )  # fmt: skip


def test_focus_csv_has_every_column_with_the_specs_types_and_values(client, people, ledger):
    response = _export(client, people.fiona, "focus-csv")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="focus-acme-2026-03-01-2026-03-31.csv"' in response["Content-Disposition"]
    rows = _focus_csv(_body(response).decode())
    assert tuple(rows[0].keys()) == COLUMN_NAMES
    assert set(MANDATORY) <= set(COLUMN_NAMES)
    custom = [name for name in COLUMN_NAMES if name not in SPEC]
    assert custom and all(name.startswith("x_") for name in custom)
    for row in rows:
        _check_csv_row(row)

    # The failed request cost nothing and is not a charge: four of acme's five March items.
    assert [row["x_RequestId"] for row in rows] == [item.request_id for item in ledger[:5] if item.status != "failed"]
    first = rows[0]
    assert (first["BilledCost"], first["EffectiveCost"], first["ListCost"], first["ListUnitPrice"]) == (
        "0.040000", "0.040000", "0.040000", "0.040000"
    )  # fmt: skip
    assert (first["ChargeCategory"], first["ChargeClass"], first["BillingCurrency"]) == ("Usage", "", "USD")
    assert (first["BillingPeriodStart"], first["BillingPeriodEnd"]) == ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
    assert (first["ChargePeriodStart"], first["ChargePeriodEnd"]) == ("2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z")
    assert (first["ProviderName"], first["PublisherName"], first["BillingAccountId"]) == ("imagegate", "openai", "acme")
    assert (first["x_ApiKeyPrefix"], first["x_EndUser"], first["x_Project"]) == (ledger[0].api_key.prefix, "u-1", "")
    assert first["SkuId"] == "dall-e-3|1024x1024|standard" and first["ResourceId"] == ledger[0].request_id
    # Three images of dall-e-2 at 0.018: quantity × unit price is the cost, to the micro-dollar.
    second = rows[1]
    assert (second["PricingQuantity"], second["PricingUnit"], second["ListUnitPrice"], second["BilledCost"]) == (
        "3", "Images", "0.018000", "0.054000"
    )  # fmt: skip
    for row in rows:
        assert Decimal(row["PricingQuantity"]) * Decimal(row["ListUnitPrice"]) == Decimal(row["ListCost"])
    # User-supplied text cannot run as a spreadsheet formula.
    assert rows[2]["x_EndUser"] == "'@SUM(A1)" and rows[2]["SubAccountName"] == "'=cmd|' /C calc'!A0"


def test_focus_billed_cost_sums_to_the_statement_total(client, people, ledger):
    statement = statement_build(organization=people.acme, month=date(2026, 3, 1))
    csv_rows = _focus_csv(_body(_export(client, people.fiona, "focus-csv")).decode())
    assert sum(Decimal(row["BilledCost"]) for row in csv_rows) == statement.total.amount == Decimal("0.254002")
    table = pq.read_table(io.BytesIO(_body(_export(client, people.fiona, "focus-parquet"))))
    assert sum(table.column("BilledCost").to_pylist()) == statement.total.amount


def test_focus_parquet_has_the_specs_types_read_back_with_pyarrow(client, people, ledger, credit_note):
    response = _export(client, people.alice, "focus-parquet")
    assert response.status_code == 200 and response["Content-Type"] == "application/vnd.apache.parquet"
    assert 'filename="focus-acme-2026-03-01-2026-03-31.parquet"' in response["Content-Disposition"]
    table = pq.read_table(io.BytesIO(_body(response)))
    assert tuple(table.column_names) == COLUMN_NAMES
    assert table.schema.metadata[b"focus_version"] == b"1.2"
    for column, (kind, nullable, allowed) in SPEC.items():
        field = table.schema.field(column)
        assert PARQUET_TYPES[kind](field.type), f"{column}: {field.type}"
        values = table.column(column).to_pylist()
        if not nullable:
            assert None not in values, column
        if allowed:
            assert {value for value in values if value is not None} <= set(allowed), column
    assert table.schema.field("BilledCost").type == pa.decimal128(18, 6)
    rows = table.to_pylist()
    assert rows[0]["BilledCost"] == Decimal("0.040000")
    assert rows[0]["ChargePeriodStart"] == datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert rows[0]["x_ImagesRequested"] == 1 and rows[0]["x_Status"] == "succeeded"
    assert [row["ChargeCategory"] for row in rows] == ["Usage"] * 4 + ["Credit"]


def test_credit_notes_are_credit_rows_never_mixed_into_usage(client, people, ledger, credit_note):
    # March's own invoice, once issued, is the usage rows' InvoiceId.
    Invoice.objects.create(
        issuer=credit_note.issuer, organization=people.acme, number="T-0003", issue_date=date(2026, 4, 1),
        period_start=date(2026, 3, 1), period_end=date(2026, 4, 1), subtotal=Decimal("0.25"), tax_label="VAT",
        tax_rate=Decimal("20"), tax_amount=Decimal("0.05"), total=Decimal("0.30"),
    )  # fmt: skip
    rows = _focus_csv(_body(_export(client, people.fiona, "focus-csv")).decode())
    for row in rows:
        _check_csv_row(row)
    usage = [row for row in rows if row["ChargeCategory"] == "Usage"]
    credits = [row for row in rows if row["ChargeCategory"] == "Credit"]
    assert len(usage) == 4 and len(credits) == 1
    assert {row["InvoiceId"] for row in usage} == {"T-0003"}
    credit = credits[0]
    # Before tax, like the usage rows (and the statement); negative: money given back.
    assert (credit["BilledCost"], credit["EffectiveCost"], credit["ChargeClass"]) == (
        "-1.500000",
        "-1.500000",
        "Correction",
    )
    assert (credit["InvoiceId"], credit["InvoiceIssuerName"]) == ("T-0002", "Imagegate Ltd")
    assert (credit["ChargePeriodStart"], credit["ChargePeriodEnd"]) == ("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")
    assert (credit["PricingQuantity"], credit["PricingUnit"], credit["x_RequestId"]) == ("", "", "")
    statement = statement_build(organization=people.acme, month=date(2026, 3, 1))
    assert sum(Decimal(row["BilledCost"]) for row in usage) == statement.total.amount
    # A credit note corrects an invoice, not one model's share of it: a narrowed export has none.
    narrowed = _focus_csv(_body(_export(client, people.fiona, "focus-csv", model="dall-e-3")).decode())
    assert {row["ChargeCategory"] for row in narrowed} == {"Usage"} and len(narrowed) == 3
    # Another organization's export has neither acme's usage nor its credit.
    globex = _focus_csv(_body(_export(client, people.charlie, "focus-csv", slug="globex")).decode())
    assert [row["BillingAccountId"] for row in globex] == ["globex"]


def test_a_bad_format_is_a_400_saying_what_to_fix(client, people, ledger):
    response = _export(client, people.alice, "xlsx")
    assert response.status_code == 400
    assert "&#x27;format&#x27; must be one of csv, focus-csv, focus-parquet" in response.content.decode()


def test_outsiders_and_members_get_no_focus_export(client, people, ledger):
    assert _export(client, people.charlie, "focus-parquet").status_code == 404
    assert _export(client, people.bob, "focus-csv").status_code == 403


def test_the_export_job_writes_parquet(client, people, ledger, settings):
    export = UsageExport.objects.create(organization=people.acme, filters=MARCH, format="focus-parquet")
    usage_export_run(export_id=export.pk)
    export.refresh_from_db()
    assert export.status == "done" and export.rows_total == 4 and export.rows_written == 4
    assert export.file.name.endswith("focus-acme-2026-03-01-2026-03-31.parquet")
    client.force_login(people.fiona)
    download = client.get(f"/orgs/acme/exports/{export.pk}/download")
    assert download["Content-Type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(_body(download)))
    assert table.num_rows == 4 and sum(table.column("BilledCost").to_pylist()) == Decimal("0.254002")


def test_a_large_focus_export_is_queued_in_its_format(
    client, people, ledger, settings, django_capture_on_commit_callbacks
):
    settings.USAGE_EXPORT_ASYNC_THRESHOLD = 2
    with django_capture_on_commit_callbacks(execute=False):
        response = _export(client, people.fiona, "focus-csv")
    assert response.status_code == 302
    export = UsageExport.objects.get()
    assert export.format == "focus-csv" and export.status == "queued"
    export = usage_export_run(export_id=export.pk)
    assert export.file.name.endswith(".csv") and export.rows_written == 4
    assert "FOCUS 1.2 (CSV)" in client.get("/orgs/acme/exports/").content.decode()


def test_parquet_is_written_in_batches(orgs, ledger, monkeypatch):
    monkeypatch.setattr(focus_module, "CHUNK_ROWS", 2)
    output = io.BytesIO()
    progress: list[int] = []
    scope = FocusScope(UsageFilter.from_params(MARCH, organization_id=orgs["acme"].pk))
    assert focus_parquet_write(scope=scope, output=output, on_progress=progress.append) == 4
    assert progress == [2, 4]
    assert pq.ParquetFile(io.BytesIO(output.getvalue())).num_row_groups == 2


# --- export_usage --------------------------------------------------------------------


def test_command_writes_focus_parquet_and_csv(ledger, tmp_path, capsys):
    parquet = tmp_path / "march.parquet"
    call_command("export_usage", "--org", "acme", "--format", "focus-parquet", "--output", str(parquet), **_dates())
    table = pq.read_table(parquet)
    assert table.num_rows == 4 and set(table.column("BillingAccountId").to_pylist()) == {"acme"}
    call_command("export_usage", "--org", "acme", "--format", "focus-csv", "--output", "-", **_dates())
    assert len(_focus_csv(capsys.readouterr().out)) == 4


def _dates() -> dict:
    return {"date_from": MARCH["from"], "date_to": MARCH["to"]}


@time_machine.travel(datetime(2026, 3, 20, 12, tzinfo=UTC), tick=False)
def test_command_defaults_to_this_month_every_organization_and_our_csv(ledger, tmp_path, capsys):
    path = tmp_path / "usage.csv"
    call_command("export_usage", "--output", str(path))
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    # March 1 to today (the 20th): acme's four items up to the 15th and globex's; not the 31st, nor April.
    expected = sorted(
        (item for item in ledger if item.created_at.month == 3 and item.created_at.day <= 15),
        key=lambda item: item.created_at,
    )
    assert [row["request_id"] for row in rows] == [item.request_id for item in expected]
    assert {row["organization"] for row in rows} == {"acme", "globex"}
    assert "2026-03-01 to 2026-03-20" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "nope"], "Unknown organization 'nope'"),
        (["--from", "2026-13-01"], "'from' must be a date as YYYY-MM-DD"),
        (["--from", "2026-03-10", "--to", "2026-03-01"], "must not be after"),
        (["--format", "focus-parquet"], "Parquet is binary: give a file with --output PATH"),
        (["--format", "xlsx"], "invalid choice: 'xlsx'"),
        (["--output", "/nonexistent/dir/x.csv"], "Cannot write /nonexistent/dir/x.csv"),
    ],
)
def test_command_errors_say_what_to_fix(ledger, args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("export_usage", *args)


# --- The daily drop ---------------------------------------------------------------------


@pytest.fixture
def drop_dir(settings, tmp_path) -> Path:
    folder = tmp_path / "focus"
    settings.STORAGES = {
        **settings.STORAGES,
        "focus": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(folder)}},
    }
    return folder


def test_the_daily_drop_writes_one_parquet_per_organization_with_charges(ledger, drop_dir, settings):
    settings.FOCUS_DROP_CSV = True
    written = focus_drop_day(day=date(2026, 3, 1))
    assert written == ["acme/2026/03/2026-03-01.parquet", "acme/2026/03/2026-03-01.csv"]
    table = pq.read_table(drop_dir / "acme/2026/03/2026-03-01.parquet")
    assert table.column("x_RequestId").to_pylist() == [ledger[0].request_id, ledger[1].request_id]
    assert len(_focus_csv((drop_dir / "acme/2026/03/2026-03-01.csv").read_text())) == 2
    # A day with globex's usage only drops globex's file.
    assert focus_drop_day(day=date(2026, 3, 10)) == [
        "globex/2026/03/2026-03-10.parquet",
        "globex/2026/03/2026-03-10.csv",
    ]


def test_dropping_a_day_again_replaces_its_file(ledger, drop_dir, add_item, orgs, keys):
    focus_drop_day(day=date(2026, 3, 1))
    add_item(orgs["acme"], keys["acme"], datetime(2026, 3, 1, 12, tzinfo=UTC))
    assert focus_drop_day(day=date(2026, 3, 1)) == ["acme/2026/03/2026-03-01.parquet"]
    assert sorted(path.name for path in (drop_dir / "acme/2026/03").iterdir()) == ["2026-03-01.parquet"]
    assert pq.read_table(drop_dir / "acme/2026/03/2026-03-01.parquet").num_rows == 3


def test_a_day_with_only_a_credit_note_drops_it(ledger, drop_dir, credit_note):
    assert focus_drop_day(day=date(2026, 3, 5)) == ["acme/2026/03/2026-03-05.parquet"]
    table = pq.read_table(drop_dir / "acme/2026/03/2026-03-05.parquet")
    assert table.column("ChargeCategory").to_pylist() == ["Credit"]
    assert table.column("BilledCost").to_pylist() == [Decimal("-1.50")]


@time_machine.travel(datetime(2026, 3, 2, 1, tzinfo=UTC), tick=False)
def test_the_beat_task_drops_yesterday(ledger, drop_dir):
    assert django_settings.CELERY_BEAT_SCHEDULE["focus-drop-daily"]["task"] == focus_drop_yesterday.name
    assert focus_drop_yesterday() == 1
    assert (drop_dir / "acme/2026/03/2026-03-01.parquet").exists()


@time_machine.travel(datetime(2026, 4, 2, tzinfo=UTC), tick=False)
def test_focus_drop_command(ledger, drop_dir):
    out = io.StringIO()
    call_command("focus_drop", "--date", "2026-03-31", stdout=out)
    assert out.getvalue().split() == ["acme/2026/03/2026-03-31.parquet"]
    call_command("focus_drop", "--date", "2026-03-31", "--org", "globex", stdout=out)
    assert pq.read_table(drop_dir / "globex/2026/03/2026-03-31.parquet").num_rows == 0
    for args, message in [
        (["--date", "31/03/2026"], "--date must be a day as YYYY-MM-DD"),
        (["--date", "2026-04-02"], "has not ended yet"),
        (["--org", "nope"], "Unknown organization 'nope'"),
    ]:
        with pytest.raises(CommandError, match=re.escape(message)):
            call_command("focus_drop", *args)
