"""Spend alerts: once per cap, period and threshold; by email and a signed, retried webhook."""

import hashlib
import hmac
import json
import threading
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connections

from accounts.models import Membership
from accounts.services import org_tier_set
from billing.limits import spend_limit_set
from billing.models import AlertPolicy, SpendAlert
from billing.tasks import alert_deliver, spend_reservations_sweep
from gateway.celery import app as celery_app
from gateway.core.queue import enqueue_on_commit
from tests.conftest import serve_asgi
from tests.governance import SMALL_IMAGE, URL, bearer, small_image_price

pytestmark = pytest.mark.django_db(transaction=True)


class WebhookReceiver:
    """Answers 500 to the first `failures` deliveries, then 200; keeps what it received."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        status = 500 if len(self.received) <= self.failures else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def eager_celery():
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = eager


@pytest.fixture
def receiver(settings):
    # The receiver listens on loopback, which webhooks reach only where the operator allows it.
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    webhook = WebhookReceiver(failures=1)
    with serve_asgi(webhook) as url:
        webhook.url = f"{url}/hooks/imagegate"
        yield webhook


@pytest.fixture
def alerting_org(make_org, make_key, receiver, eager_celery):
    small_image_price("0.04")
    org = make_org("acme", tier="free")
    org_tier_set(organization=org, tier_slug="enterprise", images_per_minute=1000, images_per_day=1000)
    spend_limit_set(organization=org, key_prefix=None, period="day", amount=Decimal("1.00"))
    owner = get_user_model().objects.create_user("alice", "alice@acme.test", "pw-alice-123")
    Membership.objects.create(user=owner, organization=org, role=Membership.Role.OWNER)
    AlertPolicy.objects.create(organization=org, webhook_url=receiver.url, webhook_secret="whsec-test")
    return org, bearer(make_key(org).plaintext)


async def test_crossing_80_and_100_percent_alerts_once_each(gateway_client, alerting_org, receiver):
    org, headers = alerting_org
    ten = {**SMALL_IMAGE, "n": 10}
    for body in (ten, ten, {**SMALL_IMAGE, "n": 1}, {**SMALL_IMAGE, "n": 4}):
        assert (await gateway_client.post(URL, json=body, headers=headers)).status_code == 200
    alerts = [a async for a in SpendAlert.objects.order_by("threshold")]
    assert [(a.threshold, a.spent, a.cap) for a in alerts] == [
        (80, Decimal("0.80"), Decimal("1.00")),
        (100, Decimal("1.00"), Decimal("1.00")),
    ]
    # The first alert's webhook got a 500: emailed, not yet delivered; the retry Celery schedules delivers it.
    assert [(bool(a.emailed_at), bool(a.webhook_delivered_at), a.webhook_attempts) for a in alerts] == [
        (True, False, 1),
        (True, True, 1),
    ]
    assert alerts[0].webhook_last_error == "The webhook answered 500"
    await sync_to_async(alert_deliver.apply)(args=[alerts[0].pk])
    await alerts[0].arefresh_from_db()
    assert alerts[0].webhook_delivered_at is not None and alerts[0].webhook_attempts == 2
    assert alerts[0].webhook_last_error == ""
    assert [m.to for m in mail.outbox] == [["alice@acme.test"], ["alice@acme.test"]], "never emailed twice"
    assert "80% of the day spend cap reached" in mail.outbox[0].subject
    assert len(receiver.received) == 3
    for request_headers, body in receiver.received:
        timestamp, signature = (part.split("=", 1)[1] for part in request_headers["x-imagegate-signature"].split(","))
        expected = hmac.new(b"whsec-test", f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(signature, expected)
    payload = json.loads(receiver.received[1][1])
    assert payload["organization"] == "acme" and payload["threshold_percent"] == 100
    assert payload["spent_usd"] == "1.00" and payload["cap"] == {
        "period": "day",
        "amount_usd": "1.00",
        "api_key_prefix": None,
        "project": None,
        "end_user": None,
        "owner": "organization 'acme'",
    }
    refused = await gateway_client.post(URL, json=SMALL_IMAGE, headers=headers)
    assert refused.status_code == 429
    assert await SpendAlert.objects.acount() == 2


# Two inline tasks that each wait at their own gate: two threads run them at once, ending in a chosen order.
_GATES: dict[int, tuple[threading.Event, threading.Event]] = {}


@celery_app.task(name="tests.wait_at_gate")
def _wait_at_gate(gate: int) -> None:
    entered, release = _GATES[gate]
    entered.set()
    release.wait(10)


def _enqueue_on_a_thread(gate: int) -> threading.Thread:
    def run() -> None:
        try:
            enqueue_on_commit("tests.wait_at_gate", gate)  # outside a transaction: at once
        finally:
            connections.close_all()

    _GATES[gate] = (threading.Event(), threading.Event())
    thread = threading.Thread(target=run)
    thread.start()
    assert _GATES[gate][0].wait(10)
    return thread


def test_inline_tasks_on_two_threads_at_once_leave_task_results_readable(eager_celery):
    """Alerts of concurrent settlements run inline on their own threads, and the first to start may end first."""
    first = _enqueue_on_a_thread(1)
    second = _enqueue_on_a_thread(2)
    for thread, gate in ((first, 1), (second, 2)):
        _GATES[gate][1].set()
        thread.join(10)
    assert spend_reservations_sweep.apply().get() == 0
