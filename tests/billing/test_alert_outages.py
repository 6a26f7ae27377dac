"""Outages around spend alerts lose nothing: a settlement whose alert cannot be recorded (the database failed
after the charge committed) still answers 200 and the alert is recorded later; alerts crossed while the broker
is down are recorded and delivered by the periodic redelivery, a bounded number of times."""

import logging
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django.utils import timezone

from accounts.models import Membership
from accounts.services import org_tier_set
from billing.alerts import alerts_redeliver
from billing.limits import spend_limit_set
from billing.models import AlertPolicy, SpendAlert, SpendReservation, UsageLineItem
from tests.billing.test_alerts import WebhookReceiver
from tests.conftest import serve_asgi
from tests.governance import SMALL_IMAGE, URL, bearer, small_image_price

pytestmark = pytest.mark.django_db(transaction=True)

TEN = {**SMALL_IMAGE, "n": 10}


@pytest.fixture(autouse=True)
def _loopback_webhooks_allowed(settings):
    # The receivers listen on loopback, which webhooks may reach only when an operator allows it.
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]


def _receiver(failures: int) -> Iterator[WebhookReceiver]:
    webhook = WebhookReceiver(failures=failures)
    with serve_asgi(webhook) as url:
        webhook.url = f"{url}/hooks/imagegate"
        yield webhook


@pytest.fixture
def receiver():
    yield from _receiver(failures=0)


@pytest.fixture
def failing_receiver():
    yield from _receiver(failures=1000)


def _alerting_org(make_org, make_key, webhook: WebhookReceiver) -> dict[str, str]:
    """acme, 0.04 an image, a 1.00 daily cap (80%: 20 images), its owner emailed and its webhook called."""
    small_image_price("0.04")
    org = make_org("acme", tier="free")
    org_tier_set(organization=org, tier_slug="enterprise", images_per_minute=1000, images_per_day=1000)
    spend_limit_set(organization=org, key_prefix=None, period="day", amount=Decimal("1.00"))
    owner = get_user_model().objects.create_user("alice", "alice@acme.test", "pw-alice-123")
    Membership.objects.create(user=owner, organization=org, role=Membership.Role.OWNER)
    AlertPolicy.objects.create(organization=org, webhook_url=webhook.url, webhook_secret="whsec-test")
    return bearer(make_key(org).plaintext)


def _sql(statement: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


async def _charged() -> list[tuple[str, Decimal]]:
    return [row async for row in UsageLineItem.objects.order_by("pk").values_list("status", "cost")]


@pytest.mark.postgres
async def test_alert_recording_failing_after_the_charge_still_answers_200_and_is_recorded_later(
    gateway_client, make_org, make_key, receiver, caplog
):
    headers = await sync_to_async(_alerting_org)(make_org, make_key, receiver)
    assert (await gateway_client.post(URL, json=TEN, headers=headers)).status_code == 200
    # A real fault in PostgreSQL: recording an alert fails as a dropped connection would.
    await sync_to_async(_sql)(
        "CREATE FUNCTION alert_refused() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'connection lost' USING ERRCODE = '08006'; END $$; "
        "CREATE TRIGGER alert_refused BEFORE INSERT ON billing_spendalert "
        "FOR EACH ROW EXECUTE FUNCTION alert_refused()"
    )
    try:
        with caplog.at_level(logging.WARNING, logger="billing.ledger"):
            crossing = await gateway_client.post(URL, json=TEN, headers=headers)
    finally:
        await sync_to_async(_sql)("DROP TRIGGER alert_refused ON billing_spendalert; DROP FUNCTION alert_refused()")
    assert crossing.status_code == 200, crossing.text
    assert len(crossing.json()["data"]) == 10 and crossing.json()["data"][0]["b64_json"]
    assert await _charged() == [("succeeded", Decimal("0.40"))] * 2, "each charged once"
    assert not await SpendReservation.objects.aexists()
    assert not await SpendAlert.objects.aexists()
    [logged] = [r for r in caplog.records if "spend alerts not recorded yet" in r.getMessage()]
    assert logged.exc_info is None

    # The periodic redelivery records the crossing from the counter, then delivers it.
    await sync_to_async(alerts_redeliver)(now=timezone.now() + timedelta(minutes=2))
    alert = await SpendAlert.objects.aget()
    assert (alert.threshold, alert.spent, alert.cap) == (80, Decimal("0.80"), Decimal("1.00"))
    assert alert.emailed_at is not None and alert.webhook_delivered_at is not None
    assert [m.to for m in mail.outbox] == [["alice@acme.test"]]
    assert len(receiver.received) == 1


@pytest.fixture
def test_backend_pid() -> int:
    """The backend of the connection the test's own fixtures hold (on the main thread) for the whole test."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.postgres
async def test_pooled_connections_killed_between_requests_do_not_fail_the_next_settlement(
    gateway_client, make_org, make_key, receiver, test_backend_pid
):
    headers = await sync_to_async(_alerting_org)(make_org, make_key, receiver)
    assert (await gateway_client.post(URL, json=TEN, headers=headers)).status_code == 200
    # PostgreSQL drops every connection but the test's own (as a restart or failover would): the
    # pooled ones of the ORM and the hot path's are now dead, and found out only when used.
    await sync_to_async(_sql)(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid NOT IN (pg_backend_pid(), %s)",
        [test_backend_pid],
    )
    crossing = await gateway_client.post(URL, json=TEN, headers=headers)
    assert crossing.status_code == 200, crossing.text
    assert crossing.json()["data"][0]["b64_json"]
    assert await _charged() == [("succeeded", Decimal("0.40"))] * 2
    alert = await SpendAlert.objects.aget()
    assert alert.threshold == 80


async def test_alerts_crossed_while_the_broker_is_down_are_delivered_by_the_redelivery(
    gateway_client, make_org, make_key, receiver, broker_down, caplog
):
    headers = await sync_to_async(_alerting_org)(make_org, make_key, receiver)
    with caplog.at_level(logging.WARNING, logger="gateway.core.queue"):
        for _ in range(2):
            response = await gateway_client.post(URL, json=TEN, headers=headers)
            assert response.status_code == 200, response.text
    alert = await SpendAlert.objects.aget()
    assert alert.threshold == 80 and alert.emailed_at is None and alert.webhook_delivered_at is None
    [logged] = [r for r in caplog.records if "not enqueued" in r.getMessage()]
    assert "broker is unreachable" in logged.getMessage() and logged.exc_info is None

    # A new alert is left to its queued task for a minute; after that the redelivery steps in, once.
    assert await sync_to_async(alerts_redeliver)(now=timezone.now()) == 0
    later = timezone.now() + timedelta(minutes=2)
    assert await sync_to_async(alerts_redeliver)(now=later) == 1
    assert await sync_to_async(alerts_redeliver)(now=later + timedelta(hours=1)) == 0, "delivered: done"
    await alert.arefresh_from_db()
    assert alert.emailed_at is not None and alert.webhook_delivered_at is not None
    assert alert.redelivery_attempts == 1
    assert [m.to for m in mail.outbox] == [["alice@acme.test"]]
    assert len(receiver.received) == 1


async def test_redelivery_backs_off_and_gives_up_after_the_configured_attempts(
    gateway_client, make_org, make_key, failing_receiver, broker_down, settings
):
    settings.ALERT_REDELIVERY_MAX_ATTEMPTS = 3
    headers = await sync_to_async(_alerting_org)(make_org, make_key, failing_receiver)
    for _ in range(2):
        assert (await gateway_client.post(URL, json=TEN, headers=headers)).status_code == 200
    alert = await SpendAlert.objects.aget()
    start = alert.created_at + timedelta(minutes=1)
    # The first attempt a minute after the alert, then waits of 2 and 4 minutes; none after the third.
    for offset, attempts in [(0, 1), (1.5, 1), (2, 2), (5.5, 2), (6, 3), (60, 3), (600, 3)]:
        await sync_to_async(alerts_redeliver)(now=start + timedelta(minutes=offset))
        await alert.arefresh_from_db()
        assert alert.redelivery_attempts == attempts, offset
        assert len(failing_receiver.received) == attempts
    assert alert.redelivery_attempts == 3 and alert.webhook_delivered_at is None
    assert alert.webhook_last_error == "The webhook answered 500"
    assert [m.to for m in mail.outbox] == [["alice@acme.test"]], "emailed once, on the first attempt"
