"""Rate limits while Redis is down (RATE_LIMIT_ON_REDIS_FAILURE=open) and once it is back.

Each worker process counts on its own while Redis is down, so each takes its share of every limit
(ceil(limit / WEB_CONCURRENCY)); and Redis's shared count is back with the first request after it returns.
"""

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from contextlib import suppress
from urllib.parse import urlsplit

import httpx
import pytest
from django.db import connection

from accounts.services import org_tier_set
from tests.conftest import _free_port
from tests.governance import SMALL_IMAGE, URL, bearer, small_image_price, statuses

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

WORKERS = 4
LIMIT = 40  # images per minute


@pytest.fixture
def limited_headers(make_org, make_key) -> dict[str, str]:
    small_image_price("0.01")
    org = make_org("acme", tier="free")
    org_tier_set(organization=org, tier_slug="enterprise", images_per_minute=LIMIT, images_per_day=100000)
    return bearer(make_key(org).plaintext)


@pytest.fixture
def workers_without_redis(seeded):
    """uvicorn with WORKERS processes (told so by WEB_CONCURRENCY, as `make serve` does), Redis unreachable."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        "REDIS_URL": f"redis://127.0.0.1:{_free_port()}/9",  # nothing listens there
        "RATE_LIMIT_ON_REDIS_FAILURE": "open",
        "WEB_CONCURRENCY": str(WORKERS),
        "LOCAL_PROVIDER_FALLBACK": "true",
        "DB_POOL_MAX": "4",
    }
    command = [sys.executable, "-m", "uvicorn", "gateway.asgi:application", "--port", str(port)]
    server = subprocess.Popen([*command, "--log-level", "error"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with suppress(httpx.HTTPError):  # not listening yet
                if httpx.get(f"{url}/healthz", timeout=1).status_code in (200, 503):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn workers did not start")
            time.sleep(0.2)
        time.sleep(2)  # every worker up, not just the first
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


async def _fire_in_waves(url: str, headers: dict[str, str], waves: int, per_wave: int) -> list[httpx.Response]:
    """Fresh connections in each wave, so the kernel spreads them over the workers."""
    responses: list[httpx.Response] = []
    for _ in range(waves):
        limits = httpx.Limits(max_connections=per_wave, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            posts = (client.post(URL, json=SMALL_IMAGE, headers=headers) for _ in range(per_wave))
            responses.extend(await asyncio.gather(*posts))
    return responses


@pytest.mark.slow
@pytest.mark.postgres
def test_redis_down_workers_together_admit_no_more_than_the_limit(workers_without_redis, limited_headers):
    responses = asyncio.run(_fire_in_waves(workers_without_redis, limited_headers, waves=8, per_wave=40))
    counts = statuses(responses)
    assert set(counts) <= {200, 429}, counts
    # Each worker admits ceil(40 / 4) = 10 at most: 40 together (before, 40 each: up to 160).
    assert 0 < counts[200] <= LIMIT, counts


class _RedisProxy:
    """A TCP relay to the test Redis that can go down (refusing and cutting connections) and come back."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}{parts.path}"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        # Ends quietly when the test's loop closes (Python 3.11's server callback chokes on a cancelled handler).
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def test_enforcement_is_back_within_five_seconds_of_redis_returning(gateway_client, limited_headers, settings):
    real_redis = settings.REDIS_URL
    if not real_redis:
        pytest.skip("needs Redis")
    proxy = _RedisProxy(real_redis)
    await proxy.up()
    settings.REDIS_URL = proxy.url
    settings.RATE_LIMIT_ON_REDIS_FAILURE = "open"
    settings.RATE_LIMIT_PROCESSES = 1
    settings.LOCAL_PROVIDER_FALLBACK = True
    body = {**SMALL_IMAGE, "n": 10}

    async def post() -> int:
        return (await gateway_client.post(URL, json=body, headers=limited_headers)).status_code

    assert await post() == 200  # counted by Redis: 10 of 40
    await proxy.down()
    # Down: this process counts alone, from nothing: 40 more, then full.
    assert [await post() for _ in range(5)] == [200, 200, 200, 200, 429]
    await proxy.up()
    returned = time.monotonic()
    # Back: Redis's count (10 of 40) decides again, where the process's own (40 of 40) would refuse.
    while await post() != 200:
        assert time.monotonic() - returned < 5, "Redis's count did not return within 5 s"
        await asyncio.sleep(0.2)
    assert [await post() for _ in range(3)] == [200, 200, 429]  # 20, 30, 40 of 40 on Redis, then full
    await proxy.down()
