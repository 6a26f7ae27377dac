"""The limits hold across OS processes: uvicorn with three workers, sharing PostgreSQL and Redis."""

import asyncio
import os
import subprocess
import sys
import time
from contextlib import suppress
from decimal import Decimal

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Sum

from accounts.audit import Actor
from accounts.services import end_user_limit_update, org_tier_set
from billing.limits import spend_limit_set
from billing.models import SpendReservation, UsageLineItem
from tests.conftest import _free_port
from tests.governance import SMALL_IMAGE, URL, bearer, small_image_price, statuses

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def three_workers(seeded):
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "LOCAL_PROVIDER_FALLBACK": "true",
        "DB_POOL_MAX": "8",
    }
    command = [sys.executable, "-m", "uvicorn", "gateway.asgi:application", "--port", str(port), "--workers", "3"]
    server = subprocess.Popen([*command, "--log-level", "warning"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with suppress(httpx.HTTPError):  # not listening yet
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn workers did not start")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


async def fire(url: str, headers: dict[str, str], count: int, body: dict | None = None) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    payload = body or SMALL_IMAGE
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        return list(await asyncio.gather(*(client.post(URL, json=payload, headers=headers) for _ in range(count))))


@pytest.fixture
def free_and_capped(make_org, make_key):
    small_image_price("0.04")
    free = make_org("acme", tier="free")
    # The burst tests the image windows, not the cap on requests in flight (test_concurrency_cap.py).
    org_tier_set(organization=free, tier_slug="free", max_concurrent_requests=1000)
    capped = make_org("globex", tier="free")
    org_tier_set(
        organization=capped,
        tier_slug="enterprise",
        images_per_minute=100000,
        images_per_day=100000,
        max_concurrent_requests=1000,
    )
    spend_limit_set(organization=capped, key_prefix=None, period="day", amount=Decimal("1.00"))
    return bearer(make_key(free).plaintext), bearer(make_key(capped).plaintext), capped


def test_rate_and_spend_limits_are_exact_across_three_worker_processes(three_workers, free_and_capped):
    free_headers, capped_headers, capped = free_and_capped
    assert statuses(asyncio.run(fire(three_workers, free_headers, 50))) == {200: 5, 429: 45}
    assert statuses(asyncio.run(fire(three_workers, capped_headers, 200))) == {200: 25, 429: 175}
    charged = UsageLineItem.objects.filter(organization=capped, status="succeeded").aggregate(total=Sum("cost"))
    assert charged["total"] == Decimal("1.00")
    assert not SpendReservation.objects.exists()


def test_an_end_user_limit_is_exact_across_three_worker_processes(three_workers, make_org, make_key):
    small_image_price("0.04")
    org = make_org("acme", tier="free")
    org_tier_set(
        organization=org,
        tier_slug="enterprise",
        images_per_minute=100000,
        images_per_day=100000,
        max_concurrent_requests=1000,
    )
    end_user_limit_update(organization=org, end_user="", actor=Actor.command(), changes={"images_per_minute": 3})
    headers = bearer(make_key(org).plaintext)
    alice = asyncio.run(fire(three_workers, headers, 30, {**SMALL_IMAGE, "user": "alice"}))
    assert statuses(alice) == {200: 3, 429: 27}
    assert statuses(asyncio.run(fire(three_workers, headers, 3, {**SMALL_IMAGE, "user": "bob"}))) == {200: 3}


@pytest.fixture
def slow_local_provider(monkeypatch):
    # Requested before three_workers, whose processes inherit it: every call of a burst is in flight at once.
    monkeypatch.setenv("LOCAL_PROVIDER_DELAY_MS", "1500")


def test_the_concurrency_cap_is_exact_across_three_worker_processes(
    slow_local_provider, three_workers, make_org, make_key
):
    small_image_price("0.01")
    org = make_org("acme", tier="free")
    org_tier_set(organization=org, tier_slug="enterprise", images_per_minute=100000, max_concurrent_requests=4)
    capped_headers = bearer(make_key(org).plaintext)
    other_headers = bearer(make_key(make_org("globex", tier="pro")).plaintext)

    async def both():
        return await asyncio.gather(fire(three_workers, capped_headers, 24), fire(three_workers, other_headers, 10))

    capped, other = asyncio.run(both())
    assert statuses(capped) == {200: 4, 429: 20}
    assert {r.json()["error"]["code"] for r in capped if r.status_code == 429} == {"too_many_concurrent_requests"}
    # The other tenant, at the same moment, is under its own cap (Pro: 20).
    assert statuses(other) == {200: 10}
