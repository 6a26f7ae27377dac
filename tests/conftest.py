"""Shared fixtures: the cast (tests/people.py), seeded catalog, organizations and keys, management commands,
the ASGI app in-process and live, and the fake upstreams (tests/fakes/).

Each folder mirrors an app (gateway, billing, accounts, providers) plus e2e; a folder's conftest holds only
what that folder needs.

Tests that go through the async pipeline use `transaction=True` databases: the
pipeline runs its database steps on other threads, which only see committed rows.
"""

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import StringIO

import httpx
import pytest
import uvicorn
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections
from django.db.backends.base.creation import TEST_DATABASE_PREFIX

from accounts.models import Organization
from accounts.services import CreatedApiKey, api_key_create, org_create
from gateway.asgi import application
from gateway.celery import app as celery_app
from gateway.seed import seed_defaults
from providers.breaker import breakers_reset
from tests.fakes.bfl_upstream import FakeBFL
from tests.fakes.google_upstream import FakeGoogle
from tests.fakes.ideogram_upstream import FakeIdeogram
from tests.fakes.openai_upstream import FakeOpenAI, FakeOpenAICompatible
from tests.fakes.stability_upstream import FakeStability
from tests.people import as_user, people  # noqa: F401 - the cast, for every folder


def pytest_collection_modifyitems(config, items):
    """In the embedded mode (SQLite, no REDIS_URL) skip the tests marked `postgres` or `redis`, and only those."""
    from django.conf import settings

    vendor = connections["default"].vendor
    missing = {
        "postgres": None if vendor == "postgresql" else f"needs PostgreSQL; the default database is {vendor}",
        "redis": None if settings.REDIS_URL else "needs Redis; REDIS_URL is empty",
    }
    for item in items:
        reasons = [reason for marker, reason in missing.items() if reason and item.get_closest_marker(marker)]
        if reasons:
            item.add_marker(pytest.mark.skip(reason=" and ".join(reasons)))


@pytest.fixture(scope="session", autouse=True)
def _close_connection_pools(django_db_setup, django_db_blocker):
    """Connections left in the pool or on asgiref's worker threads would block the test database's teardown."""
    yield
    with django_db_blocker.unblock():
        for connection in connections.all():
            if connection.vendor != "postgresql" or not connection.settings_dict["NAME"].startswith(
                TEST_DATABASE_PREFIX
            ):
                continue  # SQLite has no pool; or no test used the database, so no test database was made
            connection.close_pool()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.LOCAL_PROVIDER_FALLBACK = True
    settings.LOCAL_PROVIDER_DELAY_MS = 0
    # Upstream retries back off for milliseconds, not seconds, and no breaker remembers another test.
    settings.PROVIDER_BACKOFF_BASE_MS = 5
    settings.PROVIDER_BACKOFF_CAP_MS = 20
    breakers_reset()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """The people of the tests and their logins hash cheaply: PBKDF2's default rounds cost half a second each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_rate_limits(settings):
    """Rate-limit counters (and failed authentications) start empty: FLUSHDB of this run's own Redis database
    (never FLUSHALL)."""
    from accounts.throttle import addresses
    from gateway.core import db
    from gateway.pipeline.concurrency import local_slots
    from gateway.pipeline.ratelimit import local_limiter

    if settings.REDIS_URL:
        from gateway.core.redis import redis_client

        redis_client().flushdb()
    local_limiter.reset()
    addresses.reset()
    local_slots.reset()
    # A connection that failed in an earlier test must not make this one's steps answer 503.
    db._down_until = 0.0


@pytest.fixture
def seeded(transactional_db):
    """The default tiers, catalog and prices, committed."""
    return seed_defaults(admin_password="admin-password-for-tests")


def run(*args) -> str:
    """A management command run in this process, as `manage.py` would; what it printed."""
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def defaults(db):
    """The defaults as `manage.py seed_defaults` writes them, inside the test's own transaction."""
    run("seed_defaults")


@pytest.fixture
def make_org(seeded) -> Callable[..., Organization]:
    def make(slug: str = "acme", tier: str = "free") -> Organization:
        return org_create(slug=slug, name=slug.title(), tier_slug=tier)

    return make


@pytest.fixture
def make_key() -> Callable[..., CreatedApiKey]:
    def make(organization: Organization, **kwargs) -> CreatedApiKey:
        return api_key_create(organization=organization, **kwargs)

    return make


@pytest.fixture
def acme(make_org) -> Organization:
    return make_org("acme", tier="pro")


@pytest.fixture
def acme_key(acme, make_key) -> CreatedApiKey:
    return make_key(acme, name="acme default")


@pytest.fixture
def api_key_plaintext(acme_key) -> str:
    return acme_key.plaintext


@pytest.fixture
async def gateway_client():
    """An httpx client speaking ASGI to the app in this process."""
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def auth_headers(api_key_plaintext) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key_plaintext}"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_asgi(app) -> Iterator[str]:
    """Run an ASGI app under a real uvicorn server on a free port; yields its base URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_gateway(transactional_db, settings):
    """The gateway's ASGI app under a real uvicorn server, for SDK and browser tests."""
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
    with serve_asgi(application) as url:
        yield url


def _serve_fake(monkeypatch, fake, provider_variables: str, path: str = ""):
    """Run `fake` on real HTTP and point the provider's `<PREFIX>_API_KEY` / `<PREFIX>_BASE_URL` at it."""
    with serve_asgi(fake) as url:
        monkeypatch.setenv(f"{provider_variables}_API_KEY", fake.api_key)
        monkeypatch.setenv(f"{provider_variables}_BASE_URL", f"{url}{path}")
        yield fake


@pytest.fixture
def fake_openai(monkeypatch):
    """A fake OpenAI upstream on real HTTP, configured as the gateway's `openai` provider."""
    yield from _serve_fake(monkeypatch, FakeOpenAI(api_key="sk-test-upstream"), "OPENAI", "/v1")


@pytest.fixture
def fake_compatible(monkeypatch):
    """Another OpenAI-compatible server, configured as the `openai_compatible` provider's default upstream."""
    yield from _serve_fake(monkeypatch, FakeOpenAICompatible(api_key="sk-compatible"), "OPENAI_COMPATIBLE", "/v1")


@pytest.fixture
def fake_stability(monkeypatch):
    yield from _serve_fake(monkeypatch, FakeStability(api_key="sk-stability"), "STABILITY")


@pytest.fixture
def fake_bfl(monkeypatch, settings):
    settings.BFL_POLL_INTERVAL_MS = 10
    yield from _serve_fake(monkeypatch, FakeBFL(api_key="bfl-key"), "BFL")


@pytest.fixture
def fake_ideogram(monkeypatch):
    yield from _serve_fake(monkeypatch, FakeIdeogram(api_key="ideogram-key"), "IDEOGRAM")


@pytest.fixture
def fake_google(monkeypatch):
    yield from _serve_fake(monkeypatch, FakeGoogle(api_key="gemini-key"), "GEMINI")


@pytest.fixture
def all_fakes(fake_openai, fake_compatible, fake_stability, fake_bfl, fake_ideogram, fake_google, settings):
    """Every provider configured against its fake, with no local fallback: each model must reach its upstream."""
    settings.LOCAL_PROVIDER_FALLBACK = False
    return {
        "openai": fake_openai,
        "openai_compatible": fake_compatible,
        "stability": fake_stability,
        "bfl": fake_bfl,
        "ideogram": fake_ideogram,
        "google": fake_google,
    }


@pytest.fixture
def admin_user(transactional_db):
    return get_user_model().objects.create_superuser("root-admin", "root@example.com", "pw-for-tests-123")


@pytest.fixture
def broker_down():
    """Celery enqueues for real (not inline), to a Redis port nothing listens on."""
    conf = celery_app.conf
    saved = conf.broker_url, conf.task_always_eager
    conf.broker_url, conf.task_always_eager = f"redis://127.0.0.1:{_free_port()}/0", False
    # The app keeps pools of broker connections made from the URL it had: drop them, as Celery does in a
    # forked process, so that the next message goes to the new URL.
    celery_app._after_fork()
    yield
    conf.broker_url, conf.task_always_eager = saved
    celery_app._after_fork()
