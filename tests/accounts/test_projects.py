"""Projects (cost centers): the services that create, rename and limit them and move keys in and out, audited,
and the operator commands create_project and create_api_key --project, with their clear errors."""

import subprocess
import sys

import pytest
from django.core.management.base import CommandError

from accounts.audit import Actor
from accounts.models import ApiKey, AuditEvent, Project
from accounts.services import (
    AccountError,
    api_key_create,
    api_key_project_set,
    project_create,
    project_get,
    project_update,
)
from tests.conftest import run

pytestmark = pytest.mark.django_db


def test_a_project_is_created_renamed_and_limited_with_an_audit_trail(people):
    actor = Actor.dashboard(people.alice)
    design = project_create(organization=people.acme, name="  Design ", images_per_minute=5, actor=actor)
    assert (design.name, design.images_per_minute, design.images_per_day) == ("Design", 5, None)
    project_update(project=design, actor=actor, name="Design team", images_per_minute=None, images_per_day=100)
    design.refresh_from_db()
    assert (design.name, design.images_per_minute, design.images_per_day) == ("Design team", None, 100)
    events = AuditEvent.objects.filter(object_type="project").order_by("pk")
    assert [event.action for event in events] == ["project.create", "project.update"]
    assert events[1].before == {"images_per_day": None, "images_per_minute": 5, "name": "Design"}
    assert events[1].actor == people.alice and events[1].organization == people.acme


def test_project_names_are_required_short_and_unique_per_organization(people):
    actor = Actor.command()
    project_create(organization=people.acme, name="Design", actor=actor)
    with pytest.raises(AccountError, match="already has a project named 'Design'"):
        project_create(organization=people.acme, name="Design", actor=actor)
    # Another organization may use the same name.
    assert project_create(organization=people.globex, name="Design", actor=actor).organization == people.globex
    with pytest.raises(AccountError, match="Give the project a name"):
        project_create(organization=people.acme, name="   ", actor=actor)
    with pytest.raises(AccountError, match="at most 100 characters, not 101"):
        project_create(organization=people.acme, name="x" * 101, actor=actor)
    with pytest.raises(AccountError, match="at least 1"):
        project_create(organization=people.acme, name="Zero", images_per_day=0, actor=actor)
    with pytest.raises(AccountError, match="cannot be more than images per day"):
        project_create(organization=people.acme, name="Odd", images_per_minute=10, images_per_day=5, actor=actor)
    other = project_create(organization=people.acme, name="Research", actor=actor)
    with pytest.raises(AccountError, match="already has a project named 'Design'"):
        project_update(project=other, actor=actor, name="Design", images_per_minute=None, images_per_day=None)
    assert Project.objects.filter(organization=people.acme).count() == 2


def test_a_key_moves_into_and_out_of_a_project_of_its_own_organization_only(people):
    actor = Actor.dashboard(people.alice)
    design = project_create(organization=people.acme, name="Design", actor=actor)
    globex_project = project_create(organization=people.globex, name="Ops", actor=Actor.command())
    api_key_project_set(api_key=people.alice_key, project=design, actor=actor)
    assert ApiKey.objects.get(pk=people.alice_key.pk).project == design
    with pytest.raises(AccountError, match="belongs to another organization"):
        api_key_project_set(api_key=people.bob_key, project=globex_project, actor=actor)
    with pytest.raises(AccountError, match="belongs to another organization"):
        api_key_create(organization=people.acme, project=globex_project)
    assert ApiKey.objects.get(pk=people.bob_key.pk).project is None
    api_key_project_set(api_key=people.alice_key, project=None, actor=actor)
    assert ApiKey.objects.get(pk=people.alice_key.pk).project is None
    moves = AuditEvent.objects.filter(action="api_key.project").order_by("pk")
    assert [(event.before, event.after) for event in moves] == [
        ({"project": None}, {"project": design.pk}),
        ({"project": design.pk}, {"project": None}),
    ]


def test_create_project_command_and_its_errors(people):
    output = run("create_project", "--org", "acme", "Design", "--images-per-minute", "5", "--images-per-day", "50")
    assert "Created project 'Design' of 'acme', 5 images per minute and 50 images per day." in output
    project = project_get(organization=people.acme, name="Design")
    assert (project.images_per_minute, project.images_per_day) == (5, 50)
    assert AuditEvent.objects.get(action="project.create").source == "command"
    with pytest.raises(CommandError, match="Unknown organization 'nope'"):
        run("create_project", "--org", "nope", "Design")
    with pytest.raises(CommandError, match="acme already has a project named 'Design'"):
        run("create_project", "--org", "acme", "Design")
    with pytest.raises(CommandError, match="Give the project a name"):
        run("create_project", "--org", "acme", " ")
    with pytest.raises(CommandError, match="at most 100 characters"):
        run("create_project", "--org", "acme", "y" * 150)


def test_create_api_key_in_a_project(people):
    run("create_project", "--org", "acme", "Design")
    output = run("create_api_key", "--org", "acme", "--name", "designer", "--project", "Design")
    assert "in project 'Design'" in output
    key = ApiKey.objects.get(prefix=output.strip().splitlines()[-1][:12])
    assert key.project == project_get(organization=people.acme, name="Design")
    with pytest.raises(CommandError, match="acme has no project named 'Research'. Its projects: Design"):
        run("create_api_key", "--org", "acme", "--project", "Research")
    # A project of another organization is not found either.
    run("create_project", "--org", "globex", "Ops")
    with pytest.raises(CommandError, match="acme has no project named 'Ops'"):
        run("create_api_key", "--org", "acme", "--project", "Ops")


def test_create_project_bad_numbers_exit_non_zero_with_a_clear_message():
    result = subprocess.run(
        [sys.executable, "manage.py", "create_project", "--org", "x", "Design", "--images-per-day", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--images-per-day: must be at least 1" in result.stderr
    help_text = subprocess.run(
        [sys.executable, "manage.py", "create_project", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "--images-per-minute" in help_text and "cost center" in help_text
