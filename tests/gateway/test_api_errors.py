"""Under /v1/ and /api/ every unknown path or method answers JSON in that flavour's error shape, never Django's
HTML page, whether the image endpoints or Django would have answered it; the pages elsewhere stay pages."""

import pytest

from gateway.core.images import signed_image_path

pytestmark = pytest.mark.django_db(transaction=True)

OPENAI_SERVES = (
    "this gateway serves POST /v1/images/generations, /v1/images/edits and /v1/images/quote, "
    "GET /v1/images/jobs and /v1/images/jobs/{id}, GET /v1/models and GET /v1/models/{model}."
)


def openai_error(response, status: int, code: str) -> str:
    """The OpenAI-shaped error of `response`, checked for its status and code; its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("invalid_request_error", code)
    return error["message"]


def flat_error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "code", "requestId"}
    assert (body["code"], body["requestId"]) == (code, response.headers["X-Request-ID"])
    return body["error"]


@pytest.mark.parametrize("debug", [False, True], ids=["production", "DEBUG"])
async def test_unknown_paths_answer_in_each_flavours_shape(gateway_client, auth_headers, settings, debug):
    settings.DEBUG = debug
    for path in ("/v1/nope", "/v1/images/variations", "/v1"):
        response = await gateway_client.get(path, headers=auth_headers)
        assert openai_error(response, 404, "not_found") == f"Unknown path {path}: {OPENAI_SERVES}"
    response = await gateway_client.post("/api/nope", json={}, headers=auth_headers)
    assert flat_error(response, 404, "not_found").startswith(
        "Unknown path /api/nope: this gateway serves POST /api/images/generations, /api/images/edits and "
        "/api/images/quote, GET /api/images/jobs and /api/images/jobs/{id}, and the usage API"
    )


@pytest.mark.parametrize("debug", [False, True], ids=["production", "DEBUG"])
async def test_methods_a_path_does_not_take_answer_in_each_flavours_shape(
    gateway_client, auth_headers, debug, settings
):
    settings.DEBUG = debug
    for method, path, allowed in [
        ("DELETE", "/v1/models", "GET"),
        ("POST", "/v1/models/dall-e-3", "GET"),
        ("POST", "/v1/images/files/2030/01/01/x.png", "GET"),
    ]:
        response = await gateway_client.request(method, path, headers=auth_headers)
        message = openai_error(response, 405, "method_not_allowed")
        assert message == f"Method {method} is not allowed on {path}: use {allowed}."
        assert response.headers["Allow"] == allowed
    # The image endpoints never reach Django; they answer a wrong method themselves, in the same shapes.
    endpoint = await gateway_client.get("/v1/images/generations", headers=auth_headers)
    assert openai_error(endpoint, 405, "method_not_allowed") == "Use POST for image generations."
    flat = await gateway_client.get("/api/images/generations", headers=auth_headers)
    assert flat_error(flat, 405, "method_not_allowed") == "Use POST for image generations."
    # The usage API writes its own errors, in the shape it documents.
    usage = await gateway_client.post("/api/usage", headers=auth_headers)
    assert usage.status_code == 405 and usage.json()["error"]["code"] == "method_not_allowed"


async def test_a_deleted_image_is_a_json_404_that_says_what_to_do(gateway_client):
    response = await gateway_client.get(signed_image_path("2030/01/01/req-gone-0.png"))
    assert "generate it again" in openai_error(response, 404, "image_not_found")


async def test_pages_outside_the_api_and_the_apis_own_pages_are_unchanged(gateway_client, settings):
    settings.DEBUG = False
    docs = await gateway_client.get("/api/docs/")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert (await gateway_client.get("/api/schema/")).status_code == 200
    slashless = await gateway_client.get("/api/docs")
    assert (slashless.status_code, slashless.headers["Location"]) == (301, "/api/docs/"), "APPEND_SLASH still works"
    assert (await gateway_client.get("/admin/")).status_code == 302
    assert (await gateway_client.get("/")).status_code == 302
    elsewhere = await gateway_client.get("/no-such-page/")
    assert elsewhere.status_code == 404 and elsewhere.headers["content-type"].startswith("text/html")
