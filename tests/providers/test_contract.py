"""The contract every adapter shares (providers/base.py): content types from bytes, the size, the errors."""

import pytest

from providers.base import ProviderError, error_for_status, size_dimensions, sniff_content_type


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"\x89PNG\r\n\x1a\n...", "image/png"),
        (b"\xff\xd8\xff\xe0...", "image/jpeg"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b'\n  <svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml"),
    ],
)
def test_the_image_type_is_told_by_its_bytes(data, content_type):
    assert sniff_content_type(data) == content_type


def test_an_exhausted_account_is_permanent_yet_held_against_the_provider():
    error = error_for_status(402, "Insufficient credits")
    assert (error.code, error.status, error.permanent) == ("upstream_quota_exhausted", 502, True)
    assert error.counts_against_provider and "Insufficient credits" in error.message
    assert not error_for_status(400, "bad").counts_against_provider


def test_a_size_that_is_not_wxh_cannot_go_to_a_provider_that_needs_pixels():
    assert size_dimensions("1344x768") == (1344, 768)
    with pytest.raises(ProviderError) as raised:
        size_dimensions("auto")
    assert (raised.value.code, raised.value.status) == ("invalid_parameter", 400)
