"""The fault drills of `make faults` (docs/operations.md, "Fault drills"): each one breaks a real server under
load, then checks the four invariants of faults/invariants.py after the ledger's sweep."""

import asyncio
import os
import signal
import time

import psycopg
import pytest

from faults.conftest import FIGURES, Stack
from faults.harness import Answer, Client, seed_orgs, sweep
from faults.invariants import (
    all_invariants,
    charged_exactly_the_200s,
    connect,
    counters_match_line_items,
    nothing_held,
    tally,
)

REDIS_OUTAGE_SECONDS = float(os.environ.get("FAULTS_REDIS_OUTAGE_SECONDS", "30"))
PG_OUTAGE_SECONDS = float(os.environ.get("FAULTS_PG_OUTAGE_SECONDS", "10"))
# The saturated organization's images per minute (a drill's outage is shorter than the minute).
SATURATED_PER_MINUTE = 6
ENFORCEMENT_BACK_SECONDS = 5
PG_ANSWER_SECONDS = 2


def check_invariants(env: dict[str, str], answers: list[Answer], orgs: dict) -> list[str]:
    swept = sweep(env)
    problems = all_invariants(answers, [org.id for org in orgs.values()])
    return [f"invariant: {p}" for p in problems] + ([] if not problems else [f"(the sweep closed {swept})"])


def window(answers: list[Answer], org: str, start: float, end: float) -> list[Answer]:
    return [a for a in answers if a.org == org and start <= a.sent < end]


# ----------------------------------------------------------------------- 1. Redis stopped under load


@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_redis_outage(stack: Stack, mode: str) -> None:
    env = stack.env(RATE_LIMIT_ON_REDIS_FAILURE=mode)
    orgs = seed_orgs(env, busy=10**9, saturated=SATURATED_PER_MINUTE)
    gateway = await asyncio.to_thread(stack.gateway, f"gateway-redis-{mode}", env)
    client = Client(gateway, orgs)
    done = False
    loads = [asyncio.create_task(client.loop("busy", lambda: done)) for _ in range(3)]
    # The saturated organization's requests reach every worker (each would keep its own count without Redis).
    loads += [asyncio.create_task(client.loop("saturated", lambda: done, pause=0.2, fresh=True)) for _ in range(2)]
    try:
        await asyncio.sleep(5)  # the saturated organization uses up its minute
        await asyncio.to_thread(stack.redis.stop)
        down = time.monotonic()
        await asyncio.sleep(REDIS_OUTAGE_SECONDS)
        # The outage ends when the restart begins: a request sent after that may find Redis back already.
        restarting = time.monotonic()
        await asyncio.to_thread(stack.redis.start)
        up = time.monotonic()
        await asyncio.sleep(10)
    finally:
        done = True
        await asyncio.gather(*loads, return_exceptions=True)
        await client.close()
    answers = client.answers
    problems = [f"no answer: {a.error}" for a in answers if a.status is None]
    during = window(answers, "busy", down, restarting) + window(answers, "saturated", down, restarting)
    if mode == "closed":
        refused = [a for a in during if a.status == 503]
        admitted = [a for a in during if a.status == 200]
        if not refused or admitted:
            shown = [f"{a.org} {a.request_id} sent {a.sent - down:.2f} s into the outage" for a in admitted[:3]]
            problems.append(f"closed: during the outage {tally(during)}; expected only 503s; admitted: {shown}")
    else:
        admitted = [a for a in window(answers, "saturated", down, restarting) if a.status == 200]
        FIGURES.append(f"redis open: saturated org ({SATURATED_PER_MINUTE}/min) admitted {len(admitted)} in the outage")
        if len(admitted) > SATURATED_PER_MINUTE:
            problems.append(
                f"open: the saturated org ({SATURATED_PER_MINUTE}/min) was admitted {len(admitted)} times in a "
                f"{REDIS_OUTAGE_SECONDS:.0f} s outage across {gateway.workers} workers"
            )
    after = [a for a in window(answers, "saturated", up, float("inf")) if a.status == 429]
    if after:
        back = min(a.sent + a.elapsed for a in after) - up
        FIGURES.append(f"redis {mode}: first 429 on the saturated org {back:.2f} s after Redis returned")
        if back > ENFORCEMENT_BACK_SECONDS:
            problems.append(f"enforcement back {back:.1f} s after Redis returned (at most {ENFORCEMENT_BACK_SECONDS})")
    else:
        problems.append("no 429 on the saturated org after Redis returned")
    if not [a for a in window(answers, "busy", up + ENFORCEMENT_BACK_SECONDS, float("inf")) if a.status == 200]:
        problems.append("the busy org got no 200 once Redis was back")
    FIGURES.append(f"redis {mode}: {tally(answers)} (outage window: {tally(during)})")
    problems += check_invariants(env, answers, orgs)
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------- 2. PostgreSQL stopped under load


async def test_postgres_outage(stack: Stack) -> None:
    env = stack.env()
    orgs = seed_orgs(env, busy=10**9)
    gateway = await asyncio.to_thread(stack.gateway, "gateway-postgres", env)
    calls_before = await asyncio.to_thread(stack.upstream.calls)
    client = Client(gateway, orgs)
    done = False
    loads = [asyncio.create_task(client.loop("busy", lambda: done, pause=0.05)) for _ in range(4)]
    try:
        await asyncio.sleep(3)
        down = time.monotonic()
        await asyncio.to_thread(stack.postgres.stop)
        await asyncio.sleep(PG_OUTAGE_SECONDS)
        await asyncio.to_thread(stack.postgres.start)
        up = time.monotonic()
        # Probe beside the load until a request succeeds (about 30 s at most; the load goes on meanwhile).
        for _ in range(150):
            if (await client.send("busy")).status == 200:
                break
            await asyncio.sleep(0.2)
    finally:
        done = True
        await asyncio.gather(*loads, return_exceptions=True)
        await client.close()
    answers = client.answers
    problems = [f"no answer: {a.error}" for a in answers if a.status is None]
    during = window(answers, "busy", down, up)
    bad = [a for a in during if a.status != 200 and (a.status != 503 or a.retry_after is None)]
    slow = [a for a in during if a.status != 200 and a.elapsed > PG_ANSWER_SECONDS]
    if bad:
        problems.append(f"PostgreSQL down: {len(bad)} answers not 503 with Retry-After ({tally(bad)}), e.g. {bad[0]}")
    if slow:
        problems.append(
            f"PostgreSQL down: {len(slow)} refusals slower than {PG_ANSWER_SECONDS} s (max "
            f"{max(a.elapsed for a in slow):.1f} s)"
        )
    recovered = [a for a in answers if a.sent > up and a.status == 200]
    if recovered:
        FIGURES.append(f"postgres: first 200 {recovered[0].sent + recovered[0].elapsed - up:.2f} s after it returned")
    else:
        problems.append("no request succeeded within 30 s of PostgreSQL returning")
    calls = await asyncio.to_thread(stack.upstream.calls) - calls_before
    with connect() as conn:
        opened = conn.execute(
            "SELECT count(*) FROM billing_usagelineitem WHERE organization_id = %s AND status <> 'rejected'",
            (orgs["busy"].id,),
        ).fetchone()[0]
    if calls > opened:
        problems.append(f"{calls} provider calls but only {opened} line items opened (a call without a reservation)")
    FIGURES.append(f"postgres: {tally(answers)} (outage: {tally(during)}); {calls} provider calls, {opened} opened")
    problems += check_invariants(env, answers, orgs)
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------- 3. a faulty provider

# The one deadline a request may take against a provider that fails, with a margin for a loaded machine.
DEADLINE_MARGIN_SECONDS = 1.5
# What each fault must be mapped to (503 `upstream_unavailable` is the open breaker's refusal).
MAPPED = {"hang": {504}, "error500": {502}, "drop": {502}, "garbage": {502}}


@pytest.mark.parametrize("fault", ["hang", "error500", "drop", "garbage"])
async def test_provider_fault(stack: Stack, fault: str) -> None:
    env = stack.env(PROVIDER_MAX_RETRIES="2")
    deadline = float(env["REQUEST_DEADLINE_SECONDS"]) + DEADLINE_MARGIN_SECONDS
    cooldown = float(env["PROVIDER_BREAKER_COOLDOWN_SECONDS"])
    orgs = seed_orgs(env, busy=10**9)
    gateway = await asyncio.to_thread(stack.gateway, f"gateway-provider-{fault}", env, 2)
    client = Client(gateway, orgs)
    problems: list[str] = []
    try:
        await asyncio.to_thread(stack.upstream.fault, fault, 30)
        # Enough failures for every worker's breaker (each process keeps its own).
        flood = await asyncio.gather(*(client.send("busy") for _ in range(16)))
        unmapped = [a for a in flood if a.status not in MAPPED[fault] | {503}]
        late = [a for a in flood if a.elapsed > deadline]
        if unmapped:
            problems.append(f"{fault}: {tally(unmapped)} ({unmapped[0].code}), expected {sorted(MAPPED[fault])}")
        if late:
            problems.append(
                f"{fault}: {len(late)} of {len(flood)} answered after the {deadline:.1f} s deadline "
                f"(slowest {max(a.elapsed for a in late):.1f} s, {late[0].status} {late[0].code})"
            )
        FIGURES.append(f"provider {fault}: flood {tally(flood)}, slowest {max(a.elapsed for a in flood):.1f} s")
        # The breaker is open: a request is refused at once, the provider not called.
        refused_fast = False
        for _ in range(6):
            calls = await asyncio.to_thread(stack.upstream.calls)
            probe = await client.send("busy")
            skipped = await asyncio.to_thread(stack.upstream.calls) == calls
            if probe.status == 503 and probe.code == "upstream_unavailable" and skipped and probe.retry_after:
                refused_fast = True
                break
        if not refused_fast:
            problems.append(f"{fault}: the breaker never refused a request without calling the provider")
        # The provider heals: after the cool-down a trial call closes the breaker and requests succeed again.
        await asyncio.to_thread(stack.upstream.fault, "ok")
        healed = time.monotonic()
        await asyncio.sleep(cooldown)
        streak = 0
        while streak < 2 * gateway.workers and time.monotonic() - healed < cooldown + 15:
            answer = await client.send("busy")
            streak = streak + 1 if answer.status == 200 else 0
            if answer.status != 200:
                await asyncio.sleep(0.5)
        if streak < 2 * gateway.workers:
            problems.append(f"{fault}: the breaker did not close within {cooldown + 15:.0f} s of the provider healing")
        else:
            FIGURES.append(f"provider {fault}: serving again {time.monotonic() - healed:.1f} s after it healed")
    finally:
        await client.close()
    problems += [f"no answer: {a.error}" for a in client.answers if a.status is None]
    problems += check_invariants(env, client.answers, orgs)
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------- 4. a web worker killed mid-request


@pytest.mark.parametrize("beat", [True, False], ids=["with-beat", "without-beat"])
async def test_worker_killed(stack: Stack, beat: bool) -> None:
    env = stack.env()
    timeout = float(env["SPEND_RESERVATION_TIMEOUT_SECONDS"])
    orgs = seed_orgs(env, busy=10**9)
    if beat:
        stack.celery("celery-worker", ["worker", "-P", "solo", "--loglevel", "info"], env)
        stack.celery("celery-beat", ["beat", "--loglevel", "info", "-s", str(stack.run_dir / "beat-schedule")], env)
    gateway = await asyncio.to_thread(stack.gateway, f"gateway-kill-{'beat' if beat else 'nobeat'}", env)
    client = Client(gateway, orgs)
    try:
        # Calls that take 3 s (under the provider timeout): every request is in flight, holding its reservation.
        await asyncio.to_thread(stack.upstream.fault, "hang", 3)
        calls = await asyncio.to_thread(stack.upstream.calls)
        inflight = [asyncio.create_task(client.send("busy")) for _ in range(9)]
        await asyncio.to_thread(_wait_calls, stack, calls + 9, 10)
        victim = max(gateway.worker_pids(), key=gateway.open_connections)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        await asyncio.gather(*inflight)
        await asyncio.to_thread(stack.upstream.fault, "ok")
        lost = [a for a in client.answers if a.status is None]
        assert lost, f"worker {victim} held no request when killed: {tally(client.answers)}"
        answered = {a.request_id for a in client.answers if a.request_id}
        released = await asyncio.to_thread(_wait_released, orgs["busy"].id, answered, len(lost), killed + 2 * timeout)
        # The web keeps serving: the supervisor replaced the worker.
        after = await client.send("busy")
    finally:
        await client.close()
    problems = []
    if released is None:
        problems.append(
            f"{len(lost)} killed request(s): reservation not released with its line item closed within "
            f"{2 * timeout:.0f} s of the kill (SPEND_RESERVATION_TIMEOUT_SECONDS={timeout:.0f}, "
            f"{'with' if beat else 'without'} Celery beat)"
        )
    else:
        FIGURES.append(
            f"worker killed ({'with' if beat else 'without'} beat): {len(lost)} lost request(s) released "
            f"{released - killed:.1f} s after the kill"
        )
    if after.status != 200:
        problems.append(f"after the kill the gateway answered {after.status} {after.code}")
    problems += check_invariants(env, [a for a in client.answers if a.status is not None], orgs)
    assert not problems, "\n".join(problems)


def _wait_calls(stack: Stack, count: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while stack.upstream.calls() < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the provider did not receive {count} calls within {seconds:.0f} s")
        time.sleep(0.05)


def _wait_released(org_id: int, answered: set[str], lost: int, until: float) -> float | None:
    """Poll until the killed requests' line items (those no client got an answer for) are closed as abandoned,
    holding nothing; returns when (monotonic), or None when not by `until`."""
    while time.monotonic() < until:
        try:
            with connect() as conn:
                rows = conn.execute(
                    "SELECT i.request_id, i.status, i.error_code,"
                    " (SELECT count(*) FROM billing_spendreservation r WHERE r.line_item_id = i.id)"
                    " FROM billing_usagelineitem i WHERE i.organization_id = %s",
                    (org_id,),
                ).fetchall()
        except psycopg.Error:
            rows = []
        orphans = [row for row in rows if row[0] not in answered]
        if len(orphans) >= lost and all(
            status == "failed" and code == "reservation_expired" and not held for _, status, code, held in orphans
        ):
            return time.monotonic()
        time.sleep(0.5)
    return None


# ----------------------------------------------------------------------- the invariants themselves


async def test_invariants_catch_violations(stack: Stack) -> None:
    """The invariants hold after a clean request, and each one reports the breach made by hand after it."""
    env = stack.env()
    orgs = seed_orgs(env, busy=10**9)
    gateway = await asyncio.to_thread(stack.gateway, "gateway-invariants", env, 2)
    client = Client(gateway, orgs)
    try:
        answer = await client.send("busy")
    finally:
        await client.close()
    assert answer.status == 200, answer
    org_ids = [orgs["busy"].id]
    assert all_invariants(client.answers, org_ids) == []
    assert charged_exactly_the_200s([], org_ids), "a charge whose client got no 200 went unnoticed"
    with connect() as conn:
        conn.execute(
            "UPDATE billing_spendcounter SET spent = spent + 0.01, reserved = reserved + 0.02 WHERE spend_limit_id IN"
            " (SELECT id FROM billing_spendlimit WHERE organization_id = %s)",
            (orgs["busy"].id,),
        )
        conn.execute("UPDATE billing_usagelineitem SET status = 'pending' WHERE request_id = %s", (answer.request_id,))
    assert counters_match_line_items(org_ids), "a counter off by 0.01 went unnoticed"
    held = nothing_held(org_ids)
    assert any("pending" in p for p in held) and any("reserved" in p for p in held), held
    assert any("200" in p for p in charged_exactly_the_200s(client.answers, org_ids))
