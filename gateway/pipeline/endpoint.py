"""The image endpoints as a thin ASGI app in front of Django.

`POST /v1/images/generations` and `/v1/images/edits` (and their flat twins under `/api/`) are the hot path:
hundreds in flight, most of their life spent waiting on a provider. Going through
Django's handler would cost a thread hop for each of its request signals and each
sync middleware (sessions, CSRF, auth, messages: none of which apply to an API-key
endpoint), several times the CPU of everything else the gateway does per request.
So this endpoint does only what Django would have done for it: validate the Host,
read a bounded body (an edit's multipart upload goes to disk as it arrives,
gateway.pipeline.uploads), give the request an id, and turn the pipeline's answer
(or error) into JSON, or a streamed request's events into server-sent events.
Every other path goes to Django.
"""

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from gateway.core.auth import api_key_from_headers, client_address_of_scope
from gateway.core.bodies import BodyDeadline
from gateway.core.db import DATABASE_UNAVAILABLE, db_step
from gateway.core.errors import Flavor, GatewayError, error_body
from gateway.core.middleware import new_request_id
from gateway.pipeline.generation import GatewayResponse, ImageGeneration
from gateway.pipeline.jobs import JobSubmission, job_record_left, job_record_left_answer, prefers_async
from gateway.pipeline.observe import request_record
from gateway.pipeline.quote import ImageQuote
from gateway.pipeline.uploads import EditUpload, UploadAborted, edit_upload_receive
from providers.base import EDIT, GENERATE

logger = logging.getLogger("gateway.pipeline.endpoint")


@dataclass(frozen=True)
class ImageRoute:
    flavor: str
    action: str
    # A quote (gateway.pipeline.quote) prices the request instead; a multipart body quotes an edit.
    quote: bool = False


IMAGE_ENDPOINTS = {
    "/v1/images/generations": ImageRoute(Flavor.OPENAI, GENERATE),
    "/api/images/generations": ImageRoute(Flavor.FLAT, GENERATE),
    "/v1/images/edits": ImageRoute(Flavor.OPENAI, EDIT),
    "/api/images/edits": ImageRoute(Flavor.FLAT, EDIT),
    "/v1/images/quote": ImageRoute(Flavor.OPENAI, GENERATE, quote=True),
    "/api/images/quote": ImageRoute(Flavor.FLAT, GENERATE, quote=True),
}

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def _allowed_hosts() -> list[str]:
    # Django's own rule: with DEBUG and no ALLOWED_HOSTS, local names are allowed.
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [".localhost", "127.0.0.1", "[::1]"]
    return settings.ALLOWED_HOSTS


def _base_url(scope: dict, host: str) -> str:
    return settings.PUBLIC_BASE_URL or f"{scope.get('scheme', 'http')}://{host}"


async def _read_body(receive: Receive, declared_length: str) -> bytes | None:
    """The request body, or None once it is known to be over the limit (the pipeline answers 413).

    GatewayError 408 when it takes longer than BODY_READ_TIMEOUT_SECONDS to arrive.
    """
    limit = settings.MAX_REQUEST_BODY_BYTES
    if declared_length.isdigit() and int(declared_length) > limit:
        return None
    receive = BodyDeadline(receive)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _headers(content_type: bytes, request_id: str, headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    response_headers = [
        (b"content-type", content_type),
        (b"x-request-id", request_id.encode()),
        (b"x-content-type-options", b"nosniff"),
    ]
    return response_headers + [(name.lower().encode(), str(value).encode()) for name, value in headers.items()]


async def _send_json(send: Send, status: int, body: dict, request_id: str, headers: dict[str, str]) -> None:
    raw = json.dumps(body).encode()
    response_headers = _headers(b"application/json", request_id, headers)
    response_headers.append((b"content-length", str(len(raw)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": raw})


class EventStream:
    """A streamed request's answer as server-sent events, in the format the official SDK parses.

    The response starts with the first event, so anything refused before it is a plain JSON error with
    its status. Events are queued and written by a task of their own: a slow or vanished client never
    holds up the request, which reads the provider's stream to its end, stores the images and settles
    whether anyone is still listening.
    """

    def __init__(self, send: Send, request_id: str) -> None:
        self._send = send
        self._request_id = request_id
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._writer: asyncio.Task | None = None

    @property
    def started(self) -> bool:
        return self._writer is not None

    async def event(self, kind: str, data: dict[str, Any]) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        self._queue.put_nowait(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())

    async def finish(self) -> None:
        """Flush what is queued and end the response."""
        if self._writer is not None:
            self._queue.put_nowait(None)
            await self._writer

    async def _write(self) -> None:
        headers = _headers(b"text/event-stream; charset=utf-8", self._request_id, {"Cache-Control": "no-cache"})
        try:
            await self._send({"type": "http.response.start", "status": 200, "headers": headers})
            while (chunk := await self._queue.get()) is not None:
                await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
            await self._send({"type": "http.response.body", "body": b""})
        except OSError:
            logger.info("request %s: the client left mid-stream", self._request_id)


async def image_endpoint(scope: dict, receive: Receive, send: Send, route: ImageRoute) -> None:
    started = time.monotonic()
    request_id = new_request_id()
    flavor = route.flavor
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    host = headers.get("host", "")
    stream = EventStream(send, request_id)
    upload: EditUpload | GatewayError | None = None
    # A quote is answered at once: it neither becomes a job nor needs watching.
    deferred = not route.quote and prefers_async(headers.get("prefer", ""))
    generation: ImageGeneration | None = None
    watcher: asyncio.Task | None = None
    left = asyncio.Event()
    try:
        domain, _ = split_domain_port(host)
        if not domain or not validate_host(domain, _allowed_hosts()):
            raise GatewayError(400, "invalid_host", f"Invalid Host header {host!r}: add it to ALLOWED_HOSTS.")
        if scope["method"] != "POST":
            noun = "quotes" if route.quote else "edits" if route.action == EDIT else "generations"
            raise GatewayError(405, "method_not_allowed", f"Use POST for image {noun}.", headers={"Allow": "POST"})
        api_key = api_key_from_headers(
            authorization=headers.get("authorization", ""), x_api_key=headers.get("x-api-key", "")
        )
        action = route.action
        if route.quote and headers.get("content-type", "").lower().startswith("multipart/form-data"):
            action = EDIT
        body = None
        if action == GENERATE:
            body = await _read_body(receive, headers.get("content-length", ""))
        elif api_key:  # an anonymous upload is refused before it is read
            upload = await _edit_upload(receive, headers)
        generation = (ImageQuote if route.quote else ImageGeneration)(
            request_id=request_id,
            flavor=flavor,
            base_url=_base_url(scope, host),
            action=action,
            # An async job cannot stream: without a sink, `stream: true` is refused at admission.
            events=None if deferred else stream.event,
            client=client_address_of_scope(scope, headers),
        )
        if not deferred and not route.quote:
            watcher = asyncio.create_task(_watch_client(receive, generation, left))
        result = await generation.run(
            api_key=api_key,
            body=body,
            idempotency_key=headers.get("idempotency-key"),
            upload=upload,
            defer=JobSubmission() if deferred else None,
        )
    except UploadAborted:
        return  # the client left before its upload was whole: nobody to answer
    except GatewayError as error:
        if error.code == DATABASE_UNAVAILABLE:
            # One line per request, no traceback: during an outage every request fails the same way.
            logger.warning("request %s: %s (%r)", request_id, error.code, error.__cause__)
        result = GatewayResponse(error.status, error_body(error, flavor=flavor, request_id=request_id), error.headers)
    except Exception:
        logger.exception("request %s failed", request_id)
        internal = GatewayError(500, "internal_error", f"The gateway failed to process request {request_id}.")
        result = GatewayResponse(500, error_body(internal, flavor=flavor, request_id=request_id))
    finally:
        if isinstance(upload, EditUpload):
            upload.cleanup()
        if watcher is not None and not left.is_set():
            watcher.cancel()
    elapsed = time.monotonic() - started
    request_record(request_id=request_id, path=scope["path"], generation=generation, response=result, seconds=elapsed)
    if left.is_set() and generation is not None and generation.line_item is not None:
        # The client left mid-wait; the call went on and settled. Its answer is kept as a job (by request id).
        assert watcher is not None and generation.caller is not None
        await watcher
        await db_step(job_record_left_answer, generation, generation.caller, result)
        if not stream.started:
            return  # nobody to answer; a stream's writer still ends below
    if stream.started:
        if result.status != 200:
            # Mid-stream, an error is an event (the SDK raises it as APIError), as OpenAI's streams end.
            await stream.event("error", {"type": "error", **result.body})
        await stream.finish()
    else:
        await _send_json(send, result.status, result.body, request_id, result.headers)


async def _watch_client(receive: Receive, generation: ImageGeneration, left: asyncio.Event) -> None:
    """Notice a client that leaves mid-wait (a proxy's timeout): its call is then recorded as a running job."""
    # Whatever else arrives (the rest of a body too large to read) is dropped until the client leaves.
    message = await receive()
    while message["type"] != "http.disconnect":
        message = await receive()
    left.set()
    if generation.line_item is not None and generation.caller is not None:
        logger.info("request %s: the client left; the call goes on as a job", generation.request_id)
        await db_step(job_record_left, generation, generation.caller)


async def _edit_upload(receive: Receive, headers: dict[str, str]) -> EditUpload | GatewayError:
    """The edit's upload, or why it was refused (the pipeline records the refusal once it knows the caller)."""
    try:
        return await edit_upload_receive(receive, headers)
    except GatewayError as error:
        return error
