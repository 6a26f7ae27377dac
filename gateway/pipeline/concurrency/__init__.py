"""The per-organization cap on image requests in flight at once (429 too_many_concurrent_requests).

A tenant that sends hundreds of slow calls at once would otherwise hold every worker's upstream connections
while the others wait. The cap is the organization's override, else its tier's (accounts: one column each,
read by phase one's caller statement, so it costs no query). A request takes its slot once the rate limits
let it through (a refusal gives the images back) and before it holds spend, and gives it back in a `finally`
however it ends (answered, failed, cancelled, streamed, or its client gone).

With Redis the slots are one sorted set per organization (`cc:<organization id>`: request id → start time),
taken by one Lua script and given back by ZREM, so the cap is exact across every worker process and machine.
A slot older than CONCURRENCY_SLOT_SECONDS is dropped when the next request comes: a worker killed
mid-request cannot hold its slots for ever. Without Redis (the embedded mode), or while Redis cannot be
reached, each process counts its own requests: failing open to a per-process count on purpose, since a
refusal for every tenant would be worse than a cap that is briefly per process.

Async jobs are not counted: their web half returns 202 at once, and their provider calls run on Celery
workers, whose own concurrency bounds them.
"""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from gateway.core import metrics
from gateway.core.errors import GatewayError
from gateway.core.redis import redis_loop_client

logger = logging.getLogger("gateway.pipeline.concurrency")

_ACQUIRE = Path(__file__).with_name("acquire.lua").read_text()
# Seconds a refused client is told to wait: slots of image calls free up within seconds.
RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class Slot:
    """One request's place among its organization's requests in flight; `shared` when Redis holds it."""

    organization_id: int
    token: str
    shared: bool


class LocalSlots:
    """This process's requests in flight, per organization (the embedded mode, or Redis unreachable)."""

    def __init__(self) -> None:
        self._in_flight: dict[int, set[str]] = {}

    def take(self, organization_id: int, token: str, cap: int) -> bool:
        tokens = self._in_flight.setdefault(organization_id, set())
        if len(tokens) >= cap:
            return False
        tokens.add(token)
        return True

    def give_back(self, organization_id: int, token: str) -> None:
        tokens = self._in_flight.get(organization_id)
        if tokens is not None:
            tokens.discard(token)
            if not tokens:
                del self._in_flight[organization_id]

    def reset(self) -> None:
        self._in_flight.clear()


local_slots = LocalSlots()
_last_fallback_warning = 0.0


_scripts: dict[int, AsyncScript] = {}


def _acquire_script() -> AsyncScript:
    """acquire.lua on the running loop's client: sent once, then run by its SHA."""
    client = redis_loop_client()
    script = _scripts.get(id(client))
    if script is None:
        if len(_scripts) > 8:
            _scripts.clear()
        script = _scripts[id(client)] = client.register_script(_ACQUIRE)
    return script


def _key(organization_id: int) -> str:
    return f"cc:{organization_id}"


async def concurrency_acquire(*, caller, token: str) -> Slot | None:
    """Take a slot for request `token` of the caller's organization; None when the caller has no cap.

    Raises GatewayError 429 too_many_concurrent_requests when the organization is at its cap.
    """
    cap = caller.max_concurrent_requests
    if not cap:
        return None
    organization_id = caller.organization_id
    slot = await _take(organization_id, token, cap)
    if slot is None:
        raise GatewayError(
            429,
            "too_many_concurrent_requests",
            f"Organization '{caller.organization_slug}' already has {cap} image requests in flight, its limit: "
            "wait for one to finish, then retry.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    metrics.in_flight(+1)
    return slot


async def concurrency_release(slot: Slot) -> None:
    """Give a slot back; a Redis failure leaves it to expire with CONCURRENCY_SLOT_SECONDS."""
    metrics.in_flight(-1)
    if not slot.shared:
        local_slots.give_back(slot.organization_id, slot.token)
        return
    try:
        await redis_loop_client().zrem(_key(slot.organization_id), slot.token)
    except (RedisError, OSError) as exc:
        logger.warning("could not release a concurrency slot (%s); it expires on its own", exc.__class__.__name__)


async def _take(organization_id: int, token: str, cap: int) -> Slot | None:
    if settings.REDIS_URL:
        try:
            lifetime_ms = settings.CONCURRENCY_SLOT_SECONDS * 1000
            taken, _ = await _acquire_script()(keys=[_key(organization_id)], args=[token, cap, lifetime_ms])
            return Slot(organization_id, token, shared=True) if taken else None
        except (RedisError, OSError) as exc:
            _warn_fallback(exc)
    if not local_slots.take(organization_id, token, cap):
        return None
    return Slot(organization_id, token, shared=False)


def _warn_fallback(exc: Exception) -> None:
    global _last_fallback_warning
    # Once a minute at most: during an outage every request would otherwise log.
    if time.monotonic() - _last_fallback_warning > 60:
        _last_fallback_warning = time.monotonic()
        logger.warning("Redis unavailable (%s); the concurrency cap falls back to this process", exc.__class__.__name__)
