"""GET /healthz answers 200 when its dependencies answer and 503 naming what is down."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


async def test_healthy(gateway_client, settings):
    response = await gateway_client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] == "ok"
    if settings.REDIS_URL:
        assert response.json()["checks"]["redis"] == "ok"


async def test_redis_down_is_503_and_named(gateway_client, settings):
    from gateway.core.redis import redis_client

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    redis_client.cache_clear()
    try:
        response = await gateway_client.get("/healthz")
    finally:
        redis_client.cache_clear()
    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("down")
    assert response.json()["checks"]["database"] == "ok"
