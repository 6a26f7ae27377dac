"""Daily rollups equal the line items; reconciliation catches a tampered row; rebuilding is idempotent."""

from datetime import date
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Organization
from billing.models import DailyUsageRollup, UsageRollupDay
from billing.tasks import usage_reconcile_recent, usage_rollup_recent
from billing.usage.rollups import rollup_rebuild, rollup_reconcile


def test_rebuild_is_idempotent_and_matches_line_items(orgs, ledger):
    rollup_rebuild(day=date(2026, 3, 1))
    rollup_rebuild(day=date(2026, 3, 1))
    rows = DailyUsageRollup.objects.filter(day=date(2026, 3, 1), organization=orgs["acme"])
    assert rows.count() == 2
    assert sum(row.amount for row in rows) == Decimal("0.094")
    assert sorted((row.model, row.images, row.requests) for row in rows) == [("dall-e-2", 3, 1), ("dall-e-3", 1, 1)]
    assert UsageRollupDay.objects.filter(day=date(2026, 3, 1)).count() == Organization.objects.count()
    assert rollup_reconcile(first=date(2026, 3, 1), last=date(2026, 3, 1)) == []


def test_reconciliation_catches_a_tampered_row(orgs, ledger, capsys):
    call_command("rollup_usage", "--from", "2026-03-01", "--to", "2026-04-01")
    call_command("reconcile_usage", "--from", "2026-03-01", "--to", "2026-04-01")
    assert "Rollups equal the line items" in capsys.readouterr().out

    row = DailyUsageRollup.objects.get(day=date(2026, 3, 2))
    row.amount += Decimal("0.01")
    row.save(update_fields=["amount"])
    with pytest.raises(CommandError, match="1 rollup group"):
        call_command("reconcile_usage", "--from", "2026-03-01", "--to", "2026-04-01", "--org", "acme")
    out = capsys.readouterr().out
    assert "2026-03-02" in out and "0.08 USD / provider cost 0.080001 USD, rollups 1 / 1 / 0 / 0.09 USD" in out

    call_command("rollup_usage", "--from", "2026-03-02", "--to", "2026-03-02", "--org", "acme")
    assert rollup_reconcile(first=date(2026, 3, 1), last=date(2026, 4, 1)) == []


def test_reconciliation_catches_a_mismatched_provider_cost(orgs, ledger, capsys):
    """The amount charged agrees, what the provider charged us does not: the rollup is wrong all the same."""
    call_command("rollup_usage", "--from", "2026-03-01", "--to", "2026-03-31")
    row = DailyUsageRollup.objects.get(day=date(2026, 3, 2))
    assert row.provider_cost == Decimal("0.080001") and row.amount == Decimal("0.08")
    row.provider_cost = Decimal("0.08")
    row.save(update_fields=["provider_cost"])
    differences = rollup_reconcile(first=date(2026, 3, 1), last=date(2026, 3, 31))
    assert [(d.line_items.provider_cost, d.rollups.provider_cost) for d in differences] == [
        (Decimal("0.080001"), Decimal("0.08"))
    ]
    assert differences[0].line_items.amount == differences[0].rollups.amount
    with pytest.raises(CommandError, match="1 rollup group"):
        call_command("reconcile_usage", "--from", "2026-03-01", "--to", "2026-03-31")
    out = capsys.readouterr().out
    assert "0.08 USD / provider cost 0.080001 USD, rollups 1 / 1 / 0 / 0.08 USD / provider cost 0.08 USD" in out
    call_command("rollup_usage", "--from", "2026-03-02", "--to", "2026-03-02")
    assert rollup_reconcile(first=date(2026, 3, 1), last=date(2026, 3, 31)) == []


def test_rollups_carry_the_provider_cost_of_their_line_items(orgs, ledger):
    rollup_rebuild(day=date(2026, 3, 1))
    rows = DailyUsageRollup.objects.filter(day=date(2026, 3, 1), organization=orgs["acme"])
    assert sorted((row.model, row.amount, row.provider_cost) for row in rows) == [
        ("dall-e-2", Decimal("0.054"), Decimal("0.048")),
        ("dall-e-3", Decimal("0.04"), Decimal("0.032")),
    ]


def test_reconciliation_catches_a_missing_and_an_extra_row(orgs, ledger):
    rollup_rebuild(day=date(2026, 3, 10))
    DailyUsageRollup.objects.filter(day=date(2026, 3, 10)).delete()
    assert len(rollup_reconcile(first=date(2026, 3, 10), last=date(2026, 3, 10))) == 1
    rollup_rebuild(day=date(2026, 3, 10))
    extra = DailyUsageRollup.objects.get(day=date(2026, 3, 10))
    extra.pk = None
    extra.save()
    assert len(rollup_reconcile(first=date(2026, 3, 10), last=date(2026, 3, 10))) == 1


def test_commands_reject_bad_arguments(orgs):
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("rollup_usage", "--from", "soon")
    with pytest.raises(CommandError, match="must not be after"):
        call_command("reconcile_usage", "--from", "2026-03-02", "--to", "2026-03-01")
    with pytest.raises(CommandError, match="Unknown organization"):
        call_command("reconcile_usage", "--org", "nope")


def test_periodic_tasks_rollup_and_reconcile_recent_days(orgs, keys, add_item, caplog):
    from django.utils import timezone

    add_item(orgs["acme"], keys["acme"], timezone.now())
    assert usage_rollup_recent() == 1
    assert usage_reconcile_recent() == 0
    DailyUsageRollup.objects.update(amount=Decimal("9"))
    # Today is not yet closed, so the periodic check (closed days only) ignores it until tomorrow.
    assert usage_reconcile_recent() == 0
