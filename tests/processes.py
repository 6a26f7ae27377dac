"""The gateway as real server processes, for tests of what survives a process or a database going away."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO

import httpx
from django.conf import settings
from django.db import connection

from tests.conftest import _free_port


def process_environment(**overrides: str) -> dict[str, str]:
    """The test database and Redis, tasks queued for real (not inline), the local provider; then `overrides`."""
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "LOCAL_PROVIDER_FALLBACK": "true",
        "LOCAL_PROVIDER_DELAY_MS": "200",
        **overrides,
    }


@contextmanager
def web_process(*, log: IO[str] | None = None, **overrides: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """A uvicorn process serving the gateway, once its /healthz answers 200; stopped (if still alive) after.

    `log`: a file for what it logs (stderr), else the test's own stderr."""
    port = _free_port()
    command = [sys.executable, "-m", "uvicorn", "gateway.asgi:application", "--port", str(port)]
    server = subprocess.Popen([*command, "--log-level", "warning"], env=process_environment(**overrides), stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with suppress(httpx.HTTPError):  # not listening yet
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.2)
        yield url, server
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:  # a request still hangs: do not hide why the test failed
                server.kill()
                server.wait(timeout=10)
