"""Hosted images: the signed URL works for an hour, then is refused; a tampered URL is refused."""

from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import time_machine

from gateway.core.images import image_store, signed_image_path

pytestmark = pytest.mark.django_db(transaction=True)


async def _image_url(gateway_client, auth_headers) -> str:
    response = await gateway_client.post(
        "/v1/images/generations", json={"prompt": "x", "model": "dall-e-2", "size": "256x256"}, headers=auth_headers
    )
    assert response.status_code == 200, response.text
    return response.json()["data"][0]["url"].removeprefix("http://testserver")


async def test_url_works_within_the_hour_and_is_refused_after(gateway_client, auth_headers):
    with time_machine.travel("2026-05-01 12:00:00+00:00", tick=False) as clock:
        url = await _image_url(gateway_client, auth_headers)
        assert (await gateway_client.get(url)).status_code == 200
        clock.shift(timedelta(minutes=59, seconds=59))
        assert (await gateway_client.get(url)).status_code == 200
        clock.shift(timedelta(seconds=2))
        expired = await gateway_client.get(url)
        assert expired.status_code == 403
        assert expired.json()["error"]["code"] == "url_expired_or_invalid"


async def test_tampered_urls_are_refused(gateway_client, auth_headers):
    url = await _image_url(gateway_client, auth_headers)
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    longer = dict(query, expires=str(int(query["expires"]) + 86400))
    other_name = parts.path.replace("-0.png", "-1.png")
    bad_signature = dict(query, signature="0" * 64)
    for candidate in (
        f"{parts.path}?{urlencode(longer)}",
        f"{other_name}?{parts.query}",
        f"{parts.path}?{urlencode(bad_signature)}",
        parts.path,
    ):
        assert (await gateway_client.get(candidate)).status_code == 403, candidate


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>', "image/svg+xml"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
    ],
)
async def test_a_hosted_svg_or_gif_keeps_its_type_and_no_hosted_file_can_run_script(gateway_client, data, content_type):
    name = image_store(data=data, content_type=content_type, request_id="req-svg", index=0, day="2026/11/30")
    response = await gateway_client.get(signed_image_path(name))
    assert response.status_code == 200
    assert (response.headers["content-type"], response.content) == (content_type, data)
    assert response.headers["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    assert response.headers["x-content-type-options"] == "nosniff"
