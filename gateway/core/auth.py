"""Reading the API key from a request (`Authorization: Bearer <key>` or `X-API-Key: <key>`), and who sent it."""

from django.conf import settings
from django.http import HttpRequest

# Longer than any IPv6 address; a forwarded "address" is whatever a proxy was sent, so it is cut to this.
MAX_ADDRESS_CHARS = 64


def api_key_from_headers(*, authorization: str, x_api_key: str) -> str | None:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return x_api_key.strip() or None


def api_key_from_request(request: HttpRequest) -> str | None:
    return api_key_from_headers(
        authorization=request.headers.get("Authorization", ""), x_api_key=request.headers.get("X-API-Key", "")
    )


def client_address(*, peer: str, forwarded_for: str) -> str:
    """The client's address: the connection's peer, or, behind TRUSTED_PROXY_COUNT proxies, the address the
    outermost of them saw (each appends the address it was called from to X-Forwarded-For).

    Entries further left were written by the client itself and are never trusted: with 0 proxies (the
    default), X-Forwarded-For is ignored altogether.
    """
    proxies = settings.TRUSTED_PROXY_COUNT
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()] if proxies else []
    address = hops[-min(proxies, len(hops))] if hops else peer
    return address[:MAX_ADDRESS_CHARS]


def client_address_of_scope(scope: dict, headers: dict[str, str]) -> str:
    """client_address for an ASGI request; `headers` are its headers, names lower-cased."""
    peer = scope.get("client") or ("", 0)
    return client_address(peer=peer[0], forwarded_for=headers.get("x-forwarded-for", ""))


def client_address_of_request(request: HttpRequest) -> str:
    return client_address(
        peer=request.META.get("REMOTE_ADDR", ""), forwarded_for=request.headers.get("X-Forwarded-For", "")
    )
