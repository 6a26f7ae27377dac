"""The multipart form of `POST /v1/images/edits`, read as it streams in.

An edit carries up to 16 images of up to 50 MB each, so the body is never held whole in memory: the
ASGI messages are fed one by one to python-multipart's streaming parser, and each file part is written
straight to a file in a temporary directory of its own for the request. Every limit is checked as the
bytes arrive, and the request is refused the moment one is crossed, without reading the rest; so is a form
that takes longer than BODY_READ_TIMEOUT_SECONDS to arrive (408).

Files are judged by their content, never by their name or declared type: Pillow reads each header
(lazily, no pixel is decoded) for the format and the dimensions, and the mask must be a PNG with an
alpha channel of the first image's size. On any refusal, and on a client that goes away, the directory
is removed before the error is raised; otherwise the caller owns it and calls `EditUpload.cleanup()`.
"""

import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from django.conf import settings
from PIL import Image, UnidentifiedImageError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from gateway.core.bodies import BodyDeadline
from gateway.core.errors import GatewayError, invalid_parameter
from gateway.pipeline.validation import text_refuse
from providers.base import InputImage

Receive = Callable[[], Awaitable[dict]]

# At most this many parts in one form: 16 images, a mask and every edit parameter fit well within it.
MAX_PARTS = 64

_CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_IMAGE_FIELD = re.compile(r"image(\[\d*\])?")
_INTEGER_FIELDS = ("n", "output_compression", "partial_images")
# Digits only, and few enough that int() is cheap (and within Python's limit on digits to convert).
_INTEGER = re.compile(r"[0-9]{1,18}")
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
_IMAGE_REQUIRED = "'image' is required: the image(s) to edit, as one file or up to 16 as image[]."


class UploadAborted(Exception):
    """The client went away before the form was complete; there is nobody to answer."""


@dataclass
class EditUpload:
    """An edit's form: its text fields, its images and mask spooled to `directory`, which the caller cleans up."""

    fields: dict[str, str]
    images: list[InputImage]
    mask: InputImage | None
    directory: str

    def cleanup(self) -> None:
        """Remove the spooled files. Safe to call twice; never raises (a leftover is the sweeper's, not a 500)."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def payload(self) -> dict[str, Any]:
        """The fields as the JSON validator takes them: integers and booleans converted where they are one.

        A value that is not (n=abc) stays a string, so that validation refuses it by name.
        """
        payload: dict[str, Any] = dict(self.fields)
        for name in _INTEGER_FIELDS:
            value = payload.get(name)
            if value is not None and _INTEGER.fullmatch(value):
                payload[name] = int(value)
        stream = payload.get("stream")
        if stream is not None and stream.lower() in _BOOLEANS:
            payload["stream"] = _BOOLEANS[stream.lower()]
        return payload


async def edit_upload_receive(receive: Receive, headers: dict[str, str]) -> EditUpload:
    """Read an edit's multipart form from the ASGI `receive`; `headers` are the request's, names lower-cased.

    Raises GatewayError for a form the gateway refuses, UploadAborted when the client disconnects.
    """
    boundary = _boundary(headers.get("content-type", ""))
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.EDIT_MAX_BODY_BYTES:
        raise _body_too_large()
    form = _EditForm(tempfile.mkdtemp(prefix="imagegate-edit-", dir=settings.EDIT_UPLOAD_DIR or None))
    try:
        await form.read(BodyDeadline(receive), boundary)
        return form.upload()
    except BaseException:
        # Whatever went wrong (a refusal, a disconnect, a cancelled task), nothing is left on disk.
        form.close()
        shutil.rmtree(form.directory, ignore_errors=True)
        raise


def _boundary(content_type: str) -> bytes:
    media_type, options = parse_options_header(content_type)
    how = "send the edit as multipart/form-data (the official SDK's images.edit does), with the image(s) as files"
    if media_type != b"multipart/form-data":
        sent = media_type.decode("latin-1") or "no Content-Type"
        raise invalid_parameter(f"An edit cannot be sent as {sent}: {how}.", None)
    boundary = options.get(b"boundary", b"")
    # RFC 2046: 1 to 70 characters. (A Content-Type set by hand, without the boundary, is the usual mistake.)
    if not 0 < len(boundary) <= 70:
        raise invalid_parameter(
            f"The multipart/form-data Content-Type has no valid boundary: {how}, and let the HTTP client set the "
            "Content-Type header.",
            None,
        )
    return boundary


def _body_too_large() -> GatewayError:
    limit = _size(settings.EDIT_MAX_BODY_BYTES)
    return GatewayError(413, "request_too_large", f"The edit's form is over {limit}; it may be at most {limit}.")


def _size(size: int) -> str:
    """A byte count for a message: "50 MB", "1.5 MB", "64 KB", "300 bytes" (binary units, as OpenAI means them)."""
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


@dataclass
class _Part:
    """The part being read: its headers, then either a file being written or a text value being collected."""

    header_name: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    disposition: bytes = b""
    name: str = ""
    filename: str = ""
    label: str = ""  # how messages name a file part: "image", "image[] file 3", "mask"
    file: BinaryIO | None = None
    path: str = ""
    size: int = 0
    value: bytearray = field(default_factory=bytearray)


class _EditForm:
    """The parser's callbacks and what they have collected so far."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.fields: dict[str, str] = {}
        self.images: list[InputImage] = []
        self.mask: InputImage | None = None
        self.parts = 0
        self.finished = False
        self.part = _Part()

    async def read(self, receive: Receive, boundary: bytes) -> None:
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self.on_part_begin,
                "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value,
                "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished,
                "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end,
                "on_end": self.on_end,
            },
        )
        received = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise UploadAborted("The client disconnected while sending the edit's form.")
            chunk = message.get("body", b"")
            more_body = message.get("more_body", False)
            received += len(chunk)
            if received > settings.EDIT_MAX_BODY_BYTES:
                raise _body_too_large()
            if self.finished:
                continue  # an epilogue after the closing boundary, which RFC 2046 allows
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise invalid_parameter(f"The multipart/form-data body is malformed: {exc}.", None) from None
        if not self.finished:
            raise invalid_parameter(
                "The multipart/form-data body ended before its closing boundary (a truncated upload?).", None
            )

    def upload(self) -> EditUpload:
        if not self.images:
            raise invalid_parameter(_IMAGE_REQUIRED, "image")
        if self.mask is not None:
            first = self.images[0]
            if (self.mask.width, self.mask.height) != (first.width, first.height):
                raise invalid_parameter(
                    f"The mask is {self.mask.width}x{self.mask.height} but the first image is "
                    f"{first.width}x{first.height}: the mask must have the same dimensions as the image it applies "
                    "to.",
                    "mask",
                )
        return EditUpload(fields=self.fields, images=self.images, mask=self.mask, directory=self.directory)

    def close(self) -> None:
        if self.part.file is not None:
            self.part.file.close()
            self.part.file = None

    # --- python-multipart callbacks: each may raise, which stops the parser and the read ---

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise invalid_parameter(f"The form has more than {MAX_PARTS} parts; an edit needs far fewer.", None)
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.part.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.part.header_value += data[start:end]

    def on_header_end(self) -> None:
        part = self.part
        if part.header_name.strip().lower() == b"content-disposition":
            part.disposition = bytes(part.header_value)
        part.header_name.clear()
        part.header_value.clear()

    def on_headers_finished(self) -> None:
        part = self.part
        # Bytes in, bytes out (as latin-1); names and file names are UTF-8, as browsers and httpx send them.
        kind, options = parse_options_header(part.disposition)
        name = options.get(b"name")
        if kind != b"form-data" or name is None:
            raise invalid_parameter("Each part of the form needs a Content-Disposition: form-data; name=...", None)
        part.name = name.decode("utf-8", "replace")
        filename = options.get(b"filename", b"").decode("utf-8", "replace").replace("\x00", "")
        part.filename = os.path.basename(filename.replace("\\", "/"))
        if _IMAGE_FIELD.fullmatch(part.name):
            index = len(self.images) + 1
            if index > settings.EDIT_MAX_IMAGES:
                raise invalid_parameter(
                    f"An edit takes at most {settings.EDIT_MAX_IMAGES} images; this form has more.", "image"
                )
            if part.name == "image[]" or (part.name == "image" and index > 1):
                part.label = f"{part.name} file {index}"
            else:
                part.label = part.name
            part.path = os.path.join(self.directory, f"image-{index:02d}")
        elif part.name == "mask":
            if self.mask is not None:
                raise invalid_parameter("The form has more than one mask; send one, for the first image.", "mask")
            part.label = "mask"
            part.path = os.path.join(self.directory, "mask")
        elif part.filename:
            raise invalid_parameter(
                f"'{part.name}' is a file, but only 'image' (or image[]) and 'mask' take files.", part.name
            )
        elif part.name in self.fields:
            raise invalid_parameter(f"'{part.name}' is sent more than once; send it once.", part.name)
        if part.path:
            part.file = open(part.path, "wb")  # noqa: SIM115 (closed at the part's end, or by close())

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        if part.file is not None:
            part.size += end - start
            if part.size > settings.EDIT_MAX_FILE_BYTES:
                limit = _size(settings.EDIT_MAX_FILE_BYTES)
                raise GatewayError(
                    413,
                    "request_too_large",
                    f"{part.label} is over {limit}; each file may be at most {limit}.",
                    param=self._file_param(),
                )
            part.file.write(data[start:end])
        else:
            part.value += data[start:end]
            if len(part.value) > settings.EDIT_MAX_FIELD_BYTES:
                limit = _size(settings.EDIT_MAX_FIELD_BYTES)
                raise GatewayError(
                    413,
                    "request_too_large",
                    f"'{part.name}' is over {limit}; it may be at most {limit}.",
                    param=part.name,
                )

    def on_part_end(self) -> None:
        part = self.part
        if part.file is None:
            self._field_add(part)
            return
        self.close()
        if part.size == 0:
            raise invalid_parameter(f"{part.label} is an empty file.", self._file_param())
        image = self._image_inspect(part)
        if part.name == "mask":
            self.mask = image
        else:
            self.images.append(image)

    def on_end(self) -> None:
        self.finished = True

    def _file_param(self) -> str:
        return "mask" if self.part.name == "mask" else "image"

    def _field_add(self, part: _Part) -> None:
        try:
            value = part.value.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_parameter(f"'{part.name}' is not valid UTF-8 text.", part.name) from None
        text_refuse({part.name: value})
        self.fields[part.name] = value

    def _image_inspect(self, part: _Part) -> InputImage:
        """The part's file as an InputImage, its format and size read from its header (no pixel is decoded)."""
        param = self._file_param()
        try:
            # A header that promises more pixels than Pillow's bomb limit is refused whether it is over that
            # limit (a warning) or twice over it (an error), and whatever Python's warning filters say.
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(part.path, formats=list(_CONTENT_TYPES)) as image:
                    content_type = _CONTENT_TYPES.get(image.format or "")
                    width, height = image.size
                    transparent = "A" in image.getbands() or "transparency" in image.info
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise invalid_parameter(
                f"{part.label} declares more pixels than the gateway opens ({Image.MAX_IMAGE_PIXELS})."
                " Send a smaller image.",
                param,
            ) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise invalid_parameter(f"{part.label} is not a PNG, JPEG or WebP image.", param) from None
        if content_type is None:
            raise invalid_parameter(f"{part.label} is not a PNG, JPEG or WebP image.", param)
        if part.name == "mask" and not (content_type == "image/png" and transparent):
            raise invalid_parameter(
                "The mask must be a PNG with an alpha channel: its fully transparent pixels mark the area to edit.",
                "mask",
            )
        return InputImage(
            path=part.path,
            content_type=content_type,
            width=width,
            height=height,
            size_bytes=part.size,
            filename=part.filename or f"{part.name.split('[')[0]}.{content_type.removeprefix('image/')}",
        )
