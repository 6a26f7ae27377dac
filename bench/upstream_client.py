"""Benchmark: client-side CPU per upstream call, httpx's own transport against the aiohttp one.

Starts the fake OpenAI upstream in its own process (its CPU is not counted), then sends `--requests`
sequential image-generation POSTs through each client as `providers.http.new_client()` builds it
(the one `http_client()` returns, and the same with `use_aiohttp=False`), reading this process's CPU
time (resource.getrusage, user + system) around them. Rounds alternate between the two clients; each
figure is the median over the rounds. `--loop uvloop` is what `make serve` runs (uvicorn picks uvloop).

    .venv/bin/python bench/upstream_client.py --requests 2000 --rounds 5 --loop uvloop
"""

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import time

from django.conf import settings
from governance import ROOT, free_port, wait_for  # bench/governance.py, beside this script

HEADERS = {"Authorization": "Bearer sk-bench"}
# A request OpenAI's Images API takes today (the fake serves only the live GPT image models).
BODY = {"model": "gpt-image-2", "prompt": "bench", "size": "1024x1024", "quality": "low", "n": 1}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_round(url: str, use_aiohttp: bool, count: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per request for `count` sequential POSTs on a fresh client."""
    from providers.http import new_client

    async with new_client(use_aiohttp=use_aiohttp) as client:
        for _ in range(50):  # connect, warm caches
            (await client.post(url, json=BODY, headers=HEADERS)).raise_for_status()
        cpu, wall = cpu_seconds(), time.perf_counter()
        for _ in range(count):
            response = await client.post(url, json=BODY, headers=HEADERS)
            assert response.status_code == 200, response.text
        return (cpu_seconds() - cpu) * 1000 / count, (time.perf_counter() - wall) * 1000 / count


async def measure(url: str, args) -> None:
    results: dict[str, list[tuple[float, float]]] = {"httpx": [], "aiohttp": []}
    for _ in range(args.rounds):
        for name in results:
            results[name].append(await one_round(url, name == "aiohttp", args.requests))
    medians = {
        name: [statistics.median(column) for column in zip(*rows, strict=True)] for name, rows in results.items()
    }
    print(f"{args.requests} sequential POSTs x {args.rounds} rounds, loop={args.loop}, median per request:")
    print(f"{'transport':10} {'CPU ms':>8} {'wall ms':>8}")
    for name, (cpu, wall) in medians.items():
        print(f"{name:10} {cpu:8.3f} {wall:8.3f}")
    print(f"CPU ratio aiohttp/httpx: {medians['aiohttp'][0] / medians['httpx'][0]:.2f}")


def main(args) -> None:
    settings.configure(PROVIDER_TIMEOUT_SECONDS=120, UPSTREAM_MAX_CONNECTIONS=4000)
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_upstream", "--port", str(port), "--api-key", "sk-bench"], cwd=ROOT
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/")
        url = f"http://127.0.0.1:{port}/v1/images/generations"
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(measure(url, args))
        else:
            asyncio.run(measure(url, args))
    finally:
        upstream.terminate()
        upstream.wait(timeout=20)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="sequential POSTs per client per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating between the clients")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="event loop")
    main(parser.parse_args())
