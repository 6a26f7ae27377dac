"""The Redis backend: consume.lua and refund.lua, run by SHA on Redis's clock, shared by every process."""

from dataclasses import dataclass
from pathlib import Path

from redis.commands.core import AsyncScript

from gateway.core.redis import redis_loop_client
from gateway.pipeline.ratelimit.rules import RateDecision, Refusal, Scope, ScopeUsage, Tally

_CONSUME = Path(__file__).with_name("consume.lua").read_text()
_REFUND = Path(__file__).with_name("refund.lua").read_text()


@dataclass(frozen=True)
class _Scripts:
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
        """The scripts (sent once, then run by SHA) on the running loop's client."""
        client = redis_loop_client()
        cached = self._scripts.get(id(client))
        if cached is None:
            if len(self._scripts) > 8:
                self._scripts.clear()
            cached = _Scripts(consume=client.register_script(_CONSUME), refund=client.register_script(_REFUND))
            self._scripts[id(client)] = cached
        return cached


def _keys(scopes: list[Scope]) -> list[str]:
    return [name for scope in scopes for name in (f"{scope.key}:m", f"{scope.key}:d")]


def _tally(raw: list, scope_count: int) -> Tally:
    """consume.lua's flat reply (its layout is documented at the top of the script) as a Tally."""
    allowed, refused, window, retry_ms, day = (int(v) for v in raw[:5])
    usage = [ScopeUsage(*(int(v) for v in raw[5 + 3 * i : 8 + 3 * i])) for i in range(scope_count)]
    refusal = None if allowed else Refusal(refused - 1, "minute" if window == 1 else "day", retry_ms)
    return Tally(day, usage, refusal)
