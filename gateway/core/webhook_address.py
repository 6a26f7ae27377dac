"""Where the gateway may POST a webhook (spend alerts, job callbacks): public addresses only.

A customer types the URL, and the gateway's network reaches what the internet does not: the cloud's metadata
service (169.254.169.254), the database, Redis, admin ports on 127.0.0.1. So the host is checked when the URL is
saved and again at delivery, which connects to the very address it checked: a name whose DNS answer changes in
between (DNS rebinding) cannot turn the POST inward. An operator may allow networks (WEBHOOK_ALLOWED_NETWORKS,
CIDRs), e.g. for a receiver inside their own network.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookAddressError(ValueError):
    """The URL's host is, or resolves to, an address the gateway does not send webhooks to; the message says why."""


def _allowed(address: IPAddress) -> bool:
    return any(address in ipaddress.ip_network(cidr, strict=False) for cidr in settings.WEBHOOK_ALLOWED_NETWORKS)


def address_kind_refused(address: IPAddress) -> str | None:
    """What kind of internal address `address` is ("a loopback address", ...), or None when webhooks may go there."""
    if _allowed(address):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address_kind_refused(address.ipv4_mapped)
    for kind, refused in (
        ("a loopback", address.is_loopback),
        ("a link-local", address.is_link_local),
        ("an unspecified", address.is_unspecified),
        ("a multicast", address.is_multicast),
        ("a private", address.is_private),
        ("a non-public", not address.is_global),
    ):
        if refused:
            return f"{kind} address"
    return None


def url_addresses(url: str, *, resolve: bool = True) -> list[IPAddress]:
    """The addresses `url`'s host stands for, each checked. Raises WebhookAddressError saying why one is refused,
    OSError (socket.gaierror) when the name does not resolve. Without `resolve`, only an address written in the
    URL is checked (no DNS lookup, for the request path) and a name gives []."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
        named = False
    except ValueError:
        if not resolve:
            return []
        infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
        # A scoped IPv6 answer (fe80::1%eth0) is checked without its zone.
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        named = True
    for address in addresses:
        kind = address_kind_refused(address)
        if kind is not None:
            where = f"{host} resolves to {address}" if named else str(address)
            raise WebhookAddressError(
                f"Webhooks are not sent to internal addresses: {where} is {kind}. Use a public address."
            )
    return addresses


def url_refusal(url: str, *, resolve: bool) -> str | None:
    """Why webhooks may not go to `url`, or None. A name that does not resolve is left to the delivery, which
    checks again."""
    try:
        url_addresses(url, resolve=resolve)
    except WebhookAddressError as exc:
        return str(exc)
    except OSError:
        return None
    return None
