"""The catalog's lifecycle check (`manage.py check_model_catalog`, the daily beat task) against the fake OpenAI."""

import logging
from datetime import date, timedelta

import httpx
import pytest
import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail

from billing.tasks import model_catalog_check
from providers.base import ProviderError, UpstreamModel
from providers.models import ModelSpec
from providers.openai import OpenAIProvider
from tests.conftest import run

pytestmark = pytest.mark.django_db

TODAY = date(2026, 11, 10)
LIVE, DEPRECATED, RETIRED = ModelSpec.Status.LIVE, ModelSpec.Status.DEPRECATED, ModelSpec.Status.RETIRED


@pytest.fixture
def today():
    with time_machine.travel("2026-11-10 08:00:00Z"):
        yield TODAY


@pytest.fixture
def catalog(db):
    """Catalog models of each fate, and who is staff."""

    def model(name: str, provider: str = "openai", **fields) -> ModelSpec:
        return ModelSpec.objects.create(name=name, provider=provider, sizes=["1024x1024"], **fields)

    model("soon", upstream_model="soon-2026-01-01", successor="steady")
    model("later")
    model("gone")
    model("steady")
    model("idle", is_active=False)
    # A provider that cannot list its models: its date in the catalog still counts.
    model("flux-old", provider="bfl", shutdown_date=TODAY - timedelta(days=1))
    users = get_user_model().objects
    users.create_user("stella", "stella@example.com", is_staff=True)
    users.create_user("sam", "", is_staff=True)
    users.create_user("alice", "alice@example.com")


@pytest.fixture
def upstream(fake_openai, catalog):
    """The fake OpenAI lists every model but `gone`, with shutdown dates for `soon`, `later` and `idle`."""
    fake_openai.listed_models = {
        "soon-2026-01-01": (TODAY + timedelta(days=20)).isoformat(),
        "later": (TODAY + timedelta(days=90)).isoformat(),
        "steady": None,
        "idle": (TODAY + timedelta(days=5)).isoformat(),
        "gpt-image-2": None,
    }
    return fake_openai


def states() -> dict[str, tuple[str, date | None]]:
    return {spec.name: (spec.status, spec.shutdown_date) for spec in ModelSpec.objects.all()}


def test_the_check_updates_the_catalog_and_warns_staff_once(upstream, today, caplog):
    caplog.set_level(logging.WARNING, logger="providers.lifecycle")
    output = run("check_model_catalog")
    assert states() == {
        "soon": (DEPRECATED, TODAY + timedelta(days=20)),
        "later": (DEPRECATED, TODAY + timedelta(days=90)),
        "gone": (RETIRED, TODAY),
        "steady": (LIVE, None),
        "idle": (DEPRECATED, TODAY + timedelta(days=5)),
        "flux-old": (RETIRED, TODAY - timedelta(days=1)),
    }
    assert "Checked openai: 5 catalog model(s) compared with its list." in output
    assert "Not checked bfl: it is not configured (no credentials)." in output
    assert f"Changed gone: live → retired, shutdown date none → {TODAY} (openai no longer lists gone)." in output

    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["stella@example.com"], "staff with an email address, nobody else"
    assert email.subject == "imagegate: 3 catalog models retiring upstream"
    assert "- soon (openai) shuts down upstream on 2026-11-30 (in 20 days); its successor is steady." in email.body
    assert "- gone (openai) was shut down upstream on 2026-11-10; no successor is set" in email.body
    assert "- flux-old (bfl) was shut down upstream on 2026-11-09" in email.body
    assert "later" not in email.body, "90 days ahead is outside the warning window"
    assert "idle" not in email.body, "an inactive model serves nobody"
    warned = [record.getMessage() for record in caplog.records if record.name == "providers.lifecycle"]
    assert [line.split(" (")[0] for line in warned] == [
        "catalog model flux-old",
        "catalog model gone",
        "catalog model soon",
    ]

    again = run("check_model_catalog")
    assert len(mail.outbox) == 1, "never twice for the same model and date"
    assert "No catalog model needs a change." in again
    assert "No shutdown within 30 days that staff have not been warned of." in again

    # OpenAI moves the date: that is news again, for that model alone.
    upstream.listed_models["soon-2026-01-01"] = (TODAY + timedelta(days=25)).isoformat()
    run("check_model_catalog")
    assert len(mail.outbox) == 2 and mail.outbox[1].subject == "imagegate: 1 catalog model retiring upstream"
    assert "soon (openai) shuts down upstream on 2026-12-05 (in 25 days)" in mail.outbox[1].body

    run("check_model_catalog", "--days", "100")
    assert "- later (openai) shuts down upstream on 2027-02-08 (in 90 days)" in mail.outbox[2].body


def test_a_dry_run_says_what_it_would_do_and_does_nothing(upstream, today):
    before = states()
    output = run("check_model_catalog", "--dry-run")
    assert "Would change soon: live → deprecated, shutdown date none → 2026-11-30" in output
    assert "Would warn staff (stella@example.com):" in output
    assert "  gone (openai) was shut down upstream on 2026-11-10; no successor is set" in output
    assert output.endswith("Dry run: nothing was changed and no email was sent.\n")
    assert states() == before and mail.outbox == []
    assert not ModelSpec.objects.filter(shutdown_warned_for__isnull=False).exists()


def test_without_credentials_it_names_what_it_could_not_check_and_succeeds(catalog, today, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    output = run("check_model_catalog")
    assert "Not checked bfl: it is not configured (no credentials)." in output
    assert "Not checked openai: it is not configured (no credentials)." in output
    assert states()["gone"] == (LIVE, None), "an unchecked provider's models keep what they had"
    assert states()["flux-old"][0] == RETIRED, "a date in the catalog that has come still retires its model"


def test_a_provider_that_cannot_list_or_fails_is_named(upstream, today, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    assert "Not checked openai: its model list could not be read: The upstream provider rejected" in run(
        "check_model_catalog"
    )
    assert states()["gone"] == (LIVE, None)


def test_the_beat_task_runs_the_check_daily(upstream, today):
    assert "billing.tasks.model_catalog_check" in {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert model_catalog_check.apply().get() == {"providers_checked": 1, "changed": 5, "warned": 3}
    assert len(mail.outbox) == 1


def test_days_must_not_be_negative(catalog):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--days must be 0 or more"):
        run("check_model_catalog", "--days", "-1")


async def test_the_openai_adapter_reads_the_model_list_in_openais_wire_format(fake_openai):
    fake_openai.listed_models = {"gpt-image-2": None, "gpt-image-1-mini": "2026-12-01"}
    async with httpx.AsyncClient() as client:
        listed = await OpenAIProvider().list_models(client)
        assert listed == [UpstreamModel("gpt-image-2"), UpstreamModel("gpt-image-1-mini", date(2026, 12, 1))]
        fake_openai.listed_models = {"gpt-image-2": "next week"}
        with pytest.raises(ProviderError, match="malformed model list"):
            await OpenAIProvider().list_models(client)


def test_the_status_rule_is_the_date_first():
    def status(status: str, shutdown: date | None) -> str:
        return ModelSpec(status=status, shutdown_date=shutdown).effective_status(TODAY)

    assert status(LIVE, None) == LIVE
    assert status(LIVE, TODAY + timedelta(days=1)) == DEPRECATED
    assert status(LIVE, TODAY) == RETIRED
    assert status(DEPRECATED, TODAY - timedelta(days=300)) == RETIRED
    assert status(RETIRED, None) == RETIRED, "an operator may retire a model without a date"
    assert status(RETIRED, TODAY + timedelta(days=9)) == RETIRED
