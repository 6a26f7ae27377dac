"""The two rate-limit backends decide alike: one history gives the same decisions on Redis and in process."""

import asyncio
from dataclasses import dataclass, replace

import pytest
import time_machine

from gateway.core.redis import redis_client
from gateway.pipeline.ratelimit import local_limiter, redis_limiter
from gateway.pipeline.ratelimit.rules import RateDecision, RateLimiter, Scope

ORG = Scope("rl:o:parity", "organization 'parity' (Test tier)", per_minute=4, per_day=6)
KEY = Scope("rl:k:parity", "API key 'ig_parity'", per_minute=3, per_day=6)
DAILY = Scope("rl:o:daily", "organization 'daily' (Test tier)", per_minute=10, per_day=3)


@dataclass(frozen=True)
class Consume:
    scopes: list[Scope]
    n: int
    refused: tuple[Scope, str] | None  # the refused scope and window
    minute_remaining: int
    day_remaining: int


@dataclass(frozen=True)
class Refund:
    step: int  # the index of the Consume whose images go back


SCENARIO: list[Consume | Refund] = [
    Consume([ORG], 0, None, 4, 6),  # 0: a read consumes nothing
    Consume([ORG, KEY], 2, None, 1, 4),  # 1: the key's minute binds the headers
    Consume([ORG, KEY], 2, (KEY, "minute"), 1, 4),  # 2: the organization has room, the key has not
    Consume([ORG], 5, (ORG, "minute"), 2, 4),  # 3: more than the limit, refused whole
    Consume([ORG], 2, None, 0, 2),  # 4: exactly the room left
    Refund(4),  # 5
    Consume([ORG, KEY], 0, None, 1, 4),  # 6: step 4's images are back in both windows
    Consume([ORG], 2, None, 0, 2),  # 7
    Consume([ORG], 1, (ORG, "minute"), 0, 2),  # 8
    Consume([DAILY], 3, None, 7, 0),  # 9
    Consume([DAILY], 1, (DAILY, "day"), 7, 0),  # 10: the day is spent while the minute has room
    Consume([DAILY], 0, None, 7, 0),  # 11: a read still answers with an empty day
    Refund(9),  # 12
    Consume([DAILY], 0, None, 10, 3),  # 13
]


async def play(limiter: RateLimiter, index: int, decisions: list[RateDecision]) -> RateDecision:
    step = SCENARIO[index]
    if isinstance(step, Refund):
        await limiter.refund(decisions[step.step])
        return decisions[step.step]
    decision = await limiter.consume(step.scopes, step.n, f"req-{index}")
    assert decision.allowed == (step.refused is None), index
    assert (decision.refused_scope, decision.refused_window) == (step.refused or (None, "")), index
    assert (decision.minute.remaining, decision.today.remaining) == (step.minute_remaining, step.day_remaining), index
    assert decision.n == (step.n if decision.allowed else 0)
    if step.refused is not None:
        if step.refused[1] == "day":
            assert decision.retry_after == decision.today.reset_seconds, index
        else:
            assert 59 <= decision.retry_after <= 60, index
    return decision


def timeless(decision: RateDecision) -> RateDecision:
    """The decision without its clock readings and without the name of the backend that made it."""
    return replace(
        decision,
        minute=replace(decision.minute, reset_seconds=0),
        today=replace(decision.today, reset_seconds=0),
        retry_after=0,
        local=False,
        usage=[replace(used, minute_reset_ms=0) for used in decision.usage],
    )


@pytest.mark.redis
async def test_redis_and_the_process_limiter_decide_alike():
    on_redis: list[RateDecision] = []
    in_process: list[RateDecision] = []
    for index in range(len(SCENARIO)):
        # Step by step, so both backends read their clocks within moments of each other.
        on_redis.append(await play(redis_limiter, index, on_redis))
        in_process.append(await play(local_limiter, index, in_process))
    for index, (remote, local) in enumerate(zip(on_redis, in_process, strict=True)):
        assert (remote.local, local.local) == (False, True)
        assert timeless(remote) == timeless(local), index
        assert abs(remote.minute.reset_seconds - local.minute.reset_seconds) <= 1, index
        assert abs(remote.today.reset_seconds - local.today.reset_seconds) <= 1, index
        assert abs(remote.retry_after - local.retry_after) <= 1, index
        if not remote.allowed:
            assert remote.error().status == local.error().status == 429


async def test_the_process_limiter_follows_the_scenario():
    """The same scenario without Redis, so the embedded mode checks its backend too."""
    decisions: list[RateDecision] = []
    for index in range(len(SCENARIO)):
        decisions.append(await play(local_limiter, index, decisions))


async def test_room_comes_back_when_the_oldest_images_leave_the_minute():
    with time_machine.travel("2030-01-01 12:00:00Z", tick=False) as clock:
        await local_limiter.consume([ORG], 2, "first")
        clock.shift(10)
        await local_limiter.consume([ORG], 2, "second")
        clock.shift(10)
        refused = await local_limiter.consume([ORG], 3, "third")
        assert refused.refused_window == "minute"
        assert refused.retry_after == 50, "the second request's first image leaves at 12:01:10"
        assert refused.minute.reset_seconds == 40, "the first request's images leave at 12:01:00"
        assert refused.today.reset_seconds == 12 * 3600 - 20
        clock.shift(40)
        assert (await local_limiter.consume([ORG], 2, "fourth")).allowed
        assert (await local_limiter.consume([ORG], 1, "fifth")).refused_window == "minute"


async def test_the_minute_resets_when_its_oldest_image_leaves_in_process():
    with time_machine.travel("2030-01-01 12:00:00Z", tick=False) as clock:
        assert (await local_limiter.consume([ORG], 1, "first")).minute.reset_seconds == 60
        clock.shift(25)
        decision = await local_limiter.consume([ORG], 1, "second")
        assert decision.minute.reset_seconds == 35, "not 60: the first image gives its room back at 12:01:00"
        clock.shift(36)
        assert (await local_limiter.consume([ORG], 0, "read")).minute.reset_seconds == 24


@pytest.mark.redis
async def test_the_minute_resets_when_its_oldest_image_leaves_on_redis():
    assert (await redis_limiter.consume([ORG], 1, "first")).minute.reset_seconds == 60
    # As if the first image had been counted 25 seconds ago: Redis keeps its own clock, which no test can move.
    redis_client().zincrby(f"{ORG.key}:m", -25_000, "first:1")
    decision = await redis_limiter.consume([ORG], 1, "second")
    assert decision.minute.reset_seconds == 35, "not 60: the first image gives its room back in 35 seconds"


@pytest.mark.redis
async def test_more_checks_at_once_than_redis_connections_wait_for_one_instead_of_failing_open():
    """A burst larger than the connection pool must queue for Redis, not fall back to a per-process count."""
    burst = Scope("rl:o:burst", "organization 'burst' (Test tier)", per_minute=1000, per_day=1000)
    decisions = await asyncio.gather(*(redis_limiter.consume([burst], 1, f"burst-{i}") for i in range(300)))
    assert all(decision.allowed for decision in decisions)
    assert (await redis_limiter.consume([burst], 0, "read")).minute.remaining == 700
