"""The one shared httpx.AsyncClient every adapter sends through.

Adapters speak httpx (client.request, httpx.Response, httpx exceptions, `files=`,
per-request `timeout=`); underneath, the bytes go through aiohttp by way of
httpx-aiohttp's AiohttpTransport, which spends about a third less client CPU per
upstream call than httpx's own transport (bench/upstream_client.py).

What AiohttpTransport (httpx-aiohttp 0.2.0) does not do like httpx's transport,
and what we do about it:
- Errors: it maps every aiohttp.ClientConnectionError, connection refused and a
  server hanging up included, to httpx.ConnectTimeout (adapters would report an
  unreachable upstream as a timeout), and lets aiohttp.ClientResponseError (an
  answer that is not HTTP) escape as a non-httpx exception. `_Transport` maps
  them as httpx's transport does (tests/providers/test_http_transport.py pins each one).
- Proxies: httpx reads HTTP(S)_PROXY/ALL_PROXY only for its own transport, so
  with a proxy in the environment we keep httpx's transport.
- Timeouts: connect and read are honoured; a wait for a free pooled connection
  ends as ConnectTimeout rather than PoolTimeout; the write timeout is ignored.
- Limits: max_connections caps the pool (UPSTREAM_MAX_CONNECTIONS per process);
  max_keepalive_connections is ignored (aiohttp keeps every idle connection for
  keepalive_expiry).
- Uploads: a body httpx has not read (multipart with files) is handed to aiohttp
  as httpx's async stream, so a file goes out in httpx's 64 KiB chunks as it is
  read from disk, never whole in memory (pinned by a test).
"""

import asyncio
import contextlib
import urllib.request
from collections.abc import AsyncIterator, Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy

import aiohttp
import httpx
from django.conf import settings
from httpx_aiohttp import AiohttpTransport

# aiohttp error -> what httpx's own transport raises for the same failure; the first match wins.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ConnectTimeout),  # connecting, or waiting for a pooled connection
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),  # body cut short
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # not an HTTP answer
    (aiohttp.ClientConnectionError, httpx.NetworkError),  # reset, and the rest
)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        # httpx-aiohttp raises its own (mis)mapping `from` the aiohttp error, or the aiohttp error itself.
        source = exc.__cause__ if isinstance(exc, httpx.TransportError) else exc
        for aiohttp_error, httpx_error in _ERRORS:
            if isinstance(source, aiohttp_error):
                raise httpx_error(str(source)) from source
        if isinstance(exc, aiohttp.ClientError):
            raise httpx.TransportError(str(exc)) from exc
        raise


class _Body(httpx.AsyncByteStream):
    """The response body, with errors while reading it mapped too."""

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        with _httpx_errors():
            await self._stream.aclose()


class _Transport(AiohttpTransport):
    def get_client(self) -> aiohttp.ClientSession:
        """The session AiohttpTransport would make, but keeping no cookies.

        One client serves every tenant: a cookie an upstream sets must not ride along on anyone's next call.
        """
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 100,
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _httpx_errors():
            response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Body(response.stream)
        return response


def _proxy_in_environment() -> bool:
    """Whether httpx's own transport would send through a proxy (it reads the same urllib settings)."""
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


def new_client(limits: httpx.Limits | None = None, *, use_aiohttp: bool = True) -> httpx.AsyncClient:
    """A client as `http_client()` builds it; `use_aiohttp=False` keeps httpx's own transport."""
    if limits is None:
        # Every request in flight holds a connection for the provider's whole answer (seconds, for an image):
        # the pool is sized for requests in flight, not for a request rate.
        limits = httpx.Limits(
            max_connections=settings.UPSTREAM_MAX_CONNECTIONS,
            max_keepalive_connections=100,
            keepalive_expiry=settings.UPSTREAM_KEEPALIVE_SECONDS,
        )
    # An explicit transport makes httpx ignore proxy variables, hence the fallback.
    transport = _Transport(limits=limits) if use_aiohttp and not _proxy_in_environment() else None
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(settings.PROVIDER_TIMEOUT_SECONDS, connect=5.0),
        limits=limits,
        follow_redirects=False,
        # Keeps no cookies (a policy that allows no domain), for the same reason as _Transport's session.
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


_clients: dict[int, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}


def http_client() -> httpx.AsyncClient:
    """The client for the running event loop.

    A client is bound to the loop it was first used on; a server process has one
    loop, tests get a fresh loop each, so key by loop. The entry holds the loop
    itself, so a new loop that happens to get a dead loop's id never inherits its
    client (aiohttp's session fails on any loop but its own).
    """
    loop = asyncio.get_running_loop()
    entry = _clients.get(id(loop))
    if entry is None or entry[0] is not loop or entry[1].is_closed:
        if len(_clients) > 8:
            _clients.clear()
        entry = (loop, new_client())
        _clients[id(loop)] = entry
    return entry[1]


async def http_client_close() -> None:
    """Close the running loop's client and its pooled connections (server shutdown)."""
    loop = asyncio.get_running_loop()
    entry = _clients.pop(id(loop), None)
    if entry is not None and entry[0] is loop:
        await entry[1].aclose()
