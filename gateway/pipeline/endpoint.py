"""The image endpoints as a thin ASGI app in front of Django.

`POST /v1/images/generations` and `POST /api/images/generations` are the hot path:
hundreds in flight, most of their life spent waiting on a provider. Going through
Django's handler would cost a thread hop for each of its request signals and each
sync middleware (sessions, CSRF, auth, messages: none of which apply to an API-key
endpoint), several times the CPU of everything else the gateway does per request.
So this endpoint does only what Django would have done for it: validate the Host,
read a bounded body, give the request an id, and turn the pipeline's answer (or
error) into JSON. Every other path goes to Django.
"""

import json
import logging
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from gateway.core.auth import api_key_from_headers
from gateway.core.errors import Flavor, GatewayError, error_body
from gateway.core.middleware import new_request_id
from gateway.pipeline.generation import ImageGeneration

logger = logging.getLogger("gateway.pipeline.endpoint")

IMAGE_ENDPOINTS = {"/v1/images/generations": Flavor.OPENAI, "/api/images/generations": Flavor.FLAT}

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
    """The request body, or None once it is known to be over the limit (the pipeline answers 413)."""
    limit = settings.MAX_REQUEST_BODY_BYTES
    if declared_length.isdigit() and int(declared_length) > limit:
        return None
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


async def _send_json(send: Send, status: int, body: dict, request_id: str, headers: dict[str, str]) -> None:
    raw = json.dumps(body).encode()
    response_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
        (b"x-request-id", request_id.encode()),
        (b"x-content-type-options", b"nosniff"),
    ]
    response_headers += [(name.lower().encode(), str(value).encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": raw})


async def image_endpoint(scope: dict, receive: Receive, send: Send, flavor: str) -> None:
    request_id = new_request_id()
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    host = headers.get("host", "")
    try:
        domain, _ = split_domain_port(host)
        if not domain or not validate_host(domain, _allowed_hosts()):
            raise GatewayError(400, "invalid_host", f"Invalid Host header {host!r}: add it to ALLOWED_HOSTS.")
        if scope["method"] != "POST":
            raise GatewayError(405, "method_not_allowed", "Use POST for image generations.", headers={"Allow": "POST"})
        body = await _read_body(receive, headers.get("content-length", ""))
        generation = ImageGeneration(request_id=request_id, flavor=flavor, base_url=_base_url(scope, host))
        result = await generation.run(
            api_key=api_key_from_headers(
                authorization=headers.get("authorization", ""), x_api_key=headers.get("x-api-key", "")
            ),
            body=body,
            idempotency_key=headers.get("idempotency-key"),
        )
        status, payload, extra = result.status, result.body, result.headers
    except GatewayError as error:
        status, payload, extra = error.status, error_body(error, flavor=flavor, request_id=request_id), error.headers
    except Exception:
        logger.exception("request %s failed", request_id)
        internal = GatewayError(500, "internal_error", f"The gateway failed to process request {request_id}.")
        status, payload, extra = 500, error_body(internal, flavor=flavor, request_id=request_id), {}
    await _send_json(send, status, payload, request_id, extra)
