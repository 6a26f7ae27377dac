"""The shared Redis connections (rate limits, the concurrency cap, cache), when REDIS_URL is set."""

import asyncio
from functools import cache

import redis
import redis.asyncio
from django.conf import settings

# Connections per event loop (worker process). A request holds one for a single script call of well under a
# millisecond, so a burst larger than this waits its turn (up to CONNECTION_WAIT_SECONDS) instead of failing:
# a failure would fall back to a per-process count and lose the shared, exact one.
CONNECTIONS_PER_LOOP = 50
CONNECTION_WAIT_SECONDS = 5


@cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)


_loop_clients: dict[int, tuple[str, redis.asyncio.Redis]] = {}


def redis_loop_client() -> redis.asyncio.Redis:
    """The running event loop's asyncio client (a client is bound to its loop), made on first use."""
    loop_id = id(asyncio.get_running_loop())
    cached = _loop_clients.get(loop_id)
    if cached is None or cached[0] != settings.REDIS_URL:
        if len(_loop_clients) > 8:  # loops of finished tests and threads
            _loop_clients.clear()
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=CONNECTIONS_PER_LOOP,
            timeout=CONNECTION_WAIT_SECONDS,
            socket_connect_timeout=1,
            socket_timeout=1,
        )
        cached = (settings.REDIS_URL, redis.asyncio.Redis(connection_pool=pool))
        _loop_clients[loop_id] = cached
    return cached[1]
