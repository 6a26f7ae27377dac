"""The one shared httpx.AsyncClient every adapter sends through."""

import asyncio

import httpx
from django.conf import settings

_clients: dict[int, httpx.AsyncClient] = {}


def http_client() -> httpx.AsyncClient:
    """The client for the running event loop.

    A client is bound to the loop it was first used on; a server process has one
    loop, tests get a fresh loop each, so key by loop.
    """
    loop = asyncio.get_running_loop()
    client = _clients.get(id(loop))
    if client is None or client.is_closed:
        if len(_clients) > 8:
            _clients.clear()
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.PROVIDER_TIMEOUT_SECONDS, connect=5.0),
            limits=httpx.Limits(max_connections=500, max_keepalive_connections=100),
            follow_redirects=False,
        )
        _clients[id(loop)] = client
    return client
