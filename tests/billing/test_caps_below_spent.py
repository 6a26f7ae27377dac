"""A cap set below what its period has already spent: the pages show it exhausted and its alerts fire once."""

import threading
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connections
from django.urls import reverse

from accounts.audit import Actor
from accounts.services import org_tier_set
from billing.limits import cap_bars_get, spend_limit_save
from billing.models import SpendAlert, SpendLimit
from tests.governance import bearer, post_many, small_image_price, statuses
from tests.people import line_item

pytestmark = pytest.mark.django_db(transaction=True)


def spend(people, usd: str, count: int = 1) -> None:
    """On top of the cast's own $0.06 of today (tests/people.py)."""
    for index in range(count):
        line_item(people.acme, people.alice_key, request_id=f"spent-{usd}-{index}", cost=Decimal(usd))


def save_cap(people, usd: str, period: str = "day") -> SpendLimit:
    return spend_limit_save(
        organization=people.acme, key_prefix=None, period=period, amount=Decimal(usd), actor=Actor.command()
    )


def thresholds(limit: SpendLimit) -> list[tuple[int, Decimal, Decimal]]:
    return [(a.threshold, a.spent, a.cap) for a in SpendAlert.objects.filter(spend_limit=limit).order_by("threshold")]


def test_a_new_cap_below_the_spend_shows_exhausted_with_no_request_since(people, as_user):
    spend(people, "1.47", count=2)
    limit = save_cap(people, "2.00")
    [bar] = cap_bars_get(organization=people.acme)
    assert (bar.spent, bar.percent, bar.left) == (Decimal("3.00"), 100, Decimal(0))
    for page in ("overview", "limits"):
        html = as_user(people.alice).get(reverse(page, args=["acme"])).content.decode()
        assert "$3.00 / $2.00" in html and "100% used" in html and "$0.00 left" in html, page
    assert thresholds(limit) == [(80, Decimal("3.00"), Decimal("2.00")), (100, Decimal("3.00"), Decimal("2.00"))]
    alerts_page = as_user(people.alice).get(reverse("alerts", args=["acme"])).content.decode()
    assert "100%" in alerts_page and "80%" in alerts_page


def test_lowering_a_cap_fires_the_thresholds_it_crosses_once(people):
    spend(people, "0.79")
    limit = save_cap(people, "10.00")
    assert thresholds(limit) == []
    save_cap(people, "1.00")
    assert thresholds(limit) == [(80, Decimal("0.85"), Decimal("1.00"))]
    save_cap(people, "0.90")
    save_cap(people, "1.00")
    assert [t for t, _, _ in thresholds(limit)] == [80], "once per cap, period and threshold"
    call_command("set_spend_limit", "--org", "acme", "--period", "day", "--usd", "0.50")
    assert [t for t, _, _ in thresholds(limit)] == [80, 100], "the command saves through the same service"


def test_a_month_cap_counts_the_month_and_ignores_other_organizations(people):
    spend(people, "3.94")
    line_item(people.globex, None, request_id="globex-spend", cost=Decimal("9.00"))
    limit = save_cap(people, "3.00", period="month")
    [bar] = cap_bars_get(organization=people.acme)
    assert (bar.limit, bar.spent, bar.percent, bar.left) == (limit, Decimal("4.00"), 100, Decimal(0))


def _cap_org(make_org, make_key):
    small_image_price("0.04")
    org = make_org("acme", tier="free")
    org_tier_set(organization=org, tier_slug="enterprise", images_per_minute=100000, images_per_day=100000)
    return org, make_key(org)


async def test_requests_refused_by_a_cap_below_the_spend_leave_the_pages_true(gateway_client, make_org, make_key):
    org, key = await sync_to_async(_cap_org)(make_org, make_key)
    headers = bearer(key.plaintext)
    assert statuses(await post_many(gateway_client, headers, 5)) == {200: 5}, "$0.20 spent before any cap"
    # Created behind the service's back (the admin, a data fix): only a refusal can notice it is full.
    limit = await SpendLimit.objects.acreate(organization=org, period="day", amount=Decimal("0.10"))
    refused = await post_many(gateway_client, headers, 6)
    assert statuses(refused) == {429: 6}
    assert "has $0.00 left" in refused[0].json()["error"]["message"]
    [bar] = await sync_to_async(cap_bars_get)(organization=org)
    assert (bar.spent, bar.reserved, bar.percent, bar.left) == (Decimal("0.20"), Decimal(0), 100, Decimal(0))
    alerts = [(a.threshold, a.spent) async for a in SpendAlert.objects.filter(spend_limit=limit).order_by("threshold")]
    assert alerts == [(80, Decimal("0.20")), (100, Decimal("0.20"))], "once each, though six refusals found it full"


def test_two_saves_at_once_record_each_alert_once(people, settings):
    spend(people, "4.94")
    limit = save_cap(people, "100.00")
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def lower(amount: str) -> None:
        try:
            barrier.wait(timeout=10)
            save_cap(people, amount)
        except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=lower, args=(amount,)) for amount in ("4.00", "4.50")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert [t for t, _, _ in thresholds(limit)] == [80, 100]
