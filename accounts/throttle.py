"""Failed authentications per client address: after AUTH_FAILURES_PER_MINUTE of them, the address is refused.

Every door that takes an API key (the image endpoints, /v1/models, the job routes, the usage API) asks
`auth_refusal` before it looks a key up, and records a key it refused with `auth_failure_record`. Once an
address has failed AUTH_FAILURES_PER_MINUTE times in its window (a minute from its first failure), every
request from it, whatever key it sends, is refused with 429 and `Retry-After` until the window ends, before
any database query: someone guessing keys learns nothing more, and costs the database nothing.

Failures are counted in Redis when it is configured (one atomic INCR per failure, shared by every worker and
machine), else in this process. A process refuses an address from the moment a count it recorded reaches the
limit, so with several processes an address may fail at most once more per process before each knows (the
refusal itself is a dictionary read, no round trip on a request that authenticates). With Redis down, failures
are counted in this process alone: requests are never failed for want of Redis.
"""

import logging
import threading
import time
from collections import OrderedDict

from django.conf import settings
from redis.exceptions import RedisError

from gateway.core.errors import GatewayError
from gateway.core.redis import redis_client

logger = logging.getLogger("accounts.throttle")

WINDOW_SECONDS = 60
# Addresses remembered per process, oldest forgotten first: an attacker with many addresses cannot grow it.
MAX_ADDRESSES = 100_000
# After Redis fails, failures are counted here for this long before Redis is tried again.
REDIS_RETRY_SECONDS = 5.0
# INCR the address's count, starting its window with the first failure; the count and the window's milliseconds left.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"""


class _Addresses:
    """This process's view: failures counted here, and the addresses refused until a moment (monotonic time)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self.refused_until: OrderedDict[str, float] = OrderedDict()
        self.redis_retry_at = 0.0

    def reset(self) -> None:
        with self.lock:
            self.failures.clear()
            self.refused_until.clear()
            self.redis_retry_at = 0.0

    def count(self, address: str, now: float) -> tuple[int, float]:
        """One more failure of `address` counted here: (failures in its window, seconds the window has left)."""
        with self.lock:
            failures, window_end = self.failures.get(address, (0, now + WINDOW_SECONDS))
            if window_end <= now:
                failures, window_end = 0, now + WINDOW_SECONDS
            self.failures[address] = (failures + 1, window_end)
            self.failures.move_to_end(address)
            _bound(self.failures)
            return failures + 1, window_end - now

    def refuse(self, address: str, until: float) -> None:
        with self.lock:
            self.refused_until[address] = until
            self.refused_until.move_to_end(address)
            _bound(self.refused_until)


def _bound(found: OrderedDict) -> None:
    while len(found) > MAX_ADDRESSES:
        found.popitem(last=False)


addresses = _Addresses()


def auth_refusal(address: str) -> GatewayError | None:
    """The 429 for an address that has failed too often lately, or None; no I/O."""
    until = addresses.refused_until.get(address)
    if until is None:
        return None
    left = until - time.monotonic()
    if left <= 0:
        return None
    seconds = max(1, round(left))
    return GatewayError(
        429,
        "too_many_failed_authentications",
        f"Too many requests with an invalid API key from this address: try again in {seconds} s, with a valid key.",
        headers={"Retry-After": str(seconds)},
    )


def auth_failure_record(address: str) -> None:
    """Count a refused key from `address`; at the limit, the address is refused for the rest of its window.

    Blocking (a Redis round trip): async callers run it on a borrowed thread.
    """
    limit = settings.AUTH_FAILURES_PER_MINUTE
    if limit <= 0:
        return
    now = time.monotonic()
    failures, seconds_left = _count(address, now)
    if failures >= limit:
        addresses.refuse(address, now + seconds_left)


def _count(address: str, now: float) -> tuple[int, float]:
    if settings.REDIS_URL and now >= addresses.redis_retry_at:
        try:
            failures, milliseconds_left = redis_client().eval(_COUNT, 1, f"af:{address}", WINDOW_SECONDS * 1000)
            return int(failures), max(int(milliseconds_left), 0) / 1000
        except (RedisError, OSError) as exc:
            addresses.redis_retry_at = now + REDIS_RETRY_SECONDS
            logger.warning("Redis unavailable (%s): failed authentications counted per process", type(exc).__name__)
    return addresses.count(address, now)
