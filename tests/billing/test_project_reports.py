"""Every report broken down by project, so finance can charge each team back: rollups, statements (page and CSV),
invoices, the CSV and FOCUS exports, export_usage, the usage API and the dashboard's usage page and chart.

Each figure is checked against line items created with projects, and reconciles to the micro-dollar with the
totals, read from the line items and from the rollups alike.
"""

import csv
import io
import itertools
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core.management.base import CommandError

from accounts.audit import Actor
from accounts.services import api_key_create, api_key_project_set, project_create
from billing.invoices.services import invoice_issue, issuer_get
from billing.models import DailyUsageRollup, UsageLineItem
from billing.usage.filter import UsageFilter
from billing.usage.overview import spend_chart
from billing.usage.ranges import DayRange
from billing.usage.rollups import rollup_rebuild_range, rollup_reconcile, usage_totals
from billing.usage.statements import NO_PROJECT, statement_build
from tests.conftest import run
from tests.people import line_item_record

pytestmark = pytest.mark.django_db

MARCH = date(2026, 3, 1)
APRIL_20 = datetime(2026, 4, 20, 9, 0, tzinfo=UTC)
MARCH_PARAMS = {"from": "2026-03-01", "to": "2026-03-31"}
_ids = itertools.count(1)
# What each project was charged in March (see the `month` fixture), and the organization's total.
EXPECTED = {"Design": Decimal("0.230001"), "Research": Decimal("0.054"), NO_PROJECT: Decimal("0.04")}
TOTAL = Decimal("0.324001")


def _item(organization, created, *, when, project=None, cost="0.04", n=1, status="succeeded", **fields):
    unit = Decimal(cost) / n if status == "succeeded" else Decimal(0)
    pk = line_item_record(
        request_id=f"req-project-{next(_ids):05d}",
        created_at=when,
        organization_id=organization.pk,
        api_key_id=created.api_key.pk,
        project_id=project.pk if project else None,
        status=status,
        provider="openai",
        model=fields.pop("model", "dall-e-3"),
        size=fields.pop("size", "1024x1024"),
        quality=fields.pop("quality", "standard"),
        n=n,
        unit_price=unit,
        cost=Decimal(cost) if status == "succeeded" else Decimal(0),
        latency_ms=1000,
        **fields,
    )
    return UsageLineItem.objects.get(pk=pk)


@pytest.fixture
def month(orgs):
    """acme's March 2026 in two projects and outside any; a key moved from Design to Research on the 20th keeps
    its earlier requests in Design. globex has a project of the same name, which must never mix in."""
    acme, globex = orgs["acme"], orgs["globex"]
    actor = Actor.command()
    design = project_create(organization=acme, name="Design", actor=actor)
    research = project_create(organization=acme, name="Research", actor=actor)
    globex_design = project_create(organization=globex, name="Design", actor=actor)
    designer = api_key_create(organization=acme, name="designer", project=design)
    mover = api_key_create(organization=acme, name="mover", project=design)
    loose = api_key_create(organization=acme, name="no project")
    reader = api_key_create(organization=acme, name="finance", usage_scope="organization")
    outsider = api_key_create(organization=globex, name="globex", project=globex_design, usage_scope="organization")
    items = [
        _item(acme, designer, when=datetime(2026, 3, 1, 9, tzinfo=UTC), project=design, end_user="u-1"),
        _item(acme, designer, when=datetime(2026, 3, 2, 23, 59, tzinfo=UTC), project=design, cost="0.080001",
              quality="hd"),
        _item(acme, mover, when=datetime(2026, 3, 3, 12, tzinfo=UTC), project=design, cost="0.11", n=2,
              model="gpt-image-2", size="1024x1536", quality="medium"),
        _item(acme, mover, when=datetime(2026, 3, 4, tzinfo=UTC), project=design, status="failed"),
        _item(acme, mover, when=datetime(2026, 3, 21, tzinfo=UTC), project=research, cost="0.054", n=3,
              model="dall-e-2", size="512x512", quality=""),
        _item(acme, loose, when=datetime(2026, 3, 31, 23, tzinfo=UTC)),
        _item(globex, outsider, when=datetime(2026, 3, 5, tzinfo=UTC), project=globex_design, cost="9.99"),
    ]  # fmt: skip
    # The move happened on the 20th: the key's later history is Research's, its earlier one stays Design's.
    api_key_project_set(api_key=mover.api_key, project=research, actor=actor)
    return {
        "design": design,
        "research": research,
        "globex_design": globex_design,
        "reader": reader,
        "outsider": outsider,
        "designer": designer,
        "items": items,
    }


def _by_label(lines) -> dict[str, Decimal]:
    return {line.label: line.totals.amount for line in lines}


def _assert_statement(statement) -> None:
    assert statement.total.amount == TOTAL and statement.has_projects
    assert _by_label(statement.by_project) == EXPECTED
    assert [line.label for line in statement.by_project] == ["Design", "Research", NO_PROJECT]
    assert sum(line.totals.requests for line in statement.by_project) == statement.total.requests == 5
    assert sum(line.totals.images for line in statement.by_project) == statement.total.images == 8
    split = defaultdict(Decimal)
    for line in statement.by_project_model:
        split[line.project] += line.totals.amount
    assert split == EXPECTED
    assert sum(line.totals.amount for line in statement.by_model) == TOTAL


@time_machine.travel(APRIL_20, tick=False)
def test_statement_by_project_reconciles_from_line_items_and_from_rollups(orgs, month):
    from_items = statement_build(organization=orgs["acme"], month=MARCH)
    assert from_items.days_from_rollups == 0
    _assert_statement(from_items)

    rollup_rebuild_range(first=MARCH, last=date(2026, 3, 31))
    assert rollup_reconcile(first=MARCH, last=date(2026, 3, 31)) == []
    rows = DailyUsageRollup.objects.filter(organization=orgs["acme"])
    by_project = defaultdict(Decimal)
    for row in rows:
        by_project[row.project_id] += row.amount
    assert by_project == {
        month["design"].pk: EXPECTED["Design"],
        month["research"].pk: EXPECTED["Research"],
        None: EXPECTED[NO_PROJECT],
    }
    from_rollups = statement_build(organization=orgs["acme"], month=MARCH)
    assert from_rollups.days_from_rollups == 31
    _assert_statement(from_rollups)
    assert from_rollups.by_project == from_items.by_project
    assert from_rollups.by_project_model == from_items.by_project_model


@time_machine.travel(APRIL_20, tick=False)
def test_a_rollup_that_disagrees_on_a_project_is_reported(orgs, month):
    rollup_rebuild_range(first=MARCH, last=date(2026, 3, 31))
    DailyUsageRollup.objects.filter(project=month["research"]).update(project=month["design"])
    differences = rollup_reconcile(first=MARCH, last=date(2026, 3, 31), organization_id=orgs["acme"].pk)
    assert len(differences) == 2
    assert all(f"project={month['research'].pk}" in d.describe() or f"project={month['design'].pk}" in d.describe()
               for d in differences)  # fmt: skip


@time_machine.travel(APRIL_20, tick=False)
def test_statement_page_and_csv_have_the_project_section(client, people, orgs, month):
    client.force_login(people.fiona)
    html = client.get("/orgs/acme/statements/2026-03/").content.decode()
    section = html[html.index('id="statement-projects"') :].split("</table>")[0]
    assert "Design" in section and "Research" in section and NO_PROJECT in section and "9.99" not in section
    rows = list(csv.DictReader(io.StringIO(client.get("/orgs/acme/statements/2026-03.csv").content.decode())))
    projects = {row["label"]: Decimal(row["amount"]) for row in rows if row["section"] == "project"}
    assert projects == EXPECTED and sum(projects.values()) == TOTAL


@time_machine.travel(APRIL_20, tick=False)
def test_the_invoice_has_a_line_per_project_and_model_adding_up_to_its_subtotal(orgs, month, settings):
    settings.INVOICE_NUMBER_PREFIX = "PJ"
    issuer_get()
    invoice = invoice_issue(organization=orgs["acme"], month=MARCH)
    lines = list(invoice.lines.all())
    assert invoice.subtotal == TOTAL == sum(line.amount for line in lines)
    per_project = defaultdict(Decimal)
    for line in lines:
        per_project[line.project] += line.amount
        assert line.description.endswith(f"({line.project})")
    assert per_project == EXPECTED
    # dall-e-3 standard was charged in Design and outside any project: two lines, one per project.
    standard = [
        (line.project, line.amount) for line in lines if line.model == "dall-e-3" and line.quality == "standard"
    ]
    assert sorted(standard) == [("Design", Decimal("0.04")), (NO_PROJECT, Decimal("0.04"))]


@time_machine.travel(APRIL_20, tick=False)
def test_an_organization_without_projects_keeps_one_line_per_model(orgs, keys, add_item, settings):
    add_item(orgs["acme"], keys["acme"], datetime(2026, 3, 3, tzinfo=UTC))
    settings.INVOICE_NUMBER_PREFIX = "NP"
    issuer_get()
    invoice = invoice_issue(organization=orgs["acme"], month=MARCH)
    assert [(line.project, line.description) for line in invoice.lines.all()] == [
        ("", "Images: dall-e-3 · 1024x1024 · standard")
    ]


def _csv_rows(response) -> list[dict]:
    body = b"".join(response).decode() if response.streaming else response.content.decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_the_csv_export_has_the_project_column_and_filter(client, people, month):
    client.force_login(people.fiona)
    rows = _csv_rows(client.post("/orgs/acme/exports/", MARCH_PARAMS))
    by_id = {item.request_id: item for item in month["items"]}
    assert len(rows) == 6
    for row in rows:
        item = by_id[row["request_id"]]
        assert row["project"] == (item.project.name if item.project else "")
    design = _csv_rows(client.post("/orgs/acme/exports/", {**MARCH_PARAMS, "project": "Design"}))
    assert {row["project"] for row in design} == {"Design"} and len(design) == 4
    assert sum(Decimal(row["cost"]) for row in design) == EXPECTED["Design"]
    # globex's own project of the same name never shows in acme's export.
    assert "9.990000" not in {row["cost"] for row in design}


def test_focus_fills_x_project_and_tags_it(client, people, month):
    client.force_login(people.fiona)
    rows = _csv_rows(client.post("/orgs/acme/exports/", {**MARCH_PARAMS, "format": "focus-csv"}))
    projects = defaultdict(Decimal)
    for row in rows:
        projects[row["x_Project"] or NO_PROJECT] += Decimal(row["BilledCost"])
        if row["x_Project"]:
            assert f'"project": "{row["x_Project"]}"' in row["Tags"]
    assert projects == EXPECTED


def test_export_usage_command_has_the_project_column_and_filter(month, tmp_path):
    target = tmp_path / "research.csv"
    run("export_usage", "--org", "acme", "--from", "2026-03-01", "--to", "2026-03-31", "--project", "Research",
        "--output", str(target))  # fmt: skip
    rows = list(csv.DictReader(target.open()))
    assert [(row["project"], row["cost"]) for row in rows] == [("Research", "0.054")]
    with pytest.raises(CommandError, match="acme has no project named 'Marketing'"):
        run("export_usage", "--org", "acme", "--project", "Marketing", "--output", str(target))


def _api(client, created, path="/api/usage", **params):
    return client.get(path, {**MARCH_PARAMS, **params}, HTTP_AUTHORIZATION=f"Bearer {created.plaintext}")


def test_the_usage_api_carries_filters_and_groups_by_project(client, month):
    results = _api(client, month["reader"], limit=50).json()["results"]
    by_id = {item.request_id: item for item in month["items"]}
    assert len(results) == 6
    for result in results:
        item = by_id[result["request_id"]]
        assert result["project"] == (item.project.name if item.project else None)
    research = _api(client, month["reader"], project="Research").json()["results"]
    assert [(row["project"], row["cost"]) for row in research] == [("Research", "0.054")]
    assert _api(client, month["reader"], project="Marketing").json()["results"] == []

    summary = _api(client, month["reader"], "/api/usage/summary", group_by="project").json()
    groups = {row["group"]: Decimal(row["amount"]) for row in summary["results"]}
    assert groups == {"Design": EXPECTED["Design"], "Research": EXPECTED["Research"], None: EXPECTED[NO_PROJECT]}
    assert Decimal(summary["total"]["amount"]) == TOTAL == sum(groups.values())
    # globex's key, asking for "Design", sees its own project only.
    outsider = _api(client, month["outsider"], "/api/usage/summary", group_by="project", project="Design").json()
    assert [(row["group"], row["amount"]) for row in outsider["results"]] == [("Design", "9.99")]


def test_the_usage_api_schema_documents_the_project(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    usage = schema["paths"]["/api/usage"]["get"]
    assert "project" in [parameter["name"] for parameter in usage["parameters"]]
    summary = schema["paths"]["/api/usage/summary"]["get"]
    group_by = next(parameter for parameter in summary["parameters"] if parameter["name"] == "group_by")
    assert "project" in group_by["schema"]["enum"]


@time_machine.travel(APRIL_20, tick=False)
def test_the_usage_page_filters_by_project_and_the_chart_stacks_by_it(client, people, orgs, month):
    client.force_login(people.fiona)
    page = client.get("/orgs/acme/usage/", {"date_from": "2026-03-01", "date_to": "2026-03-31", "project": "Design"})
    assert page.status_code == 200
    totals = page.content.decode().split('id="usage-totals"')[1].split("</dl>")[0]
    assert "$0.23" in totals and "<dd>4</dd>" in totals  # 0.230001 in 4 requests, the failure among them

    for built in (False, True):
        if built:
            rollup_rebuild_range(first=MARCH, last=date(2026, 3, 31))
        acme = UsageFilter(organization_id=orgs["acme"].pk)
        chart = spend_chart(acme, days=DayRange(MARCH, date(2026, 3, 31)), group_name="project")
        spend = defaultdict(Decimal)
        for row in chart.table:
            for (name, _color), amount in zip(chart.legend, row.spend, strict=True):
                spend[name] += amount
        assert spend == {"Design": EXPECTED["Design"], "Research": EXPECTED["Research"], "no project": Decimal("0.04")}
        assert chart.total == TOTAL
        design = UsageFilter(organization_id=orgs["acme"].pk, date_from=MARCH, date_to=date(2026, 3, 31),
                             project="Design")  # fmt: skip
        assert usage_totals(design).amount == EXPECTED["Design"]
    chart_page = client.get("/orgs/acme/", {"group": "project", "date_from": "2026-03-01", "date_to": "2026-03-31"})
    assert chart_page.status_code == 200 and "Research" in chart_page.content.decode()
