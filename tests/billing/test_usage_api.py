"""GET /api/usage and /api/usage/summary: key scopes, filters, cursor pages, errors, and never another organization."""

from decimal import Decimal

import pytest
from django.core.management import call_command

from accounts.models import ApiKey

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


def _get(client, api_key, path="/api/usage", **params):
    return client.get(path, {**MARCH, **params}, HTTP_AUTHORIZATION=f"Bearer {api_key.plaintext}")


def test_organization_scope_key_sees_its_whole_organization(client, keys, ledger):
    body = _get(client, keys["acme_admin"]).json()
    assert [item["request_id"] for item in body["results"]] == [item.request_id for item in reversed(ledger[:5])]
    newest = body["results"][0]
    assert newest["time"] == "2026-03-31T23:00:00Z" and newest["unit_price"] == "0.040001"
    assert newest["cost"] == "0.080002" and newest["organization"] == "acme" and newest["key_name"] == "backend"
    assert body["results"][2]["cached"] is True


def test_own_scope_key_sees_only_its_own_requests(client, keys, ledger):
    body = _get(client, keys["acme_other"]).json()
    assert {item["key_prefix"] for item in body["results"]} == {keys["acme_other"].api_key.prefix}
    assert len(body["results"]) == 2


def test_no_parameter_reaches_another_organization(client, keys, ledger):
    body = _get(client, keys["globex"], key=keys["acme"].api_key.prefix).json()
    assert body["results"] == []
    body = _get(client, keys["globex"]).json()
    assert [item["organization"] for item in body["results"]] == ["globex"]
    summary = _get(client, keys["globex"], "/api/usage/summary", group_by="end_user").json()
    assert [row["group"] for row in summary["results"]] == ["globex-secret-user"]


def test_cursor_pagination_walks_every_item_once(client, keys, ledger):
    seen, url = [], "/api/usage?from=2026-03-01&to=2026-04-30&limit=2"
    while url:
        body = client.get(url, HTTP_X_API_KEY=keys["acme_admin"].plaintext).json()
        seen += [item["request_id"] for item in body["results"]]
        url = body["next"]
    assert sorted(seen) == sorted(item.request_id for item in ledger[:6])


@pytest.mark.parametrize("group_by, groups", [
    ("day", ["2026-03-01", "2026-03-02", "2026-03-15", "2026-03-31"]),
    # Only what was charged is grouped by model: the failed request counts under null, last.
    ("model", ["dall-e-2", "dall-e-3", None]),
    ("end_user", ["@SUM(A1)", "u-1", "u-2"]),
])  # fmt: skip
def test_summary_groups_and_totals(client, keys, ledger, group_by, groups):
    body = _get(client, keys["acme_admin"], "/api/usage/summary", group_by=group_by).json()
    assert [row["group"] for row in body["results"]] == groups
    assert body["total"]["amount"] == "0.254002" and body["total"]["images"] == 7 and body["total"]["failures"] == 1
    assert sum(Decimal(row["amount"]) for row in body["results"]) == Decimal("0.254002")


def test_errors_are_json_with_a_clear_message(client, keys, ledger):
    response = client.get("/api/usage")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    assert "API key" in response.json()["error"]["message"]
    response = client.get("/api/usage", HTTP_AUTHORIZATION="Bearer igw-not-a-real-key")
    assert response.status_code == 401 and "invalid" in response.json()["error"]["message"]
    response = _get(client, keys["acme_admin"], **{"from": "2026-04-01"})
    assert response.status_code == 400 and "must not be after" in response.json()["error"]["message"]
    response = _get(client, keys["acme_admin"], "/api/usage/summary", group_by="week")
    assert response.status_code == 400 and "group_by" in response.json()["error"]["message"]


def test_schema_and_docs_are_served_locally(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "/api/usage/summary" in text and "group_by" in text and "bearer" in text
    docs = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in docs and "cdn" not in docs.lower()


def test_create_api_key_sets_the_usage_scope(orgs, capsys):
    call_command("create_api_key", "--org", "acme", "--name", "fin", "--usage-scope", "organization")
    assert "whole organization" in capsys.readouterr().out
    assert ApiKey.objects.get(name="fin").usage_scope == "organization"
    call_command("create_api_key", "--org", "acme", "--name", "plain")
    assert ApiKey.objects.get(name="plain").usage_scope == "own"


def test_previous_links_walk_back_to_the_first_page(client, keys, ledger):
    headers = {"HTTP_X_API_KEY": keys["acme_admin"].plaintext}
    first = client.get("/api/usage?from=2026-03-01&to=2026-04-30&limit=2", **headers).json()
    assert first["previous"] is None
    forward = [first]
    while forward[-1]["next"]:
        forward.append(client.get(forward[-1]["next"], **headers).json())
    assert len(forward) == 3 and forward[1]["previous"] is not None
    backward = [forward[-1]]
    while backward[-1]["previous"]:
        backward.append(client.get(backward[-1]["previous"], **headers).json())
    assert [page["results"] for page in backward] == [page["results"] for page in reversed(forward)]
    # Back on the first page, its `next` goes forward again from there.
    assert client.get(backward[-1]["next"], **headers).json()["results"] == forward[1]["results"]


HINT = "pass a page's `next` or `previous` link as it is, or leave `cursor` out to start from the newest items."


@pytest.mark.parametrize("cursor, message", [
    ("nonsense", f"The page cursor is malformed: {HINT}"),
    ("p17-x", f"The page cursor is malformed: {HINT}"),
    # Digits that are not ASCII, an id past what the column holds: once 500s.
    ("\u00b2-1", f"The page cursor is malformed: {HINT}"),
    ("17-99999999999999999999", f"The page cursor is malformed: {HINT}"),
    ("99999999999999999999-1", f"The page cursor is out of range: {HINT}"),
])  # fmt: skip
def test_a_bad_cursor_is_a_400_in_the_error_shape(client, keys, ledger, cursor, message):
    response = _get(client, keys["acme_admin"], cursor=cursor)
    assert response.status_code == 400
    assert response.json() == {
        "error": {"message": message, "type": "invalid_request_error", "param": "cursor", "code": "invalid_parameter"}
    }
