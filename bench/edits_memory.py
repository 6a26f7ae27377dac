"""Benchmark: the memory one gateway worker needs for concurrent edits of large images.

Starts the fake OpenAI upstream (its own process, so its memory is not counted) and `make serve` with
one worker, then sends rounds of `--concurrency` edits at once, each carrying one PNG of about
`--megabytes` MB (random pixels, so it does not compress), through the official multipart form.
It reports the worker's resident memory before the first round, its peak (VmHWM) after, and the
growth per round; the target is a growth under 150 MB for 20 concurrent edits of 20 MB images,
which holds only if uploads go to disk and upstream from disk rather than through memory.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/imagegate_bench REDIS_URL=redis://127.0.0.1:6379/1 \\
        .venv/bin/python bench/edits_memory.py --concurrency 20 --megabytes 20
"""

import argparse
import asyncio
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from governance import ROOT, children, free_port, wait_for  # noqa: E402


def seed_key(env: dict[str, str]) -> str:
    script = """
import django; django.setup()
import secrets
from accounts.services import api_key_create, org_create, org_tier_set
from gateway.seed import seed_defaults
seed_defaults()
# The bench measures the gateway at thousands in flight: no image window and no cap on requests in flight.
UNLIMITED = dict(images_per_minute=10**9, images_per_day=10**9, max_concurrent_requests=10**9)
org = org_create(slug=f"edits-{secrets.token_hex(3)}", tier_slug="free")
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


def big_png(megabytes: float, directory: str) -> Path:
    """A PNG of random pixels of about `megabytes` MB (its dimensions a multiple of 16)."""
    side = int((megabytes * 1_000_000 / 3) ** 0.5) // 16 * 16
    picture = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    path = Path(directory) / "big.png"
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    path.write_bytes(buffer.getvalue())
    return path


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found for {pid}")


async def edit_round(url: str, key: str, image: Path, concurrency: int) -> list[int]:
    async with httpx.AsyncClient(timeout=300) as client:

        async def one(index: int) -> int:
            with image.open("rb") as file:
                response = await client.post(
                    url,
                    headers={"Authorization": f"Bearer {key}"},
                    data={"model": "gpt-image-2", "prompt": f"bench {index}", "size": "1024x1024", "quality": "low"},
                    files={"image": ("big.png", file, "image/png")},
                )
            return response.status_code

        return await asyncio.gather(*(one(index) for index in range(concurrency)))


def main(args) -> None:
    upstream_port, gateway_port = free_port(), free_port()
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
        "PROVIDER_TIMEOUT_SECONDS": "300",
    }
    upstream = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_upstream", "--port", str(upstream_port), "--api-key", "sk-bench"],
        cwd=ROOT,
        env=env,
    )
    gateway = subprocess.Popen(["make", "serve", f"PORT={gateway_port}", "WORKERS=1"], cwd=ROOT, env=env)
    try:
        wait_for(f"http://127.0.0.1:{upstream_port}/")
        wait_for(f"http://127.0.0.1:{gateway_port}/healthz")
        key = seed_key(env)
        url = f"http://127.0.0.1:{gateway_port}/v1/images/edits"
        workers = [pid for pid in children(gateway.pid) if "uvicorn" in Path(f"/proc/{pid}/cmdline").read_text()]
        worker = max(workers or children(gateway.pid), key=lambda pid: memory_kb(pid, "VmRSS"))
        with tempfile.TemporaryDirectory() as directory:
            image = big_png(args.megabytes, directory)
            size_mb = image.stat().st_size / 1e6
            # One small round first, so that what every worker loads once (code, pools) is in the baseline.
            asyncio.run(edit_round(url, key, image, 1))
            baseline = memory_kb(worker, "VmRSS")
            print(f"image: {size_mb:.1f} MB; worker {worker} resident before: {baseline / 1024:.0f} MB")
            for round_number in range(1, args.rounds + 1):
                started = time.monotonic()
                statuses = asyncio.run(edit_round(url, key, image, args.concurrency))
                elapsed = time.monotonic() - started
                peak = memory_kb(worker, "VmHWM")
                print(
                    f"round {round_number}: {args.concurrency} edits in {elapsed:.1f}s, statuses "
                    f"{sorted(set(statuses))}; peak resident {peak / 1024:.0f} MB, "
                    f"growth over the baseline {(peak - baseline) / 1024:.0f} MB"
                )
    finally:
        for process in (gateway, upstream):
            process.terminate()
            process.wait(timeout=20)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--megabytes", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    main(parser.parse_args())
