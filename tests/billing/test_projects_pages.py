"""The Projects page and the keys' project select: who may read and change what, and outsiders see nothing."""

from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import ApiKey, Project
from accounts.services import api_key_project_set, project_create
from billing.models import SpendLimit
from tests.people import line_item

pytestmark = pytest.mark.django_db


@pytest.fixture
def design(people) -> Project:
    """acme's Design project, holding alice's key, with 0.10 of spend this month made in it."""
    project = project_create(organization=people.acme, name="Design", images_per_minute=7, actor=Actor.command())
    api_key_project_set(api_key=people.alice_key, project=project, actor=Actor.command())
    line_item(people.acme, people.alice_key, request_id="req-design-1", project_id=project.pk, cost=Decimal("0.10"))
    return project


@pytest.fixture
def ops(people) -> Project:
    """globex's project: the outsider's."""
    return project_create(organization=people.globex, name="Globex ops secret", actor=Actor.command())


def test_the_list_shows_each_project_with_its_keys_and_month_spend(people, design, ops, as_user):
    html = as_user(people.fiona).get(reverse("projects", args=["acme"])).content.decode()
    row = html[html.index(f'id="project-{design.pk}"') :].split("</tr>")[0]
    assert "Design" in row and '<td class="num">1</td>' in row and "0.10" in row and "7" in row
    # What was spent outside any project: the cast's other acme items (0.04 + 0.02; the failure cost nothing).
    assert "0.06" in html[html.index('id="project-none"') :].split("</tr>")[0]
    assert "Globex ops secret" not in html
    # A member reads the projects but not the organization's spend, and cannot create one.
    member_html = as_user(people.bob).get(reverse("projects", args=["acme"])).content.decode()
    assert "Design" in member_html and "Spend this month" not in member_html and 'id="project-form"' not in member_html


def test_an_admin_creates_a_project_and_errors_are_shown_next_to_the_field(people, design, as_user):
    client = as_user(people.alice)
    response = client.post(reverse("projects", args=["acme"]), {"name": "Research", "images_per_day": "500"})
    assert response.status_code == 302
    assert Project.objects.get(organization=people.acme, name="Research").images_per_day == 500
    duplicate = client.post(reverse("projects", args=["acme"]), {"name": "Design"})
    assert duplicate.status_code == 422 and "acme already has a project named" in duplicate.content.decode()
    too_long = client.post(reverse("projects", args=["acme"]), {"name": "x" * 101})
    assert too_long.status_code == 422 and 'id="id_name-error"' in too_long.content.decode()


def test_an_admin_renames_limits_and_caps_a_project(people, design, as_user):
    client = as_user(people.alice)
    url = reverse("project-edit", args=["acme", design.pk])
    assert client.post(url, {"name": "Design team", "images_per_minute": "", "images_per_day": "40"}).status_code == 302
    design.refresh_from_db()
    assert (design.name, design.images_per_minute, design.images_per_day) == ("Design team", None, 40)
    cap_url = reverse("project-cap", args=["acme", design.pk])
    assert client.post(cap_url, {"period": "month", "amount": "25"}).status_code == 302
    limit = SpendLimit.objects.get(project=design)
    assert (limit.period, limit.amount, limit.api_key, limit.end_user) == ("month", Decimal("25"), None, None)
    page = client.get(url).content.decode()
    cap_row = page[page.index('id="project-cap-month"') :].split("</tr>")[0]
    assert "$25.00" in cap_row
    bad = client.post(cap_url, {"period": "month", "amount": "lots"})
    assert bad.status_code == 422 and 'id="id_amount-error"' in bad.content.decode()
    delete_url = reverse("project-cap-delete", args=["acme", design.pk, "month"])
    asked = client.post(delete_url)
    assert asked.status_code == 200 and "Remove the month spend cap on project Design team?" in asked.content.decode()
    assert SpendLimit.objects.filter(project=design).exists()
    assert client.post(delete_url, {"confirmed": "1"}).status_code == 302
    assert not SpendLimit.objects.filter(project=design).exists()
    assert client.post(delete_url, {"confirmed": "1"}).status_code == 404


def test_finance_and_members_read_but_get_403_on_changes(people, design, as_user):
    for person in (people.fiona, people.bob):
        client = as_user(person)
        assert client.get(reverse("project-edit", args=["acme", design.pk])).status_code == 200
        assert client.post(reverse("projects", args=["acme"]), {"name": "Sneaky"}).status_code == 403
        edit = {"name": "Renamed", "images_per_minute": "", "images_per_day": ""}
        assert client.post(reverse("project-edit", args=["acme", design.pk]), edit).status_code == 403
        cap = {"period": "day", "amount": "1"}
        assert client.post(reverse("project-cap", args=["acme", design.pk]), cap).status_code == 403
    assert Project.objects.filter(organization=people.acme).get().name == "Design"
    assert not SpendLimit.objects.filter(project=design).exists()


def test_outsiders_get_404_and_another_organizations_project_is_404(people, design, ops, as_user):
    charlie = as_user(people.charlie)
    for url in (
        reverse("projects", args=["acme"]),
        reverse("project-edit", args=["acme", design.pk]),
    ):
        assert charlie.get(url).status_code == 404
    assert charlie.post(reverse("projects", args=["acme"]), {"name": "Mine"}).status_code == 404
    assert (
        charlie.post(reverse("project-cap", args=["acme", design.pk]), {"period": "day", "amount": "0"}).status_code
        == 404
    )
    # Through his own organization's URL, acme's project is not his either.
    assert charlie.get(reverse("project-edit", args=["globex", design.pk])).status_code == 404
    cap = {"period": "day", "amount": "0"}
    assert charlie.post(reverse("project-cap", args=["globex", design.pk]), cap).status_code == 404
    assert not SpendLimit.objects.filter(project=design).exists()
    # And alice cannot reach globex's project through acme.
    alice = as_user(people.alice)
    assert alice.get(reverse("project-edit", args=["acme", ops.pk])).status_code == 404
    assert "Globex ops secret" not in alice.get(reverse("projects", args=["acme"])).content.decode()


def test_the_key_forms_offer_only_the_organizations_projects(people, design, ops, as_user):
    client = as_user(people.alice)
    html = client.get(reverse("keys", args=["acme"])).content.decode()
    assert f'<option value="{design.pk}">Design</option>' in html and "Globex ops secret" not in html
    created = client.post(reverse("keys", args=["acme"]), {"name": "designer", "project": str(design.pk)})
    assert created.status_code == 201 and ApiKey.objects.get(name="designer").project == design
    # Another organization's project id is a form error, and nothing changes.
    refused = client.post(reverse("keys", args=["acme"]), {"name": "stolen", "project": str(ops.pk)})
    assert refused.status_code == 422 and "Select a valid choice" in refused.content.decode()
    assert not ApiKey.objects.filter(name="stolen").exists()
    edit_url = reverse("key-edit", args=["acme", people.bob_key.pk])
    assert client.post(edit_url, {"name": "bob laptop", "project": str(ops.pk)}).status_code == 422
    assert ApiKey.objects.get(pk=people.bob_key.pk).project is None
    assert client.post(edit_url, {"name": "bob laptop", "project": str(design.pk)}).status_code == 302
    assert ApiKey.objects.get(pk=people.bob_key.pk).project == design
    # Out of the project again; the edit page shows the key's project chosen.
    alice_edit = reverse("key-edit", args=["acme", people.alice_key.pk])
    assert f'<option value="{design.pk}" selected>Design</option>' in client.get(alice_edit).content.decode()
    assert client.post(alice_edit, {"name": "alice backend", "project": ""}).status_code == 302
    assert ApiKey.objects.get(pk=people.alice_key.pk).project is None
