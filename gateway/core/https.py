"""HTTPS for the ASGI paths that bypass Django's middleware (the image endpoints, gateway/asgi.py).

Django's SecurityMiddleware redirects plain HTTP to HTTPS and adds the Strict-Transport-Security header on
every other path; this applies the same settings (SECURE_SSL_REDIRECT, SECURE_HSTS_*, SECURE_PROXY_SSL_HEADER)
to the lean path, so that an API client is treated as a browser would be.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


def request_is_secure(scope: Message) -> bool:
    """As Django's `request.is_secure()`: the trusted proxy header when one is configured, else the scheme."""
    if settings.SECURE_PROXY_SSL_HEADER:
        meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        wire_name = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")
        for name, value in scope["headers"]:
            if name.lower() == wire_name:
                # A chain of proxies appends: the first value is what the outermost one saw.
                return value.decode("latin-1").split(",")[0].strip() == secure_value
    return scope.get("scheme") == "https"


def _hsts_value() -> bytes:
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return value.encode("latin-1")


async def https_send(scope: Message, send: Send) -> Send | None:
    """The `send` the endpoint should use, or None when this already answered with a redirect to HTTPS.

    The redirect is 308, not Django's 301, so that a client following it repeats the POST with its body.
    A Host outside ALLOWED_HOSTS is not redirected (that would be an open redirect): the endpoint refuses it.
    """
    secure = request_is_secure(scope)
    if settings.SECURE_SSL_REDIRECT and not secure:
        host = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"host"), "")
        domain, _ = split_domain_port(host)
        if domain and validate_host(domain, settings.ALLOWED_HOSTS):
            query = scope.get("query_string", b"").decode("latin-1")
            path = scope.get("raw_path") or scope["path"].encode("utf-8")
            location = f"https://{settings.SECURE_SSL_HOST or host}{path.decode('latin-1')}"
            if query:
                location += f"?{query}"
            await send(
                {"type": "http.response.start", "status": 308, "headers": [(b"location", location.encode("latin-1"))]}
            )
            await send({"type": "http.response.body", "body": b""})
            return None
        return send
    if not (secure and settings.SECURE_HSTS_SECONDS):
        return send

    hsts = _hsts_value()

    async def send_with_hsts(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"strict-transport-security", hsts)]}
        await send(message)

    return send_with_hsts
