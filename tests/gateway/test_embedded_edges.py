"""The embedded mode's rough edges: links on the real address, one valid demo key, reconciliation before
any rollup, and a README whose price commands can be followed without losing a seeded price."""

import re
import shlex
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from accounts.models import ApiKey
from billing.models import PriceConfig, TokenPrice
from gateway.seed import DEMO_ORG_SLUG
from tests.conftest import run

README = Path(__file__).resolve().parents[2] / "README.md"


def _link(output: str) -> str:
    return output.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "port, public, given, expected",
    [
        ("8123", "", None, "http://127.0.0.1:8123/accounts/set-password/"),
        (None, "", None, "http://127.0.0.1:8000/accounts/set-password/"),
        ("8123", "https://gw.example.com", None, "https://gw.example.com/accounts/set-password/"),
        ("8123", "https://gw.example.com", "https://other.example.com/", "https://other.example.com/accounts/"),
    ],
    ids=["make-run-port", "default-port", "public-base-url", "base-url-option"],
)
def test_add_member_links_to_where_the_dashboard_is_served(
    people, monkeypatch, settings, tmp_path, port, public, given, expected
):
    settings.VAR_DIR = tmp_path
    if port is None:
        monkeypatch.delenv("PORT", raising=False)
    else:
        monkeypatch.setenv("PORT", port)
    settings.PUBLIC_BASE_URL = public
    arguments = ["--org", "acme", "--username", "erin", "--email", "erin@example.com", "--role", "member"]
    output = run("add_member", *arguments, *(["--base-url", given] if given else []))
    assert _link(output).startswith(expected)


def test_add_member_run_by_hand_links_to_the_port_make_run_serves_on(people, monkeypatch, settings, tmp_path):
    """`make run PORT=8123` in one shell, `manage.py add_member …` in another, where PORT is not set."""
    settings.VAR_DIR = tmp_path
    settings.PUBLIC_BASE_URL = ""
    monkeypatch.setenv("PORT", "8123")
    run("demo_setup")
    monkeypatch.delenv("PORT")
    output = run("add_member", "--org", "acme", "--username", "erin", "--email", "erin@example.com", "--role", "member")
    assert _link(output).startswith("http://127.0.0.1:8123/accounts/set-password/")


@pytest.mark.django_db(transaction=True)
async def test_each_make_run_revokes_the_demo_key_of_the_last_one(gateway_client, monkeypatch, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    monkeypatch.setenv("PORT", "8765")
    first = await sync_to_async(run)("demo_setup")
    second = await sync_to_async(run)("demo_setup")
    old, new = (re.search(r"Demo API key: (\S+)", output)[1] for output in (first, second))
    assert "http://127.0.0.1:8765/v1/images/generations" in second and "127.0.0.1:8000" not in second
    keys = [key async for key in ApiKey.objects.filter(organization__slug=DEMO_ORG_SLUG).order_by("pk")]
    assert [(key.name, key.revoked_at is not None) for key in keys] == [("make run", True), ("make run", False)]
    assert f"Revoked the demo keys of earlier runs: {keys[0].prefix}" in second
    assert "Revoked" not in first
    models = "/v1/models"
    assert (await gateway_client.get(models, headers={"Authorization": f"Bearer {old}"})).status_code == 401
    assert (await gateway_client.get(models, headers={"Authorization": f"Bearer {new}"})).status_code == 200


def test_reconcile_usage_before_any_rollup_names_the_days_and_succeeds(people):
    """The embedded mode runs no beat: nothing is built, so there is nothing to disagree with."""
    output = run("reconcile_usage")
    assert "No rollups yet for" in output and "where built" in output
    run("rollup_usage")
    output = run("reconcile_usage")
    assert "No rollups yet" not in output and "Rollups equal the line items" in output


def _readme_price_commands() -> list[list[str]]:
    block = README.read_text().split("## Operating it", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == [".venv/bin/python", "manage.py"] and words[2] in {
            "set_price",
            "set_token_price",
            "seed_defaults",
        }:
            commands.append(words[2:])
    return commands


def _prices() -> set[tuple]:
    grid = PriceConfig.objects.values_list("model__name", "action", "quality", "size", "unit_price")
    tokens = TokenPrice.objects.values_list(
        "model__name", "text_input", "cached_text_input", "image_input", "cached_image_input", "image_output",
        "text_output",
    )  # fmt: skip
    return set(grid) | {("tokens", *row) for row in tokens}


def test_following_the_readme_price_commands_keeps_every_seeded_price(defaults):
    commands = _readme_price_commands()
    assert [words for words in commands if "--delete" in words], "the README shows how to remove a price"
    seeded = _prices()
    for words in commands:
        call_command(*words, stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert _prices() == seeded
