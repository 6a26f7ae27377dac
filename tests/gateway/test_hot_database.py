"""The request path's own PostgreSQL connections (gateway.core.db): reused, bounded, and recovered after a restart."""

import asyncio
from decimal import Decimal

import pytest
from django.db import connection

from billing.models import UsageLineItem
from gateway.core.db import hot_connections_close
from tests.governance import SMALL_IMAGE, URL, bearer, small_image_price

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def _hot_path_backends(*, terminate: bool = False) -> int:
    """How many connections the hot path holds; with `terminate`, drop them all first, as a database restart does."""
    selected = "pg_terminate_backend(pid)" if terminate else "pid"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT {selected} FROM pg_stat_activity "  # noqa: S608  (no input)
            "WHERE datname = current_database() AND application_name = 'imagegate-hot-path') AS found"
        )
        return cursor.fetchone()[0]


@pytest.fixture
def enterprise_key(make_org, make_key):
    from accounts.services import org_tier_set

    small_image_price("0.02")
    org = make_org("acme", tier="free")
    org_tier_set(organization=org, tier_slug="enterprise", images_per_minute=100000, images_per_day=100000)
    return make_key(org)


async def test_connections_are_reused_and_bounded_by_the_setting(gateway_client, enterprise_key, settings):
    settings.DB_HOT_POOL_MAX = 3
    await hot_connections_close()
    responses = await asyncio.gather(
        *(gateway_client.post(URL, json=SMALL_IMAGE, headers=bearer(enterprise_key.plaintext)) for _ in range(30))
    )
    assert [r.status_code for r in responses] == [200] * 30
    in_use = await asyncio.to_thread(_hot_path_backends)
    assert 1 <= in_use <= 3, f"{in_use} connections for 30 requests with DB_HOT_POOL_MAX=3"
    await hot_connections_close()


async def test_requests_succeed_after_the_database_drops_every_idle_connection(gateway_client, enterprise_key):
    headers = bearer(enterprise_key.plaintext)
    for _ in range(3):
        assert (await gateway_client.post(URL, json=SMALL_IMAGE, headers=headers)).status_code == 200
    assert await asyncio.to_thread(_hot_path_backends, terminate=True) >= 1
    for _ in range(3):
        response = await gateway_client.post(URL, json=SMALL_IMAGE, headers=headers)
        assert response.status_code == 200, response.text
    costs = [item.cost async for item in UsageLineItem.objects.filter(status="succeeded")]
    assert costs == [Decimal("0.02")] * 6, "every request recorded once, none lost or doubled"
    await hot_connections_close()
