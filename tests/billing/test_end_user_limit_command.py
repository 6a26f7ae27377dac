"""manage.py set_end_user_limit: end users' image limits and spend caps, the default's, and require-user; audited."""

from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from accounts.models import AuditEvent, EndUserLimit, Organization
from billing.models import SpendLimit
from tests.conftest import run

pytestmark = pytest.mark.django_db(transaction=True)


def rates(org) -> dict[str, tuple[int | None, int | None]]:
    return {
        row.end_user: (row.images_per_minute, row.images_per_day)
        for row in EndUserLimit.objects.filter(organization=org)
    }


def caps(org) -> dict[tuple[str, str], Decimal]:
    rows = SpendLimit.objects.filter(organization=org, end_user__isnull=False)
    return {(row.end_user or "", row.period): row.amount for row in rows}


def test_the_default_and_a_named_end_user_are_set_changed_and_deleted(acme):
    out = run("set_end_user_limit", "--org", "acme", "--images-per-minute", "3", "--usd-per-day", "5")
    assert out == "Set images-per-minute 3, usd-per-day $5.00 for every end user (the default) in acme.\n"
    run("set_end_user_limit", "--org", "acme", "--user", "alice", "--images-per-day", "40", "--usd-total", "12.5")
    assert rates(acme) == {"": (3, None), "alice": (None, 40)}
    assert caps(acme) == {("", "day"): Decimal("5"), ("alice", "total"): Decimal("12.5")}
    # A limit not given is kept; 'none' lifts one.
    run("set_end_user_limit", "--org", "acme", "--user", "alice", "--images-per-minute", "9", "--usd-total", "none")
    assert rates(acme)["alice"] == (9, 40) and ("alice", "total") not in caps(acme)
    out = run("set_end_user_limit", "--org", "acme", "--user", "alice", "--delete")
    assert out == "Removed the limits and caps of end user 'alice' in acme.\n"
    assert rates(acme) == {"": (3, None)} and caps(acme) == {("", "day"): Decimal("5")}
    run("set_end_user_limit", "--org", "acme", "--delete")
    assert rates(acme) == {} and caps(acme) == {}
    actions = list(AuditEvent.objects.filter(organization=acme).values_list("action", flat=True))
    for action in ("end_user_limit.create", "end_user_limit.update", "end_user_limit.delete", "spend_limit.delete"):
        assert action in actions


def test_require_user_is_switched_on_and_off(acme):
    assert run("set_end_user_limit", "--org", "acme", "--require-user", "on") == (
        "Image requests of acme must name their end user.\n"
    )
    assert Organization.objects.get(pk=acme.pk).require_end_user
    run("set_end_user_limit", "--org", "acme", "--require-user", "off")
    assert not Organization.objects.get(pk=acme.pk).require_end_user
    assert AuditEvent.objects.filter(action="organization.require_end_user").count() == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "nope", "--images-per-minute", "3"], "Unknown organization 'nope'"),
        (["--org", "acme"], "Nothing to do"),
        (["--org", "acme", "--images-per-minute", "-1"], "--images-per-minute takes a whole number of images"),
        (["--org", "acme", "--images-per-day", "0"], "at least 1"),
        (["--org", "acme", "--usd-per-day", "five"], "--usd-per-day: 'five' is not an amount in USD"),
        (["--org", "acme", "--usd-per-month", "-3"], "must be a non-negative amount"),
        (["--org", "acme", "--user", "x" * 257, "--images-per-day", "3"], "at most 256 characters"),
        (["--org", "acme", "--user", "", "--images-per-day", "3"], "--user needs an end user id"),
        (["--org", "acme", "--delete", "--images-per-day", "3"], "give it without limits or caps"),
        (["--org", "acme", "--user", "ghost", "--delete"], "There are no limits on end user 'ghost' to delete"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(acme, args, message):
    with pytest.raises(CommandError, match=message.replace("$", r"\$")):
        call_command("set_end_user_limit", *args)
    assert rates(acme) == {} and caps(acme) == {}


def test_a_bad_cap_after_a_good_limit_changes_nothing(acme):
    with pytest.raises(CommandError):
        call_command("set_end_user_limit", "--org", "acme", "--images-per-minute", "3", "--usd-total", "0.0000001")
    assert rates(acme) == {}


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit):
        call_command("set_end_user_limit", "--help")
    text = capsys.readouterr().out
    for option in ("--user", "--images-per-minute", "--usd-total", "--delete", "--require-user"):
        assert option in text
