"""The Redis backend: consume.lua and refund.lua, run by SHA on Redis's clock, shared by every process."""

import asyncio
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio
from django.conf import settings
from redis.commands.core import AsyncScript

from gateway.pipeline.ratelimit.rules import RateDecision, Refusal, Scope, ScopeUsage, Tally

# Connections per event loop (worker process). A request holds one for a single script call of well under a
# millisecond, so a burst larger than this waits its turn (up to CONNECTION_WAIT_SECONDS) instead of failing:
# a failure would fall back to a per-process count and lose the shared, exact one.
CONNECTIONS_PER_LOOP = 50
CONNECTION_WAIT_SECONDS = 5
_CONSUME = Path(__file__).with_name("consume.lua").read_text()
_REFUND = Path(__file__).with_name("refund.lua").read_text()


@dataclass(frozen=True)
class _Scripts:
    url: str
    consume: AsyncScript
    refund: AsyncScript


class RedisLimiter:
    """Every window of every scope checked and consumed in one script, so all workers share one exact count.

    Raises RedisError or OSError when Redis cannot answer; what happens then is the caller's policy.
    """

    def __init__(self) -> None:
        self._scripts: dict[int, _Scripts] = {}

    async def consume(self, scopes: list[Scope], n: int, token: str) -> RateDecision:
        limits = [limit for scope in scopes for limit in (scope.per_minute, scope.per_day)]
        raw = await self._loaded().consume(keys=_keys(scopes), args=[n, token, *limits])
        return RateDecision.from_tally(_tally(raw, len(scopes)), scopes, n, token, local=False)

    async def refund(self, decision: RateDecision) -> None:
        await self._loaded().refund(keys=_keys(decision.scopes), args=[decision.n, decision.token, decision.day])

    def _loaded(self) -> _Scripts:
        """The scripts (sent once, then run by SHA) on the running loop's client; a client is bound to its loop."""
        loop_id = id(asyncio.get_running_loop())
        cached = self._scripts.get(loop_id)
        if cached is None or cached.url != settings.REDIS_URL:
            if len(self._scripts) > 8:
                self._scripts.clear()
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                settings.REDIS_URL,
                max_connections=CONNECTIONS_PER_LOOP,
                timeout=CONNECTION_WAIT_SECONDS,
                socket_connect_timeout=1,
                socket_timeout=1,
            )
            client = redis.asyncio.Redis(connection_pool=pool)
            cached = _Scripts(
                url=settings.REDIS_URL, consume=client.register_script(_CONSUME), refund=client.register_script(_REFUND)
            )
            self._scripts[loop_id] = cached
        return cached


def _keys(scopes: list[Scope]) -> list[str]:
    return [name for scope in scopes for name in (f"{scope.key}:m", f"{scope.key}:d")]


def _tally(raw: list, scope_count: int) -> Tally:
    """consume.lua's flat reply (its layout is documented at the top of the script) as a Tally."""
    allowed, refused, window, retry_ms, day = (int(v) for v in raw[:5])
    usage = [ScopeUsage(*(int(v) for v in raw[5 + 3 * i : 8 + 3 * i])) for i in range(scope_count)]
    refusal = None if allowed else Refusal(refused - 1, "minute" if window == 1 else "day", retry_ms)
    return Tally(day, usage, refusal)
