"""Slow clients (slowloris): bodies that never finish are cut off at BODY_READ_TIMEOUT_SECONDS, on real sockets."""

import asyncio
import time
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

CONNECTIONS = 300


async def _hold_partial_bodies(
    url: str, path: str, count: int, headers: str, first_piece: bytes
) -> list[tuple[bytes, float]]:
    """Open `count` connections that each send headers and a first piece of a body they never finish;
    (what the server answered, when the connection was closed) for each."""
    parts = urlsplit(url)
    started = time.monotonic()

    async def one() -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n{headers}\r\n".encode() + first_piece
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=30)  # until the server closes
        closed = time.monotonic() - started
        writer.close()
        return answer, closed

    return await asyncio.gather(*(one() for _ in range(count)))


@pytest.mark.parametrize(
    ("path", "content_type", "first_piece"),
    [
        ("/v1/images/generations", "application/json", b'{"prompt": "a'),
        (
            "/v1/images/edits",
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na',
        ),
        ("/accounts/login/", "application/x-www-form-urlencoded", b"username=alice&password=a"),
    ],
)
def test_connections_holding_partial_bodies_are_answered_408_and_closed_within_the_deadline(
    live_gateway, settings, auth_headers, path, content_type, first_piece
):
    settings.BODY_READ_TIMEOUT_SECONDS = 2
    headers = f"Content-Type: {content_type}\r\nAuthorization: {auth_headers['Authorization']}\r\n"
    results = asyncio.run(_hold_partial_bodies(live_gateway, path, CONNECTIONS, headers, first_piece))
    assert len(results) == CONNECTIONS
    for answer, closed in results:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"did not arrive within 2 seconds" in answer
        # Cut off at the deadline, not long after it: the connections open over a second or so, and an edit's
        # refusal is recorded (a line item each, 300 writes queued on SQLite in the embedded mode).
        assert closed < 2 + 10


async def test_a_django_body_over_the_limit_is_refused_as_it_arrives(gateway_client, settings):
    """Django's handler would write any body to a temporary file before DATA_UPLOAD_MAX_MEMORY_SIZE is looked at."""
    chunks_sent = 0

    async def body():
        nonlocal chunks_sent
        for _ in range(64):  # 64 MiB, if it were all read
            chunks_sent += 1
            yield b"x" * (1024 * 1024)

    response = await gateway_client.post(
        "/accounts/login/", content=body(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert response.headers["connection"] == "close"
    assert chunks_sent <= 3
