"""Webhooks (spend alerts, job callbacks) go to public addresses only, checked again where the POST connects."""

import socket

import pytest

from billing.alerts import WebhookDeliveryError, webhook_deliver
from gateway.core.webhook_address import WebhookAddressError, url_addresses
from tests.billing.test_alerts import WebhookReceiver
from tests.conftest import serve_asgi


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://127.8.9.10:8080/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://172.31.255.255/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://[fd12:3456::1]/", "private"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://100.64.0.1/", "non-public"),
    ],
)
def test_internal_addresses_are_refused(url, kind):
    with pytest.raises(WebhookAddressError, match=f"is an? {kind} address"):
        url_addresses(url)


def test_a_name_is_refused_for_what_it_resolves_to():
    with pytest.raises(WebhookAddressError, match="localhost resolves to .* loopback address"):
        url_addresses("https://localhost/hook")


def test_a_public_address_passes_and_allowed_networks_are_the_operators(settings):
    assert [str(a) for a in url_addresses("https://93.184.215.14/hook")] == ["93.184.215.14"]
    settings.WEBHOOK_ALLOWED_NETWORKS = ["10.0.0.0/8", "fd00::/8"]
    assert url_addresses("https://10.1.2.3/") and url_addresses("https://[fd12::1]/")
    with pytest.raises(WebhookAddressError):
        url_addresses("https://127.0.0.1/")


@pytest.fixture
def loopback_receiver():
    webhook = WebhookReceiver(failures=0)
    with serve_asgi(webhook) as url:
        webhook.url = url
        yield webhook


def test_delivery_refuses_an_internal_address_and_sends_nothing(loopback_receiver):
    # As if the URL had been saved while its name still resolved to a public address.
    with pytest.raises(WebhookDeliveryError, match="127.0.0.1 is a loopback address"):
        webhook_deliver(url=f"{loopback_receiver.url}/hook", secret="whsec-test", payload={"x": 1})
    assert loopback_receiver.received == []


def test_delivery_connects_to_the_address_it_checked(loopback_receiver, settings, monkeypatch):
    """DNS rebinding: the name answers an allowed address to the check and something else to any later lookup;
    the POST goes to the address checked, naming the host in Host."""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    port = int(loopback_receiver.url.rsplit(":", 1)[1])
    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]])
    real_getaddrinfo = socket.getaddrinfo

    def rebinding_dns(host, *args, **kwargs):
        if host != "hooks.rebind.test":
            return real_getaddrinfo(host, *args, **kwargs)
        # The second lookup (one a client would make to connect) answers the metadata service.
        return next(answers, [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))])

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    webhook_deliver(url=f"http://hooks.rebind.test:{port}/hook", secret="whsec-test", payload={"x": 1})
    [(headers, body)] = loopback_receiver.received
    assert headers["host"] == f"hooks.rebind.test:{port}" and body == b'{"x": 1}'
