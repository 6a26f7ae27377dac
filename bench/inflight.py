"""Benchmark: many slow requests in flight, through the gateway against the upstream alone, in one run.

Starts a fake OpenAI upstream that answers after a delay (tests/fakes/openai_upstream behind a sleep) and
`make serve` (production mode: PostgreSQL + Redis from DATABASE_URL/REDIS_URL, several uvicorn workers, the
openai adapter pointed at the fake by OPENAI_BASE_URL), seeds an Enterprise organization whose limits the load
cannot reach, then, per scenario (upstream delay, clients, seconds), sends the same closed-loop load twice:
to the fake upstream directly ("the upstream alone", the ceiling on this machine, since the load generator
shares its cores) and through the gateway. Each client sends its next request when the last one is answered;
clients start spread over the first `--ramp` seconds; requests started before the end are awaited, and
throughput is completed requests over the time from the first start to the last answer.

Measured side by side: throughput and its ratio, errors, p50/p99 latency and the p99 the gateway adds; during
the gateway's run, its processes' memory (peak of their summed PSS, the target, and RSS beside it) and
`/healthz` latency, polled every 0.5 s by this process; its CPU, and the time its threads waited for a CPU (the
machine's other load, which these figures are at the mercy of). The load comes from `--generators` processes
(aiohttp, no connection limit), so the generator is not what caps the figures. Exits 1 when a request failed or
the throughput ratio fell below `--fail-ratio` (a CI run is noisy: the targets are printed, not enforced).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/imagegate_bench REDIS_URL=redis://127.0.0.1:6379/6 \\
        .venv/bin/python bench/inflight.py --scenario 2:500:30 --scenario 10:2000:40
"""

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import httpx
from governance import ROOT, children, cpu_seconds, free_port, wait_for  # bench/governance.py, beside this script

BODY = {"model": "gpt-image-2", "size": "1024x1024", "quality": "low", "prompt": "bench"}
UPSTREAM_KEY = "sk-bench"
# The targets (docs/benchmarks.md, "Many slow requests in flight").
TARGET_RATIO = 0.95
TARGET_ADDED_P99_MS = 100
TARGET_MEMORY_MB = 400
TARGET_HEALTHZ_MS = 100


# --- the fake upstream, in its own process ---------------------------------------------------------------


class DelayedUpstream:
    """The fake OpenAI upstream, answering each image request after `delay` seconds.

    `POST /bench/delay?seconds=N` sets the delay, so one upstream (and one gateway pointed at it) serves
    every scenario. The fake's record of requests is dropped: a benchmark sends too many to keep.
    """

    def __init__(self) -> None:
        from tests.fakes.openai_upstream import FakeOpenAI

        self.fake = FakeOpenAI(api_key=UPSTREAM_KEY)
        self.delay = 0.0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == "/bench/delay":
            self.delay = float(parse_qs(scope["query_string"].decode())["seconds"][0])
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        if scope["type"] == "http" and scope["path"].endswith("/images/generations"):
            await asyncio.sleep(self.delay)
        self.fake.requests.clear()
        await self.fake(scope, receive, send)


def serve_upstream(port: int) -> None:
    import uvicorn

    sys.path.insert(0, str(ROOT))  # tests.fakes

    # A backlog above the most clients a scenario opens at once: the ceiling must not be the fake's.
    uvicorn.run(DelayedUpstream(), host="127.0.0.1", port=port, log_level="warning", access_log=False, backlog=8192)


# --- the load generator, in its own processes -------------------------------------------------------------


async def closed_loop(url: str, key: str, clients: int, seconds: float, ramp: float) -> dict:
    """`clients` clients, each sending its next request when the last is answered, until `seconds` have passed."""
    import aiohttp

    latencies: list[float] = []
    errors: dict[str, int] = {}
    samples: dict[str, str] = {}  # one answer of each kind of failure, to say what failed
    headers = {"Authorization": f"Bearer {key}"}
    payload = json.dumps(BODY).encode()
    started = time.monotonic()
    end = started + seconds
    last = started

    async def client(index: int, session: aiohttp.ClientSession) -> None:
        nonlocal last
        await asyncio.sleep(ramp * index / clients)
        while time.monotonic() < end:
            sent = time.monotonic()
            try:
                async with session.post(url, data=payload, headers=headers) as response:
                    body = await response.read()
                    outcome = "ok" if response.status == 200 else f"HTTP {response.status}"
            except (TimeoutError, aiohttp.ClientError) as exc:
                outcome, body = type(exc).__name__, str(exc).encode()
            if outcome != "ok":
                samples.setdefault(outcome, body[:300].decode(errors="replace"))
            now = time.monotonic()
            last = max(last, now)
            if outcome == "ok":
                latencies.append(now - sent)
            else:
                errors[outcome] = errors.get(outcome, 0) + 1

    # No connection limit and no timeout but a generous one: the generator must never be what waits.
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=seconds + 120)
    headers_base = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers_base) as session:
        await asyncio.gather(*(client(i, session) for i in range(clients)))
    return {"latencies": latencies, "errors": errors, "samples": samples, "started": started, "last": last}


def run_load(args) -> None:
    import uvloop

    result = uvloop.run(closed_loop(args.url, args.key, args.clients, args.seconds, args.ramp))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    json.dump({**result, "cpu": usage.ru_utime + usage.ru_stime}, sys.stdout)


# --- measuring ---------------------------------------------------------------------------------------------


@dataclass
class Measure:
    requests: int
    errors: dict[str, int]
    throughput: float
    p50_ms: float
    p99_ms: float
    generator_cpu_s: float
    samples: dict[str, str]


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] * 1000 if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def runqueue_seconds(pids: list[int]) -> float:
    """Time these processes' threads spent runnable but waiting for a CPU (the machine's other load)."""
    total = 0
    for pid in pids:
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """(RSS, PSS) summed over the processes. RSS counts the pages they share (libraries) once per process;
    PSS splits each shared page between its sharers, so its sum is what they take from the machine."""
    totals = {"Rss:": 0, "Pss:": 0}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.split(" ", 1)[0] in totals:
                    totals[line.split(" ", 1)[0]] += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return totals["Rss:"] / 1024, totals["Pss:"] / 1024


def load(url: str, key: str, clients: int, seconds: float, ramp: float, args) -> Measure:
    """The closed-loop load from `args.generators` processes at once, their results merged."""
    share = [clients // args.generators + (i < clients % args.generators) for i in range(args.generators)]
    command = [sys.executable, __file__, "load", "--url", url, "--key", key]
    command += ["--seconds", str(seconds), "--ramp", str(ramp)]
    processes = [
        subprocess.Popen([*command, "--clients", str(n)], cwd=ROOT, stdout=subprocess.PIPE, text=True) for n in share
    ]
    outputs = [json.loads(process.communicate(timeout=seconds + 180)[0]) for process in processes]
    # The generators' own CPU, to show they are not what caps the figures.
    cpu = sum(out["cpu"] for out in outputs)
    latencies = [value for out in outputs for value in out["latencies"]]
    errors: dict[str, int] = {}
    for out in outputs:
        for name, count in out["errors"].items():
            errors[name] = errors.get(name, 0) + count
    elapsed = max(out["last"] for out in outputs) - min(out["started"] for out in outputs)
    samples = {kind: text for out in outputs for kind, text in out["samples"].items()}
    throughput = len(latencies) / elapsed
    return Measure(len(latencies), errors, throughput, pct(latencies, 50), pct(latencies, 99), cpu, samples)


class Watch:
    """During a gateway run: the gateway's memory (peak RSS sum) and /healthz latency every 0.5 s."""

    def __init__(self, health_url: str, pids: list[int]) -> None:
        self.health_url = health_url
        self.pids = pids
        self.peak_rss_mb = self.peak_pss_mb = 0.0
        self.health_ms: list[float] = []
        self.health_failures = 0
        self.cpu_s = 0.0
        self.runqueue_s = 0.0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        import aiohttp

        # A fresh connection per poll, as a load balancer's probe would open.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            while not self._stop.is_set():
                rss, pss = memory_mb(self.pids)
                self.peak_rss_mb, self.peak_pss_mb = max(self.peak_rss_mb, rss), max(self.peak_pss_mb, pss)
                sent = time.monotonic()
                try:
                    async with session.get(self.health_url, timeout=aiohttp.ClientTimeout(total=10)) as response:
                        await response.read()
                        ok = response.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                if ok:
                    self.health_ms.append((time.monotonic() - sent) * 1000)
                else:
                    self.health_failures += 1
                with contextlib.suppress(TimeoutError):  # the next poll is due
                    await asyncio.wait_for(self._stop.wait(), 0.5)

    def stop(self) -> None:
        self._stop.set()


async def through_gateway(url: str, key: str, clients: int, seconds: float, ramp: float, args, watch: Watch) -> Measure:
    poller = asyncio.create_task(watch.run())
    cpu, waited = cpu_seconds(watch.pids), runqueue_seconds(watch.pids)
    try:
        return await asyncio.to_thread(load, url, key, clients, seconds, ramp, args)
    finally:
        watch.cpu_s = cpu_seconds(watch.pids) - cpu
        watch.runqueue_s = runqueue_seconds(watch.pids) - waited
        watch.stop()
        await poller


def seed(env: dict[str, str]) -> str:
    """An Enterprise organization whose rate limits and spend the benchmark cannot reach; its API key."""
    script = """
import django; django.setup()
import secrets
from accounts.services import api_key_create, org_create, org_tier_set
from gateway.seed import seed_defaults
seed_defaults()
org = org_create(slug=f"inflight-{secrets.token_hex(3)}", tier_slug="free")
UNLIMITED = dict(images_per_minute=10**9, images_per_day=10**9, max_concurrent_requests=10**9)
org_tier_set(organization=org, tier_slug="enterprise", **UNLIMITED)
print(api_key_create(organization=org).plaintext)
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "DJANGO_SETTINGS_MODULE": "gateway.settings"},
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.split()[-1]


def verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


def report(scenario: tuple[float, int, float], direct: Measure, gateway: Measure, watch: Watch, floor: float) -> bool:
    """Prints the scenario's figures and targets; False when it failed outright (errors, or throughput far off)."""
    delay, clients, seconds = scenario
    ratio = gateway.throughput / direct.throughput
    added = gateway.p99_ms - direct.p99_ms
    health_max = max(watch.health_ms, default=float("nan"))
    print(f"\n{clients} clients, upstream answering after {delay:g} s, {seconds:g} s (closed loop):")
    print(f"{'':10} {'requests':>9} {'req/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7} {'load gen CPU s':>15}")
    for label, m in (("upstream", direct), ("gateway", gateway)):
        errors = sum(m.errors.values())
        print(
            f"{label:10} {m.requests:9d} {m.throughput:8.1f} {m.p50_ms:9.0f} {m.p99_ms:9.0f} {errors:7d} "
            f"{m.generator_cpu_s:15.1f}"
        )
    per_request = watch.cpu_s * 1000 / max(gateway.requests, 1)
    print(
        f"gateway CPU: {watch.cpu_s:.1f} s ({per_request:.2f} ms per request); its threads waited "
        f"{watch.runqueue_s:.1f} s for a CPU (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    if gateway.errors or direct.errors:
        print(f"errors: upstream {direct.errors}, gateway {gateway.errors}")
        for kind, text in {**direct.samples, **gateway.samples}.items():
            print(f"  {kind}: {text}")
    health_p99 = pct([v / 1000 for v in watch.health_ms], 99) if watch.health_ms else float("nan")
    rows = (
        ("throughput ratio", f"{ratio:.1%}", f">= {TARGET_RATIO:.0%}", ratio >= TARGET_RATIO),
        ("errors through the gateway", str(sum(gateway.errors.values())), "0", not gateway.errors),
        ("p99 added latency", f"{added:+.0f} ms", f"<= {TARGET_ADDED_P99_MS} ms", added <= TARGET_ADDED_P99_MS),
        ("gateway memory, peak PSS (RSS) sum", f"{watch.peak_pss_mb:.0f} ({watch.peak_rss_mb:.0f}) MB",
         f"<= {TARGET_MEMORY_MB} MB", watch.peak_pss_mb <= TARGET_MEMORY_MB),
        (f"/healthz p99 / max ({len(watch.health_ms)} polls)", f"{health_p99:.0f} / {health_max:.0f} ms",
         f"< {TARGET_HEALTHZ_MS} ms", health_max < TARGET_HEALTHZ_MS and not watch.health_failures),
    )  # fmt: skip
    for name, value, target, met in rows:
        print(f"  {name:38} {value:>16}  target {target:10} met: {verdict(met)}")
    if watch.health_failures:
        print(f"  /healthz failed {watch.health_failures} times")
    return not gateway.errors and ratio >= floor


def main(args) -> int:
    upstream_port, gateway_port = free_port(), free_port()
    env = {
        **os.environ,
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
    }
    upstream = subprocess.Popen([sys.executable, __file__, "upstream", "--port", str(upstream_port)], cwd=ROOT)
    serve = ["make", "--no-print-directory", "serve", f"PORT={gateway_port}"]
    if args.workers:
        serve.append(f"WORKERS={args.workers}")
    gateway = subprocess.Popen(serve, cwd=ROOT, env=env)
    passed = True
    try:
        wait_for(f"http://127.0.0.1:{upstream_port}/bench/delay?seconds=0")
        wait_for(f"http://127.0.0.1:{gateway_port}/healthz")
        key = seed(env)
        direct_url = f"http://127.0.0.1:{upstream_port}/v1/images/generations"
        gateway_url = f"http://127.0.0.1:{gateway_port}/v1/images/generations"
        pids = children(gateway.pid)
        pss, rss = memory_mb(pids)[::-1]
        print(f"gateway: {len(pids)} processes (make serve), PSS (RSS) {pss:.0f} ({rss:.0f}) MB at rest", end="; ")
        # Warm every worker (its connections, caches and lazy imports) as a server in service is.
        httpx.post(f"http://127.0.0.1:{upstream_port}/bench/delay?seconds=0")
        warm = load(gateway_url, key, 40, 3, 0, args)
        print(f"warm-up: {warm.requests} requests, {sum(warm.errors.values())} errors")
        print(f"load from {args.generators} generator processes")
        for scenario in args.scenario:
            delay, clients, seconds = (float(x) for x in scenario.split(":"))
            clients = int(clients)
            httpx.post(f"http://127.0.0.1:{upstream_port}/bench/delay?seconds={delay}")
            ramp = delay if args.ramp is None else args.ramp
            direct = load(direct_url, UPSTREAM_KEY, clients, seconds, ramp, args)
            watch = Watch(f"http://127.0.0.1:{gateway_port}/healthz", children(gateway.pid))
            through = asyncio.run(through_gateway(gateway_url, key, clients, seconds, ramp, args, watch))
            passed = report((delay, clients, seconds), direct, through, watch, args.fail_ratio) and passed
    finally:
        for process in (gateway, upstream):
            process.terminate()
            process.wait(timeout=30)
    floor = f"{args.fail_ratio:.0%}"
    print("\nresult:", "pass" if passed else f"FAIL (errors, or throughput below {floor} of the upstream alone)")
    return 0 if passed else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role")
    upstream_parser = sub.add_parser("upstream", help="(internal) run the delayed fake upstream")
    upstream_parser.add_argument("--port", type=int, required=True)
    load_parser = sub.add_parser("load", help="(internal) one load generator process; prints JSON")
    for name, kind in (("--url", str), ("--key", str), ("--clients", int), ("--seconds", float), ("--ramp", float)):
        load_parser.add_argument(name, type=kind, required=True)
    parser.add_argument(
        "--scenario",
        action="append",
        help="DELAY:CLIENTS:SECONDS, repeatable (default: 2:500:30 and 10:2000:40, the issue's two)",
    )
    parser.add_argument("--generators", type=int, default=2, help="load generator processes")
    parser.add_argument(
        "--ramp",
        type=float,
        help="seconds over which the clients start (default: the upstream's delay, so requests"
        " arrive at the steady rate clients/delay from the start instead of all in the first second)",
    )
    parser.add_argument("--workers", type=int, default=0, help="uvicorn workers (default: make serve's)")
    parser.add_argument("--fail-ratio", type=float, default=0.8, help="exit 1 below this throughput ratio")
    args = parser.parse_args()
    if args.role == "upstream":
        serve_upstream(args.port)
    elif args.role == "load":
        run_load(args)
    else:
        args.scenario = args.scenario or ["2:500:30", "10:2000:40"]
        sys.exit(main(args))
