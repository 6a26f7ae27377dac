"""The usage API answers every error in OpenAI's shape, and the OpenAPI document lists every route with its errors."""

import pytest

from accounts.services import api_key_create

pytestmark = pytest.mark.django_db

ERROR_FIELDS = {"message", "type", "param", "code"}


def _openai_error(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_FIELDS, body
    return body["error"]


@pytest.fixture
def usage_key(people) -> str:
    return api_key_create(organization=people.acme, name="usage").plaintext


def test_usage_api_errors_are_never_drf_details(client, usage_key):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {usage_key}"}
    assert _openai_error(client.get("/api/usage"), 401)["code"] == "invalid_api_key"
    assert _openai_error(client.post("/api/usage", **auth), 405)["code"] == "method_not_allowed"
    assert _openai_error(client.get("/api/usage/nope", **auth), 404)["code"] == "not_found"
    assert _openai_error(client.get("/api/usage?model=a%00b", **auth), 400)["param"] == "model"
    bad_group = _openai_error(client.get("/api/usage/summary?group_by=week", **auth), 400)
    assert bad_group["param"] == "group_by" and "day" in bad_group["message"]
    bad_day = _openai_error(client.get("/api/usage?from=yesterday", **auth), 400)
    assert bad_day["param"] == "from" and "YYYY-MM-DD" in bad_day["message"]


def test_the_schema_lists_every_route_with_its_error_responses(client):
    schema = client.get("/api/schema/?format=json").json()
    operations = {
        (method, path): operation for path, item in schema["paths"].items() for method, operation in item.items()
    }
    for prefix in ("/v1", "/api"):
        for action in ("generations", "edits", "quote"):
            assert ("post", f"{prefix}/images/{action}") in operations
        assert ("get", f"{prefix}/images/jobs") in operations
        assert {("get", f"{prefix}/images/jobs/{{id}}"), ("delete", f"{prefix}/images/jobs/{{id}}")} <= set(operations)
    assert {("get", "/v1/models"), ("get", "/v1/models/{model}")} <= set(operations)
    for (method, path), operation in operations.items():
        responses = operation["responses"]
        assert {"400", "401", "403"} <= set(responses), (method, path)
        shape = "FlatError" if path.startswith("/api/images/") else "Error"
        assert responses["401"]["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{shape}"}
    assert operations[("get", "/api/usage")]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PaginatedUsageLineItemList"
    }
