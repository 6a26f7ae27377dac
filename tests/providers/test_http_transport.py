"""The shared upstream client (providers/http.py) against real HTTP servers.

The fake upstreams serve the vendors' wire formats; raw sockets stand in for what
no well-behaved server does (hang up, answer garbage, never accept). Each check
runs on the aiohttp transport the gateway uses and on httpx's own, so the
aiohttp one keeps the httpx behaviour adapters rely on: the exception classes
they catch, per-request timeouts, multipart, gzip, downloads, pooling, no
redirects, proxies from the environment.
"""

import asyncio
import base64
import gzip
import hashlib
import json
import os
import random
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport

from providers.base import ImageJob, ProviderError
from providers.http import http_client, new_client
from providers.openai import OpenAIProvider
from tests.conftest import _free_port, serve_asgi
from tests.fakes.base import TINY_PNG, FakeRequest, Reply
from tests.fakes.openai_upstream import FakeOpenAI

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
TRANSPORTS = ["aiohttp", "httpx"]


@pytest.fixture(autouse=True)
def _no_proxy_variables(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(params=TRANSPORTS)
async def client(request) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway's shared client (aiohttp), or one like it on httpx's own transport."""
    if request.param == "aiohttp":
        client = http_client()
        assert isinstance(client._transport, AiohttpTransport)
    else:
        client = new_client(use_aiohttp=False)
    yield client
    await client.aclose()


# A request OpenAI's Images API takes.
BODY = {"model": "gpt-image-2", "prompt": "fox", "size": "1024x1024", "quality": "low"}


async def generate(client: httpx.AsyncClient, prompt: str, **kwargs) -> httpx.Response:
    """An OpenAI images call to the `fake_openai` upstream."""
    return await client.post(
        f"{os.environ['OPENAI_BASE_URL']}/images/generations",
        json={**BODY, "prompt": prompt},
        headers={"Authorization": "Bearer sk-test-upstream"},
        **kwargs,
    )


@asynccontextmanager
async def raw_server(answer: bytes) -> AsyncIterator[str]:
    """A TCP server that reads the request, writes `answer` (maybe nothing) and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


@contextmanager
def never_accepting() -> Iterator[str]:
    """A port whose accept queue is full, so a new connection's handshake never completes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        for sock in (*fillers, listener):
            sock.close()


# Timeouts


async def test_read_timeout_is_read_timeout(client, fake_openai):
    start = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await generate(client, "[slow] fox", timeout=httpx.Timeout(5, read=0.3))
    assert time.monotonic() - start < 1.5


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_per_request_timeout_overrides_the_clients(transport, fake_openai, settings):
    settings.PROVIDER_TIMEOUT_SECONDS = 0.2
    fake_openai.slow_seconds = 0.6
    async with new_client(use_aiohttp=transport == "aiohttp") as client:
        with pytest.raises(httpx.ReadTimeout):
            await generate(client, "[slow] default timeout")
        response = await generate(client, "[slow] longer timeout", timeout=httpx.Timeout(3))
    assert response.status_code == 200


async def test_connect_timeout_is_connect_timeout(client):
    with never_accepting() as url:
        start = time.monotonic()
        with pytest.raises(httpx.ConnectTimeout):
            await client.get(url, timeout=httpx.Timeout(5, connect=0.3))
        assert time.monotonic() - start < 1.5


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_waiting_for_a_pooled_connection_times_out(transport, fake_openai):
    """httpx says PoolTimeout; aiohttp cannot tell this wait from connecting, so ConnectTimeout there."""
    fake_openai.slow_seconds = 0.5
    async with new_client(httpx.Limits(max_connections=1), use_aiohttp=transport == "aiohttp") as client:
        holder = asyncio.create_task(generate(client, "[slow] holds the only connection"))
        for _ in range(200):  # until the fake has it
            if fake_openai.requests:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(httpx.TimeoutException):
            await generate(client, "fox", timeout=httpx.Timeout(5, pool=0.1))
        assert (await holder).status_code == 200


# Connection failures


async def test_connection_refused_is_connect_error(client):
    with pytest.raises(httpx.ConnectError):
        await client.get(f"http://127.0.0.1:{_free_port()}/")


async def test_server_hanging_up_is_remote_protocol_error(client):
    async with raw_server(b"") as url:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, json={"prompt": "fox"})


async def test_body_cut_short_is_remote_protocol_error(client):
    async with raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}") as url:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url)


async def test_an_answer_that_is_not_http_is_remote_protocol_error(client):
    async with raw_server(b"SSH-2.0-OpenSSH_9.6\r\n\r\n") as url:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url)


async def test_adapter_reports_an_unreachable_upstream_as_unreachable_not_timed_out(monkeypatch, settings):
    settings.PROVIDER_MAX_RETRIES = 1
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{_free_port()}/v1")
    job = ImageJob(
        request_id="r1",
        model="gpt-image-2",
        upstream_model="gpt-image-2",
        prompt="fox",
        n=1,
        size="auto",
        quality="low",
    )
    with pytest.raises(ProviderError) as raised:
        await OpenAIProvider().generate(job, http_client())
    assert (raised.value.code, raised.value.status) == ("upstream_error", 502)
    assert "ConnectError" in raised.value.message


# Bodies


async def test_multipart_upload(client, fake_stability):
    response = await client.post(
        f"{os.environ['STABILITY_BASE_URL']}/v2beta/stable-image/generate/core",
        files={
            "prompt": (None, "dunes"),
            "output_format": (None, "png"),
            "notes": ("notes.txt", b"a file", "text/plain"),
        },
        headers={"authorization": "Bearer sk-stability", "accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert base64.b64decode(response.json()["image"]).startswith(b"\x89PNG")
    sent = fake_stability.requests[-1]
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert sent.form == {"prompt": "dunes", "output_format": "png"}
    assert [(file.field, file.filename, file.content_type, file.data) for file in sent.files] == [
        ("notes", "notes.txt", "text/plain", b"a file")
    ]


async def test_image_download(client, fake_openai):
    fake_openai.files["abc"] = (TINY_PNG, "image/png")
    response = await client.get(f"{os.environ['OPENAI_BASE_URL'].removesuffix('/v1')}/files/abc.png")
    assert response.status_code == 200
    assert (response.headers["content-type"], response.content) == ("image/png", TINY_PNG)


class GzipOpenAI(FakeOpenAI):
    def generate(self, request: FakeRequest) -> Reply:
        reply = super().generate(request)
        return Reply(reply.status, gzip.compress(json.dumps(reply.body).encode()), {"content-encoding": "gzip"})


async def test_gzip_body_is_decoded(client):
    fake = GzipOpenAI(api_key="sk-test-upstream")
    with serve_asgi(fake) as url:
        response = await client.post(
            f"{url}/v1/images/generations",
            json=BODY,
            headers={"Authorization": "Bearer sk-test-upstream"},
        )
    assert "gzip" in fake.requests[-1].headers["accept-encoding"]
    assert response.headers["content-encoding"] == "gzip"
    assert base64.b64decode(response.json()["data"][0]["b64_json"]).startswith(b"\x89PNG")


class RedirectingOpenAI(FakeOpenAI):
    def generate(self, request: FakeRequest) -> Reply:
        return Reply(302, b"", {"location": f"{request.base_url}/v1/images/generations"})


async def test_redirects_are_not_followed(client):
    fake = RedirectingOpenAI(api_key="sk-test-upstream")
    with serve_asgi(fake) as url:
        response = await client.post(
            f"{url}/v1/images/generations", json=BODY, headers={"Authorization": "Bearer sk-test-upstream"}
        )
    assert response.status_code == 302
    assert len(fake.requests) == 1


class CookieSettingOpenAI(FakeOpenAI):
    """Answers every call with a session cookie, as some vendors' edge proxies do."""

    def generate(self, request: FakeRequest) -> Reply:
        reply = super().generate(request)
        return Reply(reply.status, reply.body, {"set-cookie": f"edge_session={request.prompt}; Path=/"})


async def test_cookies_an_upstream_sets_are_never_sent_back(client):
    """One client serves every tenant: a cookie from one tenant's call must not travel with the next one's."""
    fake = CookieSettingOpenAI(api_key="sk-test-upstream")
    with serve_asgi(fake) as url:
        for tenant in ("tenant-a", "tenant-b"):
            response = await client.post(
                f"{url}/v1/images/generations",
                json={**BODY, "prompt": tenant},
                headers={"Authorization": "Bearer sk-test-upstream"},
            )
            assert response.headers["set-cookie"].startswith(f"edge_session={tenant}")
    assert [request.headers.get("cookie") for request in fake.requests] == [None, None]


# Pooling


class CountingOpenAI(FakeOpenAI):
    """Records each request's client port (one per connection) and the most requests in flight at once."""

    def __init__(self, api_key: str) -> None:
        super().__init__(api_key)
        self.ports: set[int] = set()
        self.in_flight = self.peak = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        self.ports.add(scope["client"][1])
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.in_flight -= 1


@pytest.fixture
def counting_openai(monkeypatch):
    fake = CountingOpenAI(api_key="sk-test-upstream")
    fake.slow_seconds = 0.2
    with serve_asgi(fake) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
        yield fake


async def test_hundreds_in_flight_share_a_bounded_pool(client, counting_openai):
    """The shared client's pool takes 300 at once; kept-alive connections serve the next calls."""
    responses = await asyncio.gather(*(generate(client, f"[slow] {index}") for index in range(300)))
    assert all(response.status_code == 200 for response in responses)
    assert counting_openai.peak > 100  # not queued behind a small pool
    opened = set(counting_openai.ports)
    assert len(opened) <= 300
    for index in range(20):
        assert (await generate(client, f"again {index}")).status_code == 200
    assert counting_openai.ports == opened  # no new connection


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_max_connections_caps_the_pool(transport, counting_openai):
    counting_openai.slow_seconds = 0.05
    async with new_client(httpx.Limits(max_connections=20), use_aiohttp=transport == "aiohttp") as client:
        for _ in range(2):
            responses = await asyncio.gather(*(generate(client, f"[slow] {index}") for index in range(300)))
            assert all(response.status_code == 200 for response in responses)
    assert 1 < counting_openai.peak <= 20
    # Connections are reused: 600 requests over a few dozen at most. (Not "at most 20 ports": on a loaded
    # machine a pooled connection the server or the client closed is replaced, which the cap allows.)
    assert len(counting_openai.ports) <= 60


async def test_the_shared_pool_is_sized_by_upstream_max_connections(counting_openai, settings):
    """Each request in flight holds an upstream connection: the setting, not a constant, caps a worker's."""
    counting_openai.slow_seconds = 0.2
    settings.UPSTREAM_MAX_CONNECTIONS = 7
    client = http_client()  # this test's loop has no client yet: built under the setting
    try:
        responses = await asyncio.gather(*(generate(client, f"[slow] {index}") for index in range(30)))
    finally:
        await client.aclose()
    assert all(response.status_code == 200 for response in responses)
    assert 1 < counting_openai.peak <= 7


# Client configuration


async def test_proxy_variables_are_honoured(fake_openai, monkeypatch):
    """httpx ignores them with an explicit transport, so with a proxy set the client keeps httpx's own."""
    monkeypatch.setenv("HTTP_PROXY", os.environ["OPENAI_BASE_URL"].removesuffix("/v1"))
    fake_openai.files["abc"] = (TINY_PNG, "image/png")
    client = http_client()
    try:
        response = await client.get("http://upstream.invalid/files/abc.png")
    finally:
        await client.aclose()
    assert (response.status_code, response.content) == (200, TINY_PNG)
    assert fake_openai.requests[-1].headers["host"] == "upstream.invalid"


# Uploads


@asynccontextmanager
async def hashing_server() -> AsyncIterator[str]:
    """A server that hashes the request body as it arrives, keeping none of it, and answers its length and digest."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
        digest, received = hashlib.sha256(), 0
        if "transfer-encoding: chunked" in head:
            while size := int((await reader.readline()).strip(), 16):
                chunk = await reader.readexactly(size + 2)
                digest.update(chunk[:-2])
                received += size
            await reader.readline()
        else:
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            while received < length:
                chunk = await reader.read(min(65536, length - received))
                digest.update(chunk)
                received += len(chunk)
        answer = json.dumps({"received": received, "sha256": digest.hexdigest()}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(answer))
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/upload"


async def test_a_file_upload_is_streamed_from_disk_not_held_in_memory(client, tmp_path):
    """A 24 MB multipart upload arrives intact while the process never holds more than a few MB of it."""
    path = tmp_path / "big.png"
    path.write_bytes(random.Random(7).randbytes(24 * 1024 * 1024))
    headers = {"content-type": "multipart/form-data; boundary=fixed-boundary"}

    def files(file) -> list:
        return [("prompt", (None, "fox")), ("image", ("big.png", file, "image/png"))]

    with path.open("rb") as file:
        expected = httpx.Request("POST", "http://x/", files=files(file), headers=headers).read()
    async with hashing_server() as url:
        tracemalloc.start()
        try:
            with path.open("rb") as file:
                response = await client.post(url, files=files(file), headers=headers, timeout=30)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert response.json() == {"received": len(expected), "sha256": hashlib.sha256(expected).hexdigest()}
    assert peak < 4 * 1024 * 1024
