"""Slow and oversized headers, against a real uvicorn process running the protocol `make serve` runs."""

import asyncio
import os
import socket
import subprocess
import sys
import time

import pytest

CONNECTIONS = 300
DEADLINE = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """uvicorn in a process of its own, as `make serve` starts it (one worker, the embedded settings)."""
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(VAR_DIR=str(tmp_path_factory.mktemp("var")), HEADER_READ_TIMEOUT_SECONDS=str(DEADLINE), DEBUG="true")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "gateway.asgi:application",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--http",
            "gateway.server:HeaderGuardedProtocol",
        ],
        env=env,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("uvicorn did not start") from None
            time.sleep(0.1)
    yield port
    process.terminate()
    process.wait(timeout=10)


async def _exchange(port: int, sent: bytes) -> tuple[bytes, float]:
    """Send `sent`, then wait (sending nothing more) until the server closes: (its answer, seconds it took)."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if sent:
        writer.write(sent)
        await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=30)
    writer.close()
    return answer, time.monotonic() - started


def _many(port: int, sent: bytes, count: int) -> list[tuple[bytes, float]]:
    async def run():
        return await asyncio.gather(*(_exchange(port, sent) for _ in range(count)))

    return asyncio.run(run())


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # a connection that never says anything
        b"POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a",  # headers never finished
    ],
)
def test_connections_that_never_finish_their_headers_are_closed_at_the_deadline(server, sent):
    results = _many(server, sent, CONNECTIONS)
    for answer, took in results:
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert DEADLINE - 0.5 < took < DEADLINE + 5
    assert sum(answer.startswith(b"HTTP/1.1 408 ") for answer, _ in results) == CONNECTIONS


def test_headers_over_the_size_limit_are_431(server):
    sent = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Big: " + b"a" * (80 * 1024) + b"\r\n"
    answer, took = asyncio.run(_exchange(server, sent))
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert took < DEADLINE


def test_a_kept_alive_connection_answers_then_times_out_the_next_headers(server):
    complete = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer, took = asyncio.run(_exchange(server, complete + b"GET /v1/models HTTP/1.1\r\nHost: 127."))
    assert answer.startswith(b"HTTP/1.1 401 ")  # the first request, answered: no key
    assert b"HTTP/1.1 408 " in answer
    assert took < DEADLINE + 5
