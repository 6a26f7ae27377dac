"""Keys carry a checksum, so a malformed one costs no query; an address that keeps failing is throttled; a session
never authenticates the API and a key never the dashboard."""

import secrets

import httpx
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.callers import caller_authenticate
from accounts.models import ApiKey
from accounts.services import api_key_prefix, api_key_well_formed, hash_api_key
from gateway import asgi
from gateway.core import db
from gateway.core.redis import redis_client

pytestmark = pytest.mark.django_db(transaction=True)

GENERATIONS = "/v1/images/generations"
BODY = {"prompt": "a lighthouse", "model": "dall-e-3"}


def _other_last_char(key: str) -> str:
    return key[:-1] + ("A" if key[-1] != "A" else "B")


def malformed_keys(valid: str) -> dict[str, str]:
    return {
        "wrong marker": "sk-" + valid[4:],
        "too short": valid[:-1],
        "too long": valid + "0",
        "not base62": valid[:10] + "-" + valid[11:],
        "checksum": _other_last_char(valid),
        "legacy too short": "igw-" + secrets.token_urlsafe(20),
    }


@pytest.fixture
def statements(monkeypatch) -> list[str]:
    """Every statement the hot path sends (async or on a borrowed thread), recorded as it passes through."""
    sent: list[str] = []
    hot_run, run_sync = db.hot_run, db.run_sync

    async def counted_hot_run(sql, params):
        sent.append(sql)
        return await hot_run(sql, params)

    def counted_run_sync(sql, params):
        sent.append(sql)
        return run_sync(sql, params)

    monkeypatch.setattr(db, "hot_run", counted_hot_run)
    monkeypatch.setattr(db, "run_sync", counted_run_sync)
    return sent


def test_a_new_key_carries_the_checksum_of_its_secret(acme_key):
    plaintext = acme_key.plaintext
    assert plaintext.startswith("igw_") and len(plaintext) == 42
    assert api_key_well_formed(plaintext)
    assert not api_key_well_formed(_other_last_char(plaintext))
    assert acme_key.api_key.prefix == plaintext[:12]


@pytest.mark.parametrize("kind", list(malformed_keys("igw_" + "a" * 38)))
def test_a_malformed_key_is_refused_without_a_query(acme_key, django_assert_num_queries, kind):
    with django_assert_num_queries(0):
        assert caller_authenticate(malformed_keys(acme_key.plaintext)[kind], client="10.0.0.1") is None


def test_a_well_formed_key_is_looked_up(acme_key, django_assert_num_queries):
    """The counter above would see a query: a key that could be ours costs one."""
    unknown = "igw-" + secrets.token_urlsafe(32)
    with django_assert_num_queries(1):
        assert caller_authenticate(unknown, client="10.0.0.1") is None


async def test_a_malformed_key_reaches_no_statement_at_the_image_endpoint(
    gateway_client, acme_key, statements, settings
):
    settings.AUTH_FAILURES_PER_MINUTE = 0
    for key in malformed_keys(acme_key.plaintext).values():
        response = await gateway_client.post(GENERATIONS, json=BODY, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert statements == []
    unknown = "igw-" + secrets.token_urlsafe(32)
    response = await gateway_client.post(GENERATIONS, json=BODY, headers={"Authorization": f"Bearer {unknown}"})
    assert response.status_code == 401
    assert statements, "a well-formed key is looked up, so the spy sees statements"


def test_a_malformed_key_reaches_no_query_at_the_usage_api(client, acme_key):
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/usage", HTTP_AUTHORIZATION=f"Bearer {_other_last_char(acme_key.plaintext)}")
    assert response.status_code == 401
    assert len(queries) == 0


async def test_a_key_minted_before_the_checksum_still_works(gateway_client, acme):
    legacy = "igw-" + secrets.token_urlsafe(32)
    await ApiKey.objects.acreate(
        organization=acme, name="old", prefix=api_key_prefix(legacy), key_hash=hash_api_key(legacy)
    )
    response = await gateway_client.post(GENERATIONS, json=BODY, headers={"Authorization": f"Bearer {legacy}"})
    assert response.status_code == 200, response.text


@pytest.fixture
def from_address():
    """An in-process client of the gateway whose requests come from `address`."""
    clients: list[httpx.AsyncClient] = []

    def make(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=asgi.application, client=(address, 40000))
        made = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        clients.append(made)
        return made

    yield make


async def _fail(client: httpx.AsyncClient, times: int, **headers) -> None:
    for _ in range(times):
        response = await client.post(GENERATIONS, json=BODY, headers={"Authorization": "Bearer igw-nope", **headers})
        assert response.status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", GENERATIONS),
        ("POST", "/api/images/generations"),
        ("POST", "/v1/images/quote"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/dall-e-3"),
        ("GET", "/v1/images/jobs"),
        ("GET", "/api/images/jobs/imgjob_x"),
        ("GET", "/api/usage"),
        ("GET", "/api/usage/summary"),
    ],
)
async def test_after_too_many_failures_any_key_from_the_address_is_429_without_a_query(
    from_address, acme_key, settings, statements, method, path
):
    settings.AUTH_FAILURES_PER_MINUTE = 5
    attacker = from_address("203.0.113.9")
    await _fail(attacker, 5)
    statements.clear()
    valid = {"Authorization": f"Bearer {acme_key.plaintext}"}
    response = await attacker.request(method, path, json=BODY if method == "POST" else None, headers=valid)
    assert response.status_code == 429, response.text
    assert 50 <= int(response.headers["Retry-After"]) <= 60
    assert "invalid API key" in response.text
    assert statements == []
    # Another address is not affected.
    response = await from_address("198.51.100.7").request(
        method, path, json=BODY if method == "POST" else None, headers=valid
    )
    assert response.status_code != 429


async def test_failures_below_the_limit_are_plain_401s(from_address, acme_key, settings):
    settings.AUTH_FAILURES_PER_MINUTE = 5
    client = from_address("203.0.113.9")
    await _fail(client, 4)
    response = await client.post(GENERATIONS, json=BODY, headers={"Authorization": f"Bearer {acme_key.plaintext}"})
    assert response.status_code == 200, response.text


async def test_x_forwarded_for_counts_only_behind_trusted_proxies(from_address, settings):
    settings.AUTH_FAILURES_PER_MINUTE = 3
    proxy = from_address("10.0.0.2")
    # Untrusted: the header is the client's own say-so, so both "clients" are the proxy's one address.
    await _fail(proxy, 2, **{"X-Forwarded-For": "192.0.2.1"})
    await _fail(proxy, 1, **{"X-Forwarded-For": "192.0.2.2"})
    response = await proxy.post(GENERATIONS, json=BODY, headers={"Authorization": "Bearer igw-nope"})
    assert response.status_code == 429
    # Behind one trusted proxy, the address it saw is the client's, whatever the client wrote before it.
    settings.TRUSTED_PROXY_COUNT = 1
    await _fail(proxy, 3, **{"X-Forwarded-For": "6.6.6.6, 192.0.2.3"})
    response = await proxy.post(
        GENERATIONS, json=BODY, headers={"Authorization": "Bearer igw-nope", "X-Forwarded-For": "7.7.7.7, 192.0.2.3"}
    )
    assert response.status_code == 429
    response = await proxy.post(
        GENERATIONS, json=BODY, headers={"Authorization": "Bearer igw-nope", "X-Forwarded-For": "192.0.2.4"}
    )
    assert response.status_code == 401


@pytest.mark.redis
def test_failures_are_shared_through_redis(acme_key, settings):
    """Counted in Redis, failures recorded by one process are seen by the next: its first failure refuses."""
    from accounts.throttle import addresses

    settings.AUTH_FAILURES_PER_MINUTE = 3
    for _ in range(2):
        assert caller_authenticate("igw-nope", client="203.0.113.5") is None
    addresses.reset()  # another process: it has seen none of them
    assert caller_authenticate("igw-nope", client="203.0.113.5") is None
    with pytest.raises(Exception) as refused:
        caller_authenticate(acme_key.plaintext, client="203.0.113.5")
    assert refused.value.status == 429


@pytest.mark.redis
def test_with_redis_down_failures_are_counted_in_process(acme_key, settings):
    settings.AUTH_FAILURES_PER_MINUTE = 3
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    redis_client.cache_clear()
    try:
        for _ in range(3):
            assert caller_authenticate("igw-nope", client="203.0.113.6") is None
        with pytest.raises(Exception) as refused:
            caller_authenticate(acme_key.plaintext, client="203.0.113.6")
        assert refused.value.status == 429
    finally:
        redis_client.cache_clear()


def test_a_dashboard_session_never_authenticates_the_api(people, client, live_gateway):
    client.force_login(people.alice)
    assert client.get("/orgs/acme/keys/").status_code == 200  # the session is good for the dashboard
    cookies = {"sessionid": client.cookies["sessionid"].value, "csrftoken": "x" * 32}
    with httpx.Client(base_url=live_gateway, cookies=cookies, headers={"X-CSRFToken": "x" * 32}) as browser:
        assert browser.get("/orgs/acme/keys/").status_code == 200
        for response in (
            browser.get("/v1/models"),
            browser.get("/api/usage"),
            browser.get("/v1/images/jobs"),
            browser.post(GENERATIONS, json=BODY),
            browser.post("/api/images/generations", json={**BODY, "provider": "openai"}),
        ):
            assert response.status_code == 401, response.text


def test_an_api_key_never_opens_the_dashboard(people, client):
    from accounts.services import api_key_create

    key = api_key_create(organization=people.acme).plaintext
    for path in ("/orgs/acme/keys/", "/orgs/acme/usage/", "/orgs/acme/members/"):
        response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_X_API_KEY=key)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
