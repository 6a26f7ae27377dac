"""Benchmark: the gateway (every governance step on) against the fake upstream called directly.

Starts the fake OpenAI upstream and `make serve` (PostgreSQL + Redis from DATABASE_URL/REDIS_URL),
seeds an Enterprise organization with a spend cap, then measures, side by side:
admitted vs expected under the concurrency scenarios, added latency (p50/p99) one at a time and at
an open-loop rate, saturated throughput at 50 connections, and server CPU per request (the gateway's
worker processes; PostgreSQL's, when it runs on this machine, beside it).
Saturation uses wrk when it is installed (`apt-get install wrk`), else a Python client that
competes with the server for the same cores and so understates what the gateway can do.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/imagegate_governance REDIS_URL=redis://127.0.0.1:6379/1 \\
        .venv/bin/python bench/governance.py --seconds 5 --rate 100
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
# A live model the fake upstream serves as OpenAI does, priced per image here so the capped count is exact.
BODY = {"model": "gpt-image-2", "size": "1024x1024", "quality": "low", "prompt": "bench"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def seed(env: dict[str, str]) -> tuple[str, str]:
    """An Enterprise org with huge rate limits and a cap it will not reach, and a $1.00-capped Free org."""
    script = """
from decimal import Decimal
from accounts.services import api_key_create, org_create, org_tier_set
from billing.models import TokenPrice
from billing.services import price_set
from billing.limits import spend_limit_set
from gateway.seed import seed_defaults
import secrets
seed_defaults()
# The bench measures the gateway at thousands in flight: no image window and no cap on requests in flight.
UNLIMITED = dict(images_per_minute=10**9, images_per_day=10**9, max_concurrent_requests=10**9)
TokenPrice.objects.filter(model__name="gpt-image-2").delete()
price_set(model="gpt-image-2", quality="low", size="1024x1024", unit_price=Decimal("0.04"))
suffix = secrets.token_hex(3)
big = org_create(slug=f"bench-{suffix}", tier_slug="free")
org_tier_set(organization=big, tier_slug="enterprise", **UNLIMITED)
spend_limit_set(organization=big, key_prefix=None, period="day", amount=Decimal("1000000"))
capped = org_create(slug=f"capped-{suffix}", tier_slug="free")
org_tier_set(organization=capped, tier_slug="enterprise", **UNLIMITED)
spend_limit_set(organization=capped, key_prefix=None, period="day", amount=Decimal("1.00"))
free = org_create(slug=f"free-{suffix}", tier_slug="free")
uncapped = org_create(slug=f"uncapped-{suffix}", tier_slug="free")
org_tier_set(organization=uncapped, tier_slug="enterprise", **UNLIMITED)
print(api_key_create(organization=big).plaintext, api_key_create(organization=capped).plaintext,
      api_key_create(organization=free).plaintext, api_key_create(organization=uncapped).plaintext)
"""
    out = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + script],
        env={**env, "DJANGO_SETTINGS_MODULE": "gateway.settings"},
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return tuple(out.stdout.split()[-4:])


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    """The local PostgreSQL server's processes (its CPU per request is reported beside the gateway's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found + [c for p in found for c in children(p)]


async def one_by_one(client, url, headers, seconds) -> list[float]:
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        response = await client.post(url, json=BODY, headers=headers)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return latencies


async def open_loop(client, url, headers, rate, seconds) -> list[float]:
    latencies = []

    async def send():
        started = time.perf_counter()
        response = await client.post(url, json=BODY, headers=headers)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send()))
    await asyncio.gather(*tasks)
    return latencies


def saturate_wrk(url: str, headers: dict[str, str], seconds: float, connections: int = 50) -> int:
    """Saturate with wrk (C, a few µs of CPU per request) so the load generator does not steal the server's cores."""
    lines = ["wrk.method = 'POST'", f"wrk.body = {json.dumps(json.dumps(BODY))}"]
    lines += [f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}" for name, value in headers.items()]
    lines.append("wrk.headers['Content-Type'] = 'application/json'")
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write("\n".join(lines) + "\n")
        script.flush()
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "-s", script.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    if "Non-2xx" in out:
        raise AssertionError(f"wrk saw errors:\n{out}")
    return int(re.search(r"(\d+) requests in", out).group(1))


async def saturate(client, url, headers, seconds, connections=50) -> int:
    done = 0
    end = time.monotonic() + seconds

    async def worker():
        nonlocal done
        while time.monotonic() < end:
            response = await client.post(url, json=BODY, headers=headers)
            assert response.status_code == 200, response.text
            done += 1

    await asyncio.gather(*(worker() for _ in range(connections)))
    return done


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else values[0] * 1000


def main(args) -> None:
    upstream_port, gateway_port = free_port(), free_port()
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1"}
    upstream = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_upstream", "--port", str(upstream_port), "--api-key", "sk-bench"],
        cwd=ROOT,
        env=env,
    )
    serve = ["make", "serve", f"PORT={gateway_port}", f"WORKERS={args.workers}"]
    gateway = subprocess.Popen(serve, cwd=ROOT, env=env)
    try:
        wait_for(f"http://127.0.0.1:{upstream_port}/")
        wait_for(f"http://127.0.0.1:{gateway_port}/healthz")
        keys = seed(env)
        direct = (f"http://127.0.0.1:{upstream_port}/v1/images/generations", {"Authorization": "Bearer sk-bench"})
        gateway_url = f"http://127.0.0.1:{gateway_port}/v1/images/generations"
        through = (gateway_url, {"Authorization": f"Bearer {keys[0]}"})
        uncapped = (gateway_url, {"Authorization": f"Bearer {keys[3]}"})
        asyncio.run(measure(args, direct, through, uncapped, keys, children(gateway.pid)))
    finally:
        for process in (gateway, upstream):
            process.terminate()
            process.wait(timeout=20)


async def measure(args, direct, through, uncapped, keys, workers) -> None:
    _, capped, free, _ = keys
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for url, headers in (direct, through):  # warm up connections and worker caches
            await one_by_one(client, url, headers, 1)
        admitted = {}
        for name, key, count in (("free", free, 50), ("capped", capped, 200)):
            headers = {"Authorization": f"Bearer {key}"}
            responses = await asyncio.gather(
                *(client.post(through[0], json=BODY, headers=headers) for _ in range(count))
            )
            admitted[name] = sum(r.status_code == 200 for r in responses)
        print(
            f"admitted: Free 5/min, 50 concurrent -> {admitted['free']} (expected 5); "
            f"$1.00 daily cap at $0.04, 200 concurrent -> {admitted['capped']} (expected 25)"
        )
        rows = {}
        for label, (url, headers) in (("direct", direct), ("gateway", through), ("no cap", uncapped)):
            serial = await one_by_one(client, url, headers, args.seconds)
            paced = await open_loop(client, url, headers, args.rate, args.seconds)
            database = postgres_pids()
            cpu_before, database_before = cpu_seconds(workers), cpu_seconds(database)
            if shutil.which("wrk"):
                count = await asyncio.to_thread(saturate_wrk, url, headers, args.seconds)
            else:
                count = await saturate(client, url, headers, args.seconds)
            cpu = (cpu_seconds(workers) - cpu_before) * 1000 / count
            database_cpu = (cpu_seconds(database) - database_before) * 1000 / count
            rows[label] = (
                pct(serial, 50),
                pct(serial, 99),
                pct(paced, 50),
                pct(paced, 99),
                count / args.seconds,
                cpu,
                database_cpu,
            )
    rate = f"{args.rate:.0f}/s p50"
    print(
        f"{'':8} {'1-at-a-time p50':>16} {'p99':>8} {rate:>10} {'p99':>8} {'sat. req/s':>11} {'CPU ms/req':>11} "
        f"{'PostgreSQL':>11}"
    )
    for label, row in rows.items():
        cpu, database = (f"{row[5]:.2f}", f"{row[6]:.2f}") if label != "direct" else ("-", "-")
        print(
            f"{label:8} {row[0]:16.2f} {row[1]:8.2f} {row[2]:10.2f} {row[3]:8.2f} {row[4]:11.0f} {cpu:>11} "
            f"{database:>11}"
        )
    for label in ("gateway", "no cap"):
        added = [rows[label][i] - rows["direct"][i] for i in range(4)]
        print(f"{'added':8} {added[0]:16.2f} {added[1]:8.2f} {added[2]:10.2f} {added[3]:8.2f}   ({label})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5, help="duration of each measurement")
    parser.add_argument("--rate", type=float, default=100, help="open-loop requests per second")
    parser.add_argument("--workers", type=int, default=4, help="uvicorn worker processes (make serve: 2 x cores)")
    main(parser.parse_args())
