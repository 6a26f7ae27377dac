"""One JSON log line per image request (never the key or the prompt), the access log, and /metrics."""

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from contextlib import suppress

import httpx
import pytest
from django.conf import settings
from django.db import connection
from pythonjsonlogger.json import JsonFormatter

from tests.conftest import _free_port
from tests.governance import SMALL_IMAGE, URL, bearer, small_image_price

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT = "a secret prompt about the quarterly launch"


@pytest.fixture
def org_key(make_org, make_key):
    small_image_price("0.02")
    org = make_org("acme", tier="pro")
    return org, make_key(org).plaintext


def _json_lines(caplog, logger: str) -> list[dict]:
    formatter = JsonFormatter("%(levelname)s %(name)s %(message)s")
    return [json.loads(formatter.format(record)) for record in caplog.records if record.name == logger]


async def test_one_json_line_per_image_request_without_key_or_prompt(gateway_client, org_key, caplog):
    org, plaintext = org_key
    caplog.set_level(logging.INFO, logger="gateway.requests")
    body = {**SMALL_IMAGE, "prompt": PROMPT, "user": "alice@example.com"}
    response = await gateway_client.post(URL, json=body, headers=bearer(plaintext))
    assert response.status_code == 200
    [line] = _json_lines(caplog, "gateway.requests")
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert line["organization"] == "acme" and plaintext.startswith(line["key_prefix"])
    assert line["model"] == "dall-e-2" and line["status"] == 200 and line["images"] == 1
    assert line["cost"] == "0.020000" and isinstance(line["latency_ms"], int)
    assert line["end_user_hash"] and line["end_user_hash"] != "alice@example.com"
    text = json.dumps(line)
    assert plaintext not in text and PROMPT not in text and "alice@example.com" not in text


async def test_a_refusal_is_logged_with_its_code(gateway_client, org_key, caplog):
    caplog.set_level(logging.INFO, logger="gateway.requests")
    response = await gateway_client.post(URL, json={**SMALL_IMAGE, "size": "3x3"}, headers=bearer(org_key[1]))
    assert response.status_code == 400
    [line] = _json_lines(caplog, "gateway.requests")
    assert line["status"] == 400 and line["error_code"] == response.json()["error"]["code"]
    assert line["cost"] == "0.000000"


def test_the_access_log_drops_the_query(client, settings, caplog):
    settings.ACCESS_LOG = True
    caplog.set_level(logging.INFO, logger="gateway.access")
    response = client.get("/healthz?token=very-secret")
    [line] = _json_lines(caplog, "gateway.access")
    assert line["method"] == "GET" and line["path"] == "/healthz" and line["status"] == response.status_code
    assert line["request_id"] == response["X-Request-ID"] and "very-secret" not in json.dumps(line)


def test_metrics_is_404_without_a_token_and_401_with_a_wrong_one(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-m"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic scrape-me"}).status_code == 401


async def test_metrics_count_requests_refusals_spend_and_reservations(gateway_client, org_key, settings):
    settings.METRICS_TOKEN = "scrape-me"
    headers = bearer(org_key[1])
    assert (await gateway_client.post(URL, json=SMALL_IMAGE, headers=headers)).status_code == 200
    too_many = await gateway_client.post(URL, json={**SMALL_IMAGE, "n": 10**6}, headers=headers)
    assert too_many.status_code in (400, 429)
    scraped = await gateway_client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert scraped.status_code == 200
    text = scraped.text
    assert 'imagegate_image_requests_total{model="dall-e-2",status="200"}' in text
    assert 'imagegate_spend_usd_total{organization="acme"}' in text
    assert "imagegate_image_request_duration_seconds_bucket" in text
    assert "imagegate_reservations_outstanding 0.0" in text
    assert "imagegate_requests_in_flight" in text


async def test_metrics_show_provider_errors_and_an_open_breaker(gateway_client, org_key, settings, fake_openai):
    settings.METRICS_TOKEN = "scrape-me"
    settings.PROVIDER_BREAKER_THRESHOLD = 2
    settings.PROVIDER_MAX_RETRIES = 0
    for _ in range(2):
        failing = {**SMALL_IMAGE, "prompt": "[fail:500] down"}
        assert (await gateway_client.post(URL, json=failing, headers=bearer(org_key[1]))).status_code >= 500
    text = (await gateway_client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})).text
    assert 'imagegate_provider_breaker_open{provider="openai"} 1.0' in text
    assert 'imagegate_provider_errors_total{provider="openai"}' in text


@pytest.mark.slow
@pytest.mark.postgres
def test_two_uvicorn_workers_add_up_in_multiprocess_mode(seeded, make_org, make_key, tmp_path):
    small_image_price("0.02")
    org = make_org("acme", tier="pro")
    headers = bearer(make_key(org).plaintext)
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "LOCAL_PROVIDER_FALLBACK": "true",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "METRICS_TOKEN": "scrape-me",
    }
    command = [sys.executable, "-m", "uvicorn", "gateway.asgi:application", "--port", str(port), "--workers", "2"]
    server = subprocess.Popen([*command, "--log-level", "warning"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "uvicorn workers did not start"
            time.sleep(0.2)

        async def fire() -> list[int]:
            # A client (and connection) per request, so the kernel spreads them over both workers.
            async def one() -> int:
                async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                    return (await client.post(URL, json=SMALL_IMAGE, headers=headers)).status_code

            return list(await asyncio.gather(*(one() for _ in range(6))))

        sent = 0
        # Until both workers have answered some (their own sample files), at most 10 rounds.
        while sent < 60 and len({path.name for path in tmp_path.glob("counter_*.db")}) < 2:
            assert asyncio.run(fire()) == [200] * 6
            sent += 6
        assert len({path.name for path in tmp_path.glob("counter_*.db")}) == 2
        # Whichever worker answers the scrape, it adds up both workers' samples.
        for _ in range(4):
            text = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer scrape-me"}).text
            assert f'imagegate_image_requests_total{{model="dall-e-2",status="200"}} {sent}.0' in text
    finally:
        server.terminate()
        server.wait(timeout=20)
