"""HTTPS and browser security in production: Django's pages and the image endpoints (which bypass Django's
middleware, gateway/core/https.py) both redirect plain HTTP and send HSTS; the suite itself stays on plain HTTP."""

import httpx
import pytest

from gateway.asgi import application

pytestmark = pytest.mark.django_db

GENERATIONS = "/v1/images/generations"


@pytest.fixture
def production(settings):
    """The settings PRODUCTION=true gives (gateway/settings.py), applied to this process."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    return settings


async def post(scheme: str, path: str = GENERATIONS, **kwargs) -> httpx.Response:
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url=f"{scheme}://testserver") as client:
        return await client.post(path, json={"prompt": "a red square"}, **kwargs)


def test_the_suite_runs_over_plain_http(client):
    """pytest-django runs with DEBUG off; the production defaults must not follow from that alone."""
    assert client.get("/accounts/login/").status_code == 200


def test_django_pages_redirect_to_https_and_send_hsts_and_secure_cookies(production, client):
    plain = client.get("/accounts/login/?next=/orgs/")
    assert (plain.status_code, plain["Location"]) == (301, "https://testserver/accounts/login/?next=/orgs/")
    secure = client.get("/accounts/login/", secure=True)
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert secure.cookies["csrftoken"]["secure"]


def test_healthz_answers_probes_over_plain_http(production, client):
    assert client.get("/healthz").status_code in (200, 503)


async def test_the_image_endpoint_redirects_plain_http_keeping_the_method(production):
    response = await post("http", f"{GENERATIONS}?x=1")
    assert response.status_code == 308, "308 keeps the POST and its body, where 301 would turn it into a GET"
    assert response.headers["location"] == f"https://testserver{GENERATIONS}?x=1"


async def test_the_image_endpoint_sends_hsts_over_https(production):
    response = await post("https")
    assert response.status_code == 401, "no key: the endpoint answered"
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"


async def test_the_image_endpoint_does_not_redirect_to_a_host_it_does_not_serve(production):
    response = await post("http", headers={"Host": "evil.example"})
    assert response.status_code == 400 and "location" not in response.headers
    assert response.json()["error"]["code"] == "invalid_host"


async def test_the_proxys_header_counts_only_when_configured(production):
    forwarded = {"X-Forwarded-Proto": "https"}
    assert (await post("http", headers=forwarded)).status_code == 308, "not trusted by default"
    production.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    trusted = await post("http", headers=forwarded)
    assert trusted.status_code == 401 and "strict-transport-security" in trusted.headers


async def test_outside_production_the_image_endpoint_is_untouched(settings):
    response = await post("http")
    assert response.status_code == 401 and "strict-transport-security" not in response.headers
