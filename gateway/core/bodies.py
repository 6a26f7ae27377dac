"""A request body read against the clock: it must have arrived BODY_READ_TIMEOUT_SECONDS after its read began.

Without a deadline, a client that sends its headers and then a byte now and then (slowloris) holds a
connection, and the coroutine reading it, for ever; a few hundred of them exhaust a worker. The answer is
408 with `Connection: close`, so the server drops the connection once it is sent.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable

from django.conf import settings

from gateway.core.errors import Flavor, GatewayError, error_body

Receive = Callable[[], Awaitable[dict]]


class BodyDeadline:
    """`receive`, raising GatewayError 408 once the body has taken longer than BODY_READ_TIMEOUT_SECONDS."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._seconds = settings.BODY_READ_TIMEOUT_SECONDS
        self._deadline = asyncio.get_running_loop().time() + self._seconds

    async def __call__(self) -> dict:
        try:
            async with asyncio.timeout_at(self._deadline):
                return await self._receive()
        except TimeoutError:
            raise GatewayError(
                408,
                "request_timeout",
                f"The request body did not arrive within {self._seconds} seconds: send it whole, without pauses.",
                headers={"Connection": "close"},
            ) from None


ASGIApp = Callable[..., Awaitable[None]]


def body_bounded(app: ASGIApp, *, max_bytes: Callable[[], int]) -> ASGIApp:
    """`app` (Django) behind a body read deadline and a size limit.

    Django's ASGI handler reads a whole body to a temporary file before any view or setting sees it
    (DATA_UPLOAD_MAX_MEMORY_SIZE is only checked when a view parses it), so without this a slow body holds
    the connection for ever and a large one fills the disk. Past the body, `receive` is the server's own
    (Django waits on it for the client's disconnect).
    """

    async def bounded(scope: dict, receive: Receive, send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        deadline = BodyDeadline(receive)
        limit = max_bytes()
        received = 0
        whole = False

        async def body_receive() -> dict:
            nonlocal received, whole
            if whole:
                return await receive()
            message = await deadline()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise GatewayError(
                        413,
                        "request_too_large",
                        f"The request body is over {limit} bytes.",
                        headers={"Connection": "close"},
                    )
                whole = not message.get("more_body", False)
            return message

        try:
            await app(scope, body_receive, send)
        except GatewayError as error:
            # Raised only while the body is read, so before Django has sent anything.
            body = json.dumps(error_body(error, flavor=Flavor.OPENAI, request_id="")).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            headers += [(name.lower().encode(), value.encode()) for name, value in error.headers.items()]
            await send({"type": "http.response.start", "status": error.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    return bounded
