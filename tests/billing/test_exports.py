"""CSV exports: columns, exact amounts, formula escaping, streaming, background jobs and tenant isolation."""

import csv
import io
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.utils import timezone

import billing.usage.exports as exports_module
from billing.models import UsageExport, UsageLineItem
from billing.tasks import usage_export_run as usage_export_run_task
from billing.usage.exports import (
    CSV_COLUMNS,
    EXPORT_TASK,
    csv_cell,
    usage_csv_write,
    usage_export_run,
    usage_exports_expire,
)
from gateway.celery import app as celery_app

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


def _csv(response) -> list[dict]:
    body = b"".join(response).decode() if response.streaming else response.content.decode()
    return list(csv.DictReader(io.StringIO(body)))


def _export(client, user, slug="acme", **params):
    client.force_login(user)
    return client.post(f"/orgs/{slug}/exports/", {**MARCH, **params})


def test_columns_and_values_are_exact(client, people, ledger):
    response = _export(client, people.alice)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response.streaming
    rows = _csv(response)
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    first = rows[0]
    assert first["request_id"] == ledger[0].request_id
    assert first["time"] == "2026-03-01T09:00:00.000Z"
    assert first["organization"] == "acme"
    assert first["key_prefix"] == ledger[0].api_key.prefix and first["key_name"] == "backend"
    assert (first["provider"], first["model"], first["size"], first["quality"]) == (
        "openai", "dall-e-3", "1024x1024", "standard"
    )  # fmt: skip
    assert (first["n"], first["unit_price"], first["cost"], first["currency"]) == ("1", "0.04", "0.04", "USD")
    assert (first["status"], first["latency_ms"], first["cached"]) == ("succeeded", "1234", "")
    # Micro-dollar prices survive, never rounded through a float.
    assert rows[4]["unit_price"] == "0.040001" and rows[4]["cost"] == "0.080002"
    assert rows[2]["cached"] == "true"
    assert rows[3]["status"] == "failed" and rows[3]["cost"] == "0.00" and rows[3]["error_code"] == "upstream_error"


def test_csv_totals_equal_the_line_items(client, people, ledger):
    rows = _csv(_export(client, people.fiona))
    march = UsageLineItem.objects.filter(organization__slug="acme", created_at__month=3)
    assert len(rows) == march.count() == 5
    assert sum(Decimal(row["cost"]) for row in rows) == sum(item.cost for item in march) == Decimal("0.254002")


def test_formula_cells_are_neutralised(client, people, ledger):
    rows = _csv(_export(client, people.alice))
    assert rows[2]["end_user"] == "'@SUM(A1)"
    assert rows[2]["key_name"] == "'=cmd|' /C calc'!A0"
    for trigger in ("=", "+", "-", "@", "\t", "\r"):
        assert csv_cell(trigger + "x") == "'" + trigger + "x"
    assert csv_cell("plain") == "plain" and csv_cell("") == ""


def test_filters_narrow_the_export(client, people, ledger):
    rows = _csv(_export(client, people.alice, model="dall-e-2"))
    assert [row["model"] for row in rows] == ["dall-e-2"]
    rows = _csv(_export(client, people.alice, status="failed"))
    assert [row["error_code"] for row in rows] == ["upstream_error"]
    rows = _csv(_export(client, people.alice, end_user="u-1", **{"from": "2026-03-02"}))
    assert len(rows) == 2


@pytest.mark.parametrize(
    "params, message",
    [
        ({"from": "2026-03-31", "to": "2026-03-01"}, "must not be after"),
        ({"from": "March"}, "YYYY-MM-DD"),
        ({"status": "lost"}, "must be one of"),
    ],
)
def test_bad_filters_answer_400_saying_what_to_fix(client, people, ledger, params, message):
    response = _export(client, people.alice, **params)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_outsider_gets_404_and_member_403(client, people, ledger):
    assert _export(client, people.charlie).status_code == 404
    assert client.get("/orgs/acme/exports/").status_code == 404
    assert _export(client, people.bob).status_code == 403
    client.logout()
    assert client.get("/orgs/acme/exports/").status_code == 302


def test_charlie_export_has_nothing_of_acme(client, people, ledger):
    rows = _csv(_export(client, people.charlie, slug="globex"))
    assert [row["organization"] for row in rows] == ["globex"]


def test_staff_exports_any_or_all_organizations(client, people, ledger):
    client.force_login(people.stella)
    every = _csv(client.post("/staff/exports/", MARCH))
    assert {row["organization"] for row in every} == {"acme", "globex"} and len(every) == 6
    one = _csv(client.post("/staff/exports/", {**MARCH, "organization": "globex"}))
    assert [row["organization"] for row in one] == ["globex"]
    client.force_login(people.alice)
    assert client.get("/staff/exports/").status_code == 404


def test_large_export_runs_as_a_job_with_progress(
    client, people, orgs, keys, add_item, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.USAGE_EXPORT_ASYNC_THRESHOLD = 3
    start = datetime(2026, 3, 1, tzinfo=UTC)
    for minute in range(12):
        add_item(orgs["acme"], keys["acme"], start + timedelta(minutes=minute))
    client.force_login(people.fiona)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/orgs/acme/exports/", MARCH)
    assert response.status_code == 302 and response["Location"] == "/orgs/acme/exports/"
    assert len(callbacks) == 1  # the Celery job is enqueued once the request commits
    export = UsageExport.objects.get()
    assert export.status == "queued" and export.organization == orgs["acme"]

    page = client.get("/orgs/acme/exports/")
    assert f"/orgs/acme/exports/{export.pk}/status" in page.content.decode()
    status = client.get(f"/orgs/acme/exports/{export.pk}/status")
    assert 'hx-trigger="every 2s"' in status.content.decode()  # still polling
    assert client.get(f"/orgs/acme/exports/{export.pk}/download").status_code == 404

    monkeypatch.setattr(exports_module, "CHUNK_ROWS", 5)
    usage_export_run(export_id=export.pk)
    export.refresh_from_db()
    assert export.status == "done" and export.rows_total == 12 and export.rows_written == 12
    assert export.expires_at - export.finished_at == timedelta(days=7)
    status = client.get(f"/orgs/acme/exports/{export.pk}/status").content.decode()
    assert "every 2s" not in status and f"/orgs/acme/exports/{export.pk}/download" in status
    download = client.get(f"/orgs/acme/exports/{export.pk}/download")
    rows = _csv(download)
    assert len(rows) == 12 and sum(Decimal(row["cost"]) for row in rows) == Decimal("0.48")

    client.force_login(people.charlie)
    assert client.get(f"/orgs/acme/exports/{export.pk}/status").status_code == 404
    assert client.get(f"/orgs/acme/exports/{export.pk}/download").status_code == 404
    assert client.get(f"/orgs/globex/exports/{export.pk}/download").status_code == 404


def test_a_queued_export_runs_through_its_named_task(
    client, people, orgs, keys, add_item, settings, django_capture_on_commit_callbacks
):
    settings.USAGE_EXPORT_ASYNC_THRESHOLD = 1
    for minute in range(3):
        add_item(orgs["acme"], keys["acme"], datetime(2026, 3, 1, 0, minute, tzinfo=UTC))
    client.force_login(people.fiona)
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            client.post("/orgs/acme/exports/", MARCH)
    finally:
        celery_app.conf.task_always_eager = eager
    export = UsageExport.objects.get()
    assert export.status == "done" and export.rows_written == 3


def test_the_export_job_is_enqueued_by_its_tasks_name():
    assert usage_export_run_task.name == EXPORT_TASK


def test_progress_is_reported_per_batch(orgs, keys, add_item, monkeypatch):
    monkeypatch.setattr(exports_module, "CHUNK_ROWS", 5)
    for minute in range(12):
        add_item(orgs["acme"], keys["acme"], datetime(2026, 3, 1, 0, minute, tzinfo=UTC))
    progress: list[int] = []
    output = io.StringIO()
    rows = usage_csv_write(items=UsageLineItem.objects.all(), output=output, on_progress=progress.append)
    assert rows == 12 and progress == [4, 9]  # a batch holds 5 lines, the first being the header
    assert output.getvalue().count("\r\n") == 13


def test_expired_exports_are_deleted_with_their_file(orgs):
    export = UsageExport.objects.create(organization=orgs["acme"], filters=MARCH, status="done")
    export.file.save("old.csv", ContentFile(b"request_id\r\n"))
    path = export.file.path
    export.expires_at = timezone.now() - timedelta(seconds=1)
    export.save(update_fields=["expires_at"])
    assert usage_exports_expire() == 1
    assert not UsageExport.objects.exists()
    assert not os.path.exists(path)


def test_export_usage_command(orgs, ledger, tmp_path, capsys):
    output = tmp_path / "march.csv"
    call_command("export_usage", "--org", "acme", "--from", "2026-03-01", "--to", "2026-03-31", "--output", str(output))
    rows = list(csv.DictReader(output.open(newline="")))
    assert len(rows) == 5 and {row["organization"] for row in rows} == {"acme"}
    call_command("export_usage", "--org", "globex", "--from", "2026-03-01", "--to", "2026-03-31")
    out = capsys.readouterr().out
    assert out.startswith("request_id,time,") and "globex-secret-user" in out and "acme" not in out
    with pytest.raises(CommandError, match="Unknown organization"):
        call_command("export_usage", "--org", "nope", "--from", "2026-03-01", "--to", "2026-03-31")
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("export_usage", "--org", "acme", "--from", "yesterday", "--to", "2026-03-31")


@pytest.mark.django_db(transaction=True)
async def test_export_streams_under_asgi(people, ledger, gateway_client):
    from asgiref.sync import sync_to_async
    from django.test import Client

    session = Client()
    await sync_to_async(session.force_login)(people.alice)
    gateway_client.cookies.set("sessionid", session.cookies["sessionid"].value)
    csrf = (await gateway_client.get("/orgs/acme/exports/")).cookies["csrftoken"]
    gateway_client.cookies.set("csrftoken", csrf)
    response = await gateway_client.post("/orgs/acme/exports/", data={**MARCH, "csrfmiddlewaretoken": csrf})
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 5 and {row["organization"] for row in rows} == {"acme"}
