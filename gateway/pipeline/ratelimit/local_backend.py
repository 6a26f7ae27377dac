"""The in-process backend: consume.lua's rules on this process's own counts and clock."""

import threading
import time
from collections import deque

from gateway.pipeline.ratelimit.rules import DAY_MS, MINUTE_MS, RateDecision, Refusal, Scope, ScopeUsage, Tally


class LocalLimiter:
    """The same rules for one process: used without Redis, or when Redis is down and failing open.

    Like the script, it keeps one entry "<token>:<i>" per image in the rolling minute, timed in
    whole milliseconds, and one count per UTC day; a lock makes each check-and-consume atomic
    across the threads of the process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._minute: dict[str, deque[tuple[int, str]]] = {}
        self._day: dict[str, tuple[int, int]] = {}

    def reset(self) -> None:
        with self._lock:
            self._minute.clear()
            self._day.clear()

    async def consume(self, scopes: list[Scope], n: int, token: str) -> RateDecision:
        with self._lock:
            tally = self._consume(scopes, n, token)
        return RateDecision.from_tally(tally, scopes, n, token, local=True)

    def _consume(self, scopes: list[Scope], n: int, token: str) -> Tally:
        now = time.time_ns() // 1_000_000
        day = now // DAY_MS
        refusal = None
        used = []
        for index, scope in enumerate(scopes):
            entries = self._minute.setdefault(scope.key, deque())
            while entries and entries[0][0] <= now - MINUTE_MS:
                entries.popleft()
            stored_day, day_used = self._day.get(scope.key, (day, 0))
            day_used = day_used if stored_day == day else 0
            used.append((len(entries), day_used))
            if refusal is not None:
                continue
            if len(entries) + n > scope.per_minute:
                # Room comes back when enough of the oldest images have left the window.
                expiring = len(entries) + n - scope.per_minute
                retry = entries[expiring - 1][0] + MINUTE_MS - now if expiring <= len(entries) else MINUTE_MS
                refusal = Refusal(index, "minute", retry)
            elif day_used + n > scope.per_day:
                refusal = Refusal(index, "day", (day + 1) * DAY_MS - now)
        if refusal is None and n > 0:
            for scope, (_, day_used) in zip(scopes, used, strict=True):
                self._minute[scope.key].extend((now, f"{token}:{j}") for j in range(1, n + 1))
                self._day[scope.key] = (day, day_used + n)
            used = [(minute_used + n, day_used + n) for minute_used, day_used in used]
        usage = []
        for scope, (minute_used, day_used) in zip(scopes, used, strict=True):
            entries = self._minute[scope.key]
            reset = entries[0][0] + MINUTE_MS - now if entries else 0
            usage.append(ScopeUsage(minute_used, reset, day_used))
        return Tally(day, usage, refusal)

    async def refund(self, decision: RateDecision) -> None:
        members = {f"{decision.token}:{j}" for j in range(1, decision.n + 1)}
        with self._lock:
            for scope in decision.scopes:
                entries = self._minute.get(scope.key)
                if entries is not None:
                    self._minute[scope.key] = deque(e for e in entries if e[1] not in members)
                stored_day, day_used = self._day.get(scope.key, (decision.day, 0))
                if stored_day == decision.day:
                    self._day[scope.key] = (decision.day, max(0, day_used - decision.n))
