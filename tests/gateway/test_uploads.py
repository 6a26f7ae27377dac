"""The streaming multipart reader of `POST /v1/images/edits` (gateway/pipeline/uploads.py).

Bodies are the bytes the openai SDK sends (captured from the SDK itself through an httpx transport) or that
httpx's own multipart encoder makes (the SDK's encoder), fed to the reader as ASGI messages of random sizes.
Every test leaves the spool directory empty: refusals must clean up, and successes call cleanup().
"""

import io
import os
import random
import struct
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from gateway.core.errors import GatewayError
from gateway.pipeline.uploads import MAX_PARTS, EditUpload, UploadAborted, edit_upload_receive

URL = "http://gateway.test/v1/images/edits"


def picture(
    width: int = 64, height: int = 48, *, kind: str = "PNG", mode: str = "RGB", color: Any = "red", **options: Any
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, kind, **options)
    return buffer.getvalue()


def mask(width: int = 64, height: int = 48) -> bytes:
    """A fully transparent mask: edit everywhere."""
    return picture(width, height, mode="RGBA", color=(0, 0, 0, 0))


class FakeReceive:
    """An ASGI `receive` handing out `body` in chunks of random sizes, then (optionally) a disconnect."""

    def __init__(self, body: bytes, *, seed: int = 0, largest: int = 8192, disconnect_after: int | None = None):
        self.body = memoryview(body)
        self.offset = 0
        self.messages = 0
        self.random = random.Random(seed)
        self.largest = largest
        self.disconnect_after = disconnect_after

    async def __call__(self) -> dict:
        self.messages += 1
        if self.disconnect_after is not None and self.offset >= self.disconnect_after:
            return {"type": "http.disconnect"}
        size = self.random.randint(1, self.largest)
        chunk = bytes(self.body[self.offset : self.offset + size])
        self.offset += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": self.offset < len(self.body)}

    @property
    def exhausted(self) -> bool:
        return self.offset >= len(self.body)


def form(data: dict[str, Any] | None = None, files: Any = None) -> tuple[bytes, dict[str, str]]:
    """The body and (lower-cased) headers httpx's multipart encoder makes, as the openai SDK sends them."""
    request = httpx.Request("POST", URL, data=data, files=files)
    body = request.read()
    return body, {name.lower(): value for name, value in request.headers.items()}


def sdk_edit(**arguments: Any) -> tuple[bytes, dict[str, str]]:
    """The exact request the openai SDK's images.edit sends, captured at its transport."""
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        captured.append(request)
        return httpx.Response(200, json={"created": 0, "data": []})

    client = openai.OpenAI(
        api_key="igw-test",
        base_url="http://gateway.test/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    client.images.edit(**arguments)
    (request,) = captured
    return request.content, {name.lower(): value for name, value in request.headers.items()}


async def receive_form(body: bytes, headers: dict[str, str], **receive: Any) -> EditUpload:
    return await edit_upload_receive(FakeReceive(body, **receive), headers)


async def refusal(body: bytes, headers: dict[str, str], **receive: Any) -> GatewayError:
    with pytest.raises(GatewayError) as refused:
        await receive_form(body, headers, **receive)
    return refused.value


@pytest.fixture(autouse=True)
def spool(settings, tmp_path) -> Iterator[str]:
    """Edits spool under a directory of the test's own, which must be empty when the test ends."""
    settings.EDIT_UPLOAD_DIR = str(tmp_path)
    yield str(tmp_path)
    assert os.listdir(tmp_path) == [], "an edit's temporary directory was left behind"


# --- What the SDK sends -------------------------------------------------------------------------------


async def test_one_image_as_the_sdk_sends_it(spool):
    image = picture(64, 48)
    body, headers = sdk_edit(
        model="gpt-image-2", image=("photo.png", image, "image/png"), prompt="add a hat", n=2, size="1024x1024"
    )
    upload = await receive_form(body, headers, seed=1)

    assert upload.fields == {"model": "gpt-image-2", "prompt": "add a hat", "n": "2", "size": "1024x1024"}
    assert upload.payload() == {"model": "gpt-image-2", "prompt": "add a hat", "n": 2, "size": "1024x1024"}
    (received,) = upload.images
    assert (received.content_type, received.width, received.height) == ("image/png", 64, 48)
    assert (received.size_bytes, received.filename) == (len(image), "photo.png")
    assert received.read() == image
    assert os.path.dirname(received.path) == upload.directory
    assert os.path.dirname(upload.directory) == spool
    assert os.path.basename(upload.directory).startswith("imagegate-edit-")
    assert upload.mask is None
    upload.cleanup()
    assert os.listdir(spool) == []
    upload.cleanup()  # idempotent


async def test_three_images_and_a_mask_as_the_sdk_sends_them():
    png, jpeg, webp = picture(64, 48), picture(30, 20, kind="JPEG"), picture(40, 40, kind="WEBP")
    body, headers = sdk_edit(
        model="gpt-image-2",
        image=[("a.png", png, "image/png"), ("b.jpg", jpeg, "image/jpeg"), ("c.webp", webp, "image/webp")],
        mask=("mask.png", mask(64, 48), "image/png"),
        prompt="merge them",
        stream=True,
        partial_images=2,
    )
    assert body.count(b'name="image[]"') == 3  # the SDK's wire form, which the reader must take
    upload = await receive_form(body, headers, seed=2, largest=97)

    assert [(i.content_type, i.width, i.height, i.filename) for i in upload.images] == [
        ("image/png", 64, 48, "a.png"),
        ("image/jpeg", 30, 20, "b.jpg"),
        ("image/webp", 40, 40, "c.webp"),
    ]
    assert [i.read() for i in upload.images] == [png, jpeg, webp]
    assert upload.mask is not None
    assert (upload.mask.content_type, upload.mask.width, upload.mask.height) == ("image/png", 64, 48)
    assert upload.payload() == {"model": "gpt-image-2", "prompt": "merge them", "stream": True, "partial_images": 2}
    upload.cleanup()


async def test_indexed_image_fields_are_taken_in_order():
    first, second = picture(10, 10), picture(20, 10, kind="JPEG")
    body, headers = form(
        {"prompt": "x"}, [("image[0]", ("1.png", first, "image/png")), ("image[1]", ("2.jpg", second, "image/jpeg"))]
    )
    upload = await receive_form(body, headers, seed=3)
    assert [(i.width, i.read()) for i in upload.images] == [(10, first), (20, second)]
    upload.cleanup()


@pytest.mark.parametrize("seed", range(5))
async def test_chunking_does_not_change_what_is_read(seed):
    images = [picture(8 + n, 8, kind=kind) for n, kind in enumerate(["PNG", "JPEG", "WEBP"])]
    body, headers = form(
        {"prompt": "p" * 3000, "model": "gpt-image-2"},
        [("image[]", (f"{n}.img", data, "application/octet-stream")) for n, data in enumerate(images)],
    )
    upload = await receive_form(body, headers, seed=seed, largest=random.Random(seed).choice([1, 7, 500, 70_000]))
    assert [i.read() for i in upload.images] == images
    assert upload.fields["prompt"] == "p" * 3000
    upload.cleanup()


async def test_names_are_utf8():
    body, headers = form({"prompt": "un café ☃", "extra ☃": "x"}, {"image": ("dir/café ☃.png", picture(), "image/png")})
    upload = await receive_form(body, headers)
    assert upload.images[0].filename == "café ☃.png"
    assert upload.fields == {"prompt": "un café ☃", "extra ☃": "x"}
    upload.cleanup()


async def test_a_file_without_a_name_is_named_for_its_field_and_format():
    body, headers = form({}, {"image": ("", picture(kind="WEBP"), "image/webp")})
    upload = await receive_form(body, headers)
    assert upload.images[0].filename == "image.webp"
    upload.cleanup()


async def test_a_file_is_judged_by_its_content_not_its_name_or_declared_type():
    jpeg = picture(12, 9, kind="JPEG")
    body, headers = form({"prompt": "x"}, {"image": ("looks.png", jpeg, "image/png")})
    upload = await receive_form(body, headers)
    assert upload.images[0].content_type == "image/jpeg"
    upload.cleanup()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"n": "3", "output_compression": "80", "partial_images": "0"},
            {"n": 3, "output_compression": 80, "partial_images": 0},
        ),
        (
            {"n": "abc", "output_compression": "-5", "partial_images": "1.5"},
            {"n": "abc", "output_compression": "-5", "partial_images": "1.5"},
        ),
        ({"n": "٣"}, {"n": "٣"}),  # a digit, but not an ASCII one
        ({"n": "9" * 5000}, {"n": "9" * 5000}),  # beyond Python's int() digit limit: left for validation to name
        ({"stream": "true"}, {"stream": True}),
        ({"stream": "False"}, {"stream": False}),
        ({"stream": "1"}, {"stream": True}),
        ({"stream": "0"}, {"stream": False}),
        ({"stream": "maybe"}, {"stream": "maybe"}),
        (
            {"size": "1024x1024", "quality": "high", "user": "u-1"},
            {"size": "1024x1024", "quality": "high", "user": "u-1"},
        ),
    ],
)
async def test_payload_converts_what_the_validator_expects_typed(fields, expected):
    body, headers = form(fields, {"image": ("a.png", picture(), "image/png")})
    upload = await receive_form(body, headers)
    assert upload.payload() == expected
    assert upload.fields == fields  # the fields themselves stay text
    upload.cleanup()


# --- Limits ------------------------------------------------------------------------------------------


async def test_a_file_over_the_limit_is_refused_without_reading_the_rest(settings):
    settings.EDIT_MAX_FILE_BYTES = 2000
    small, large = picture(8, 8), picture(8, 8) + b"\0" * 5000
    body, headers = form(
        {"prompt": "x"},
        [("image[]", ("a.png", small, "image/png"))] * 2 + [("image[]", ("c.png", large, "image/png"))] * 30,
    )
    receive = FakeReceive(body, largest=512)
    with pytest.raises(GatewayError) as refused:
        await edit_upload_receive(receive, headers)
    error = refused.value
    assert (error.status, error.code, error.param) == (413, "request_too_large", "image")
    assert error.message == "image[] file 3 is over 2 KB; each file may be at most 2 KB."
    assert not receive.exhausted  # stopped at the crossing, not at the end of the body


async def test_a_file_over_the_limit_message_names_the_file_and_the_limit(settings):
    settings.EDIT_MAX_FILE_BYTES = 50 * 1024 * 1024
    body, headers = form({}, {"image": ("a.png", picture(), "image/png")})
    settings.EDIT_MAX_FILE_BYTES = 100
    error = await refusal(body, headers)
    assert error.message == "image is over 100 bytes; each file may be at most 100 bytes."

    settings.EDIT_MAX_FILE_BYTES = 50 * 1024 * 1024
    big = picture(8, 8) + bytes(50 * 1024 * 1024)
    body, headers = form({}, [("image[]", ("a.png", picture(), "image/png")), ("image[]", ("b.png", big, "image/png"))])
    error = await refusal(body, headers, largest=1 << 20)
    assert (error.status, error.param) == (413, "image")
    assert error.message == "image[] file 2 is over 50 MB; each file may be at most 50 MB."


async def test_a_mask_over_the_limit_names_the_mask(settings):
    settings.EDIT_MAX_FILE_BYTES = 1000
    body, headers = form(
        {}, [("image", ("a.png", picture(), "image/png")), ("mask", ("m.png", mask() + bytes(2000), "image/png"))]
    )
    error = await refusal(body, headers)
    assert (error.status, error.code, error.param) == (413, "request_too_large", "mask")
    assert error.message.startswith("mask is over 1000 bytes")


async def test_a_body_over_the_limit_is_refused_as_it_arrives(settings):
    settings.EDIT_MAX_BODY_BYTES = 10_000
    padded = picture() + bytes(3000)
    body, headers = form({"prompt": "x"}, [("image[]", (f"{n}.png", padded, "image/png")) for n in range(10)])
    assert len(body) > 20_000
    del headers["content-length"]  # sent chunked: the limit is only known to be crossed as the bytes arrive
    receive = FakeReceive(body, largest=1000)
    with pytest.raises(GatewayError) as refused:
        await edit_upload_receive(receive, headers)
    assert (refused.value.status, refused.value.code) == (413, "request_too_large")
    assert "at most 9.8 KB" in refused.value.message
    assert 10_000 < receive.offset <= 11_000


async def test_a_declared_length_over_the_limit_is_refused_before_reading(settings, spool):
    settings.EDIT_MAX_BODY_BYTES = 10_000
    body, headers = form({"prompt": "x"}, {"image": ("a.png", picture(), "image/png")})
    headers["content-length"] = "10001"
    receive = FakeReceive(body)
    with pytest.raises(GatewayError) as refused:
        await edit_upload_receive(receive, headers)
    assert (refused.value.status, refused.value.code) == (413, "request_too_large")
    assert receive.messages == 0


async def test_too_many_images(settings):
    settings.EDIT_MAX_IMAGES = 3
    body, headers = form({}, [("image[]", (f"{n}.png", picture(), "image/png")) for n in range(4)])
    error = await refusal(body, headers)
    assert (error.status, error.code, error.param) == (400, "invalid_parameter", "image")
    assert "at most 3 images" in error.message

    body, headers = form({}, [("image[]", (f"{n}.png", picture(), "image/png")) for n in range(3)])
    upload = await receive_form(body, headers)
    assert len(upload.images) == 3
    upload.cleanup()


async def test_sixteen_images_by_default():
    body, headers = form({}, [("image[]", (f"{n}.png", picture(4, 4), "image/png")) for n in range(17)])
    error = await refusal(body, headers)
    assert (error.status, error.param) == (400, "image")
    assert "at most 16 images" in error.message


async def test_too_many_parts():
    fields = {f"extra{n}": "x" for n in range(MAX_PARTS)}
    body, headers = form(fields, {"image": ("a.png", picture(), "image/png")})
    error = await refusal(body, headers)
    assert (error.status, error.code) == (400, "invalid_parameter")
    assert f"more than {MAX_PARTS} parts" in error.message

    fields = {f"extra{n}": "x" for n in range(MAX_PARTS - 1)}
    body, headers = form(fields, {"image": ("a.png", picture(), "image/png")})
    upload = await receive_form(body, headers)
    assert len(upload.fields) == MAX_PARTS - 1
    upload.cleanup()


async def test_a_field_over_the_limit(settings):
    settings.EDIT_MAX_FIELD_BYTES = 100
    body, headers = form({"prompt": "x" * 101}, {"image": ("a.png", picture(), "image/png")})
    error = await refusal(body, headers)
    assert (error.status, error.code, error.param) == (413, "request_too_large", "prompt")
    assert "at most 100 bytes" in error.message

    body, headers = form({"prompt": "x" * 100}, {"image": ("a.png", picture(), "image/png")})
    upload = await receive_form(body, headers)
    assert upload.fields["prompt"] == "x" * 100
    upload.cleanup()


async def test_a_large_upload_is_never_held_in_memory():
    image = picture(64, 64) + os.urandom(30 * 1024 * 1024)  # a PNG whose header Pillow reads; the rest is trailing
    body, headers = form({"prompt": "x", "model": "gpt-image-2"}, {"image": ("big.png", image, "image/png")})
    receive = FakeReceive(body, largest=64 * 1024)
    tracemalloc.start()
    try:
        upload = await edit_upload_receive(receive, headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert upload.images[0].size_bytes == len(image)
    assert upload.images[0].read() == image
    upload.cleanup()
    assert peak < 4 * 1024 * 1024, f"reading a 30 MB upload peaked at {peak / 1e6:.1f} MB of memory"


# --- What the files must be ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "name"),
    [
        (picture(kind="GIF"), "a.gif"),
        (picture(kind="BMP"), "a.png"),
        (b"just some text, named like a picture\n", "a.png"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "broken.png"),
    ],
)
async def test_a_file_that_is_not_a_png_jpeg_or_webp(content, name):
    good = picture()
    body, headers = form({}, [("image[]", ("a.png", good, "image/png")), ("image[]", (name, content, "image/png"))])
    error = await refusal(body, headers)
    assert (error.status, error.code, error.param) == (400, "invalid_parameter", "image")
    assert error.message == "image[] file 2 is not a PNG, JPEG or WebP image."


async def test_an_empty_file():
    body, headers = form({}, {"image": ("a.png", b"", "image/png")})
    error = await refusal(body, headers)
    assert (error.status, error.param) == (400, "image")
    assert "empty" in error.message


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height: what a decompression bomb looks like to a header reader."""
    png = bytearray(picture(1, 1))
    header = b"IHDR" + struct.pack(">II", width, height) + bytes(png[24:29])
    png[12:29] = header
    png[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(png)


@pytest.mark.parametrize("side", [10_000, 20_000])  # over Pillow's limit (a warning), and twice over it (an error)
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # as in production: not an error there
async def test_a_decompression_bomb_is_a_400(side):
    assert side * side > Image.MAX_IMAGE_PIXELS
    body, headers = form({}, {"image": ("bomb.png", _png_claiming(side, side), "image/png")})
    error = await refusal(body, headers)
    assert (error.status, error.code, error.param) == (400, "invalid_parameter", "image")
    assert "more pixels" in error.message


async def test_a_header_just_under_the_bomb_limit_is_read():
    body, headers = form({}, {"image": ("tall.png", _png_claiming(9000, 9000), "image/png")})
    upload = await receive_form(body, headers)
    assert (upload.images[0].width, upload.images[0].height) == (9000, 9000)
    upload.cleanup()


@pytest.mark.parametrize(
    "content",
    [
        picture(64, 48),  # RGB: no alpha
        picture(64, 48, mode="L"),
        picture(64, 48, kind="WEBP", mode="RGBA", color=(0, 0, 0, 0)),  # alpha, but not a PNG
        picture(64, 48, kind="JPEG"),
    ],
)
async def test_a_mask_must_be_a_png_with_alpha(content):
    if Image.open(io.BytesIO(content)).format == "WEBP":
        assert "A" in Image.open(io.BytesIO(content)).getbands()  # refused for its format, not for lacking alpha
    body, headers = form(
        {}, [("image", ("a.png", picture(64, 48), "image/png")), ("mask", ("m.png", content, "image/png"))]
    )
    error = await refusal(body, headers)
    assert (error.status, error.code, error.param) == (400, "invalid_parameter", "mask")
    assert "PNG with an alpha channel" in error.message


@pytest.mark.parametrize(
    "content",
    [
        mask(64, 48),
        picture(64, 48, mode="LA", color=(0, 0)),
        picture(64, 48, mode="P", color=0, transparency=0),  # a palette with a transparent entry (tRNS)
    ],
)
async def test_masks_with_transparency_are_taken(content):
    body, headers = form(
        {}, [("image", ("a.png", picture(64, 48), "image/png")), ("mask", ("m.png", content, "image/png"))]
    )
    upload = await receive_form(body, headers)
    assert upload.mask is not None and upload.mask.read() == content
    upload.cleanup()


async def test_a_mask_of_another_size_than_the_first_image():
    body, headers = form(
        {},
        [
            ("image[]", ("a.png", picture(64, 48), "image/png")),
            ("image[]", ("b.png", picture(32, 32), "image/png")),
            ("mask", ("m.png", mask(32, 32), "image/png")),
        ],
    )
    error = await refusal(body, headers)
    assert (error.status, error.param) == (400, "mask")
    assert "32x32" in error.message and "64x48" in error.message


async def test_a_mask_without_an_image():
    body, headers = form({"prompt": "x"}, {"mask": ("m.png", mask(), "image/png")})
    error = await refusal(body, headers)
    assert (error.status, error.code, error.param) == (400, "invalid_parameter", "image")
    assert error.message == "'image' is required: the image(s) to edit, as one file or up to 16 as image[]."


async def test_two_masks():
    body, headers = form(
        {}, [("image", ("a.png", picture(), "image/png"))] + [("mask", ("m.png", mask(), "image/png"))] * 2
    )
    error = await refusal(body, headers)
    assert (error.status, error.param) == (400, "mask")


async def test_a_file_under_another_name():
    body, headers = form(
        {}, [("image", ("a.png", picture(), "image/png")), ("photo", ("b.png", picture(), "image/png"))]
    )
    error = await refusal(body, headers)
    assert (error.status, error.param) == (400, "photo")


# --- Text fields ---------------------------------------------------------------------------------------


async def test_a_nul_character_in_a_field():
    body, headers = form({"prompt": "a\x00b"}, {"image": ("a.png", picture(), "image/png")})
    error = await refusal(body, headers)
    assert (error.status, error.code, error.param) == (400, "invalid_parameter", "prompt")
    assert "NUL" in error.message


async def test_a_field_that_is_not_utf8():
    body, headers = form({"prompt": "café"}, {"image": ("a.png", picture(), "image/png")})
    error = await refusal(body.replace("café".encode(), "café".encode("latin-1")), headers)
    assert (error.status, error.param) == (400, "prompt")


async def test_a_repeated_scalar_is_refused_by_name():
    body, headers = form({"n": ["1", "2"]}, {"image": ("a.png", picture(), "image/png")})
    error = await refusal(body, headers)
    assert (error.status, error.code, error.param) == (400, "invalid_parameter", "n")


# --- Not a form, a broken form, a client that goes away ---------------------------------------------------


async def test_a_json_body_is_told_to_send_multipart():
    receive = FakeReceive(b'{"prompt": "x", "image": "aGk="}')
    with pytest.raises(GatewayError) as refused:
        await edit_upload_receive(receive, {"content-type": "application/json", "content-length": "31"})
    error = refused.value
    assert (error.status, error.code, error.param) == (400, "invalid_parameter", None)
    assert "send the edit as multipart/form-data (the official SDK's images.edit does)" in error.message
    assert "application/json" in error.message
    assert receive.messages == 0


@pytest.mark.parametrize("content_type", ["", "multipart/form-data", "multipart/form-data; boundary=", "text/plain"])
async def test_a_content_type_without_a_boundary(content_type):
    body, _ = form({}, {"image": ("a.png", picture(), "image/png")})
    error = await refusal(body, {"content-type": content_type})
    assert (error.status, error.param) == (400, None)
    assert "multipart/form-data" in error.message


async def test_a_body_with_another_boundary_than_declared():
    body, headers = form({"prompt": "x"}, {"image": ("a.png", picture(), "image/png")})
    headers["content-type"] = "multipart/form-data; boundary=somethingelse"
    error = await refusal(body, headers)
    assert (error.status, error.code) == (400, "invalid_parameter")
    assert "malformed" in error.message


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.99])
async def test_a_truncated_body(cut):
    body, headers = form({"prompt": "x"}, {"image": ("a.png", picture(), "image/png")})
    error = await refusal(body[: int(len(body) * cut)], headers)
    assert (error.status, error.code) == (400, "invalid_parameter")
    assert "multipart/form-data" in error.message


async def test_garbage_is_a_400():
    error = await refusal(os.urandom(5000), {"content-type": "multipart/form-data; boundary=abc"})
    assert error.status == 400


async def test_a_client_that_disconnects_mid_body(spool):
    body, headers = form({"prompt": "x"}, [("image[]", (f"{n}.png", picture(), "image/png")) for n in range(5)])
    receive = FakeReceive(body, largest=200, disconnect_after=len(body) // 2)
    with pytest.raises(UploadAborted):
        await edit_upload_receive(receive, headers)
    assert not receive.exhausted
