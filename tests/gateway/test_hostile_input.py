"""Hostile bodies at the image endpoints: lone surrogates and deep nesting are a 400 naming what to fix, never a 500."""

import pytest

from billing.models import UsageLineItem
from gateway.pipeline.validation import MAX_JSON_CONTAINERS, MAX_JSON_DEPTH
from tests.uploads import png

pytestmark = pytest.mark.django_db(transaction=True)

JSON_PATHS = ("/v1/images/generations", "/api/images/generations", "/v1/images/quote", "/api/images/quote")


def error_of(response) -> tuple[str, str | None, str]:
    """(code, param, message) in either flavour's shape."""
    body = response.json()
    if isinstance(body["error"], dict):
        return body["error"]["code"], body["error"]["param"], body["error"]["message"]
    return body["code"], None, body["error"]


@pytest.mark.parametrize("path", JSON_PATHS)
@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("prompt", b'"a \\ud800 cat"'),
        ("user", b'"\\udfff"'),
        ("size", b'"1024x1024\\ud800"'),
        ("quality", b'"\\ud800"'),
        ("model", b'"dall-e-3\\udc00"'),
        ("style", b'"\\ud800"'),
        ("background", b'["\\ud800"]'),
        ("\\ud800", b'"a key that is one"'),
    ],
)
async def test_a_lone_surrogate_anywhere_is_400_naming_the_field(gateway_client, auth_headers, path, field, raw):
    """'\\ud800' is valid JSON but not valid Unicode: storing, logging or hashing it used to fail with a 500."""
    body = b'{"prompt": "a cat", "provider": "openai", "' + field.encode() + b'": ' + raw + b"}"
    response = await gateway_client.post(
        path, content=body, headers={**auth_headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    code, param, message = error_of(response)
    assert code == "invalid_parameter"
    assert "lone UTF-16 surrogate" in message
    shown = "\ufffd" if field.startswith("\\") else field
    assert f"'{shown}'" in message
    if param is not None:
        assert param == shown
    if "quote" not in path:  # a quote records nothing; a call records its refusal
        item = await UsageLineItem.objects.aget(request_id=response.headers["x-request-id"])
        assert (item.status, item.error_code) == ("rejected", "invalid_parameter")


@pytest.mark.parametrize("path", ("/v1/images/edits", "/api/images/edits", "/v1/images/quote"))
async def test_an_edit_field_that_is_not_utf8_text_is_400_naming_it(gateway_client, auth_headers, path):
    """A surrogate in a form field arrives UTF-8-encoded (ED A0 80), which is no valid UTF-8."""
    response = await gateway_client.post(
        path,
        data={"prompt": "a cat \udc00".encode("utf-8", "surrogatepass"), "model": "gpt-image-1", "provider": "openai"},
        files={"image": ("a.png", png(64, 64), "image/png")},
        headers=auth_headers,
    )
    assert response.status_code == 400, response.text
    _, param, message = error_of(response)
    assert "'prompt' is not valid UTF-8" in message
    assert param in (None, "prompt")


@pytest.mark.parametrize("path", JSON_PATHS)
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900])
async def test_json_nested_too_deep_is_400_saying_the_limit(gateway_client, auth_headers, path, depth):
    nested = b"[" * depth + b"]" * depth
    body = b'{"prompt": "a cat", "provider": "openai", "extra": ' + nested + b"}"
    response = await gateway_client.post(
        path, content=body, headers={**auth_headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    code, _, message = error_of(response)
    assert code == "invalid_json"
    assert f"more than {MAX_JSON_DEPTH} levels deep" in message


@pytest.mark.parametrize("brackets", [b"[" * 100_000 + b"]" * 100_000, b"[]" * 400_000, b"[}" * 400_000])
async def test_a_body_of_brackets_is_400_before_it_is_decoded(gateway_client, auth_headers, brackets):
    """Too many arrays or objects for any image request: refused by counting, never scanned bracket by bracket."""
    body = b'{"prompt": "a cat", "extra": ' + brackets + b"}"
    response = await gateway_client.post(
        "/v1/images/generations", content=body, headers={**auth_headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    code, _, message = error_of(response)
    assert code == "invalid_json"
    assert f"more than {MAX_JSON_CONTAINERS} JSON arrays or objects" in message


async def test_brackets_inside_strings_do_not_count_as_nesting(gateway_client, auth_headers):
    """Only structure counts: a prompt full of brackets is an ordinary prompt."""
    prompt = "[{" * 200 + " a cat " + "}]" * 200
    body = {"prompt": prompt, "model": "dall-e-3", "extra": {"a": [[1]]}}
    response = await gateway_client.post("/v1/images/generations", json=body, headers=auth_headers)
    # Past the depth check, the unknown parameter is what is refused.
    assert response.status_code == 400, response.text
    assert error_of(response)[:2] == ("invalid_parameter", "extra")


async def test_just_within_the_depth_limit_is_parsed(gateway_client, auth_headers):
    depth = MAX_JSON_DEPTH - 1  # the body's own object is one level
    body = b'{"prompt": "a cat", "extra": ' + b"[" * depth + b"]" * depth + b"}"
    response = await gateway_client.post(
        "/v1/images/generations", content=body, headers={**auth_headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert error_of(response)[:2] == ("invalid_parameter", "extra")
