"""Real server processes through real outages: PostgreSQL unreachable answers a quick 503 and recovers by itself;
a web process killed mid-request has its reservation released by another web process, with no Celery beat."""

import socket
import threading
import time
from contextlib import suppress
from decimal import Decimal

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from accounts.services import org_tier_set
from billing.limits import spend_limit_set
from billing.models import SpendCounter, SpendReservation, UsageLineItem
from tests.governance import SMALL_IMAGE, URL, bearer, small_image_price
from tests.processes import web_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


class PostgresLink:
    """A TCP relay in front of PostgreSQL: `cut()` drops every connection through it and refuses new ones, as a
    stopped server would; `restore()` relays again, on the same port."""

    def __init__(self, upstream_port: int = 5432) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self._serve()

    def _serve(self) -> None:
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with suppress(OSError):  # either end closed (the link was cut): stop relaying
            while data := source.recv(65536):
                target.sendall(data)
        for end in (source, target):
            end.close()

    def cut(self) -> None:
        # Shut down first: closing alone would not wake the thread blocked in accept(), and the port would still
        # take connections into its backlog.
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for end in self.sockets:
            with suppress(OSError):  # already closed by its peer
                end.shutdown(socket.SHUT_RDWR)
            end.close()
        self.sockets.clear()

    def restore(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self._serve()


def _capped_org(make_org, make_key) -> dict[str, str]:
    small_image_price("0.04")
    org = make_org("acme", tier="free")
    org_tier_set(organization=org, tier_slug="enterprise", images_per_minute=1000, images_per_day=1000)
    # A cap, so that every request holds a reservation until it settles.
    spend_limit_set(organization=org, key_prefix=None, period="day", amount=Decimal("100.00"))
    return bearer(make_key(org).plaintext)


def _timed(method: str, url: str, **kwargs) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.request(method, url, timeout=10, **kwargs)
    return response, time.monotonic() - started


def test_postgres_unreachable_answers_503_with_retry_after_quickly_then_recovers(make_org, make_key, tmp_path):
    headers = _capped_org(make_org, make_key)
    browser = Client()
    browser.force_login(get_user_model().objects.create_user("alice", "alice@acme.test", "pw-alice-123"))
    session = {"sessionid": browser.cookies["sessionid"].value}
    link = PostgresLink()
    database = f"postgres://postgres@127.0.0.1:{link.port}/{connection.settings_dict['NAME']}"
    log_path = tmp_path / "server.log"
    # The ORM's pool would wait out its timeout (DB_POOL_TIMEOUT, 10 s) for a connection that never comes.
    with log_path.open("w") as log, web_process(log=log, DATABASE_URL=database) as (url, _):
        assert httpx.post(f"{url}{URL}", json=SMALL_IMAGE, headers=headers, timeout=10).status_code == 200
        # Warm the ORM's pool too: its connections die with the link and are found dead on their next use.
        assert httpx.get(f"{url}/api/usage", headers=headers, timeout=10).status_code == 200
        link.cut()
        answers = {
            path: _timed(method, f"{url}{path}", headers=headers, **({"json": SMALL_IMAGE} if method == "POST" else {}))
            for method, path in [
                ("POST", "/v1/images/generations"),
                ("POST", "/api/images/generations"),
                ("GET", "/v1/models"),
                ("GET", "/api/usage"),
            ]
        }
        health, health_seconds = _timed("GET", f"{url}/healthz")
        page, _ = _timed("GET", f"{url}/", cookies=session)
        link.restore()
        deadline = time.monotonic() + 15
        while (recovered := httpx.post(f"{url}{URL}", json=SMALL_IMAGE, headers=headers, timeout=10)).status_code > 200:
            assert time.monotonic() < deadline, f"not recovered: {recovered.status_code} {recovered.text}"
            time.sleep(0.5)
    for path, (response, seconds) in answers.items():
        assert response.status_code == 503, (path, response.text)
        assert response.headers["retry-after"] == "5", path
        # Under 2 s even where the ORM's pool would wait 10: once the image request found the database gone,
        # the process answers at once for a moment (gateway.core.db.database_known_down).
        assert seconds < 2, (path, seconds)
        body = response.json()
        if path.startswith(("/v1/", "/api/usage")):  # the usage API answers in OpenAI's shape, as documented
            assert body["error"]["code"] == "database_unavailable" and body["error"]["type"] == "server_error"
        else:
            assert body["code"] == "database_unavailable" and body["requestId"].startswith("req-")
    assert health.status_code == 503 and health_seconds < 2, health_seconds
    # The dashboard (a signed-in user's session is in the database): a short page, not Django's 500.
    assert page.status_code == 503 and page.headers["retry-after"] == "5"
    assert page.headers["content-type"].startswith("text/plain") and "briefly unavailable" in page.text
    logged = log_path.read_text()
    assert "Traceback" not in logged
    # One warning per refused request, naming it (the request and access log lines beside it are info).
    warnings = [line for line in logged.splitlines() if '"level": "WARNING"' in line or '"level": "ERROR"' in line]
    for response, _ in [*answers.values(), (page, 0)]:
        naming = [line for line in warnings if response.headers["x-request-id"] in line]
        assert len(naming) == 1 and "database" in naming[0], naming
    # Nothing was recorded, let alone sent upstream, while the database was away: only the two 200s.
    assert list(UsageLineItem.objects.values_list("status", flat=True)) == ["succeeded", "succeeded"]
    assert not SpendReservation.objects.exists()


def test_a_killed_web_process_reservation_is_released_by_another_web_process_without_beat(make_org, make_key):
    headers = _capped_org(make_org, make_key)
    # The first process waits a minute on its provider and sweeps nothing itself.
    with web_process(LOCAL_PROVIDER_DELAY_MS="60000", SPEND_RESERVATION_SWEEP_SECONDS="0") as (url, server):

        def call() -> None:
            with suppress(httpx.HTTPError):  # the server dies under it
                httpx.post(f"{url}{URL}", json=SMALL_IMAGE, headers=headers, timeout=120)

        client = threading.Thread(target=call, daemon=True)
        client.start()
        deadline = time.monotonic() + 20
        while not SpendReservation.objects.exists():
            assert time.monotonic() < deadline, "the request did not reach its provider call"
            time.sleep(0.1)
        server.kill()  # mid-request: no shutdown, nothing settled
        server.wait(timeout=10)
    client.join(timeout=10)
    item = UsageLineItem.objects.get()
    assert item.status == "pending" and SpendReservation.objects.filter(line_item=item).exists()

    started = time.monotonic()
    with web_process(SPEND_RESERVATION_TIMEOUT_SECONDS="2", SPEND_RESERVATION_SWEEP_SECONDS="1"):
        while SpendReservation.objects.exists():
            assert time.monotonic() - started < 20, "the web process did not release the reservation"
            time.sleep(0.2)
    item.refresh_from_db()
    assert (item.status, item.error_code, item.cost) == ("failed", "reservation_expired", Decimal(0))
    assert "reservation_released_at" in item.details
    assert list(SpendCounter.objects.values_list("spent", "reserved")) == [(Decimal(0), Decimal(0))]
