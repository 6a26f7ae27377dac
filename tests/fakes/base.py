"""What every fake upstream shares: a plain ASGI app (no Django) that records requests,
parses JSON or multipart bodies, and answers in the vendor's wire format.

Behaviour is steered per call through markers in the prompt, the way a test can
reach it through the gateway:
  [fail:NNN]  answer HTTP NNN with the vendor's error body (429 carries the vendor's retry hint)
  [policy]    the vendor's content-policy refusal
  [slow]      wait `slow_seconds` before answering (past the gateway's timeout in tests)
  [flaky]     the first call with this prompt fails with 503, later ones succeed
Vendor fakes add their own markers (see each module).

A test sets `fault` to make every request but a file download misbehave, as a broken provider does:
  hang            answer nothing until the client hangs up
  drop            send the headers and half the body, then close the connection
  bad_json        200 with a body that is not JSON
  bad_shape       200 with JSON of the wrong shape (a list where the vendor sends an object)
  not_image       200 in the vendor's format, each image replaced by bytes that are no image
  truncated_image 200 in the vendor's format, each image cut to its first half (base64 still decodes)
"""

import argparse
import asyncio
import base64
import contextlib
import functools
import io
import json
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP

from PIL import Image

_PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}
CONTENT_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "svg": "image/svg+xml",
}


@functools.lru_cache(maxsize=64)
def image_bytes(
    width: int, height: int, output_format: str = "png", *, transparent: bool = False, compression: int | None = None
) -> bytes:
    """A real image of this size and format, as a vendor would send it: a square on a plain ground.

    Transparent: RGBA with a fully transparent ground. GIF: animated, two frames. SVG: a small document.
    Cached, so a fake answers as fast as a benchmark needs.
    """
    if output_format == "svg":
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            f'<rect width="{width}" height="{height}" fill="#2856c8"/></svg>'
        ).encode()
    mode = "RGBA" if transparent else "RGB"
    ground = (0, 0, 0, 0) if transparent else (40, 90, 200)
    frames = []
    for colour in ((230, 120, 30), (30, 200, 120))[: 2 if output_format == "gif" else 1]:
        frame = Image.new(mode, (width, height), ground)
        frame.paste(colour, (width // 4, height // 4, width * 3 // 4, height * 3 // 4))
        frames.append(frame)
    buffer = io.BytesIO()
    options: dict = {"quality": compression} if compression is not None else {}
    if output_format == "gif":
        options = {"save_all": True, "append_images": frames[1:], "duration": 100, "loop": 0}
    frames[0].save(buffer, format=_PILLOW_FORMATS[output_format], **options)
    return buffer.getvalue()


TINY_PNG = image_bytes(8, 8)
TINY_PNG_B64 = base64.b64encode(TINY_PNG).decode()


FAULTS = ("hang", "drop", "bad_json", "bad_shape", "not_image", "truncated_image")
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8", b"RIFF", b"GIF8")
NOT_AN_IMAGE = b"<html><body>502 Bad Gateway</body></html>"


def _spoiled_bytes(data: bytes, fault: str) -> bytes:
    if not data.startswith(_IMAGE_MAGIC):
        return data
    return NOT_AN_IMAGE if fault == "not_image" else data[: len(data) // 2]


def _spoiled(value, fault: str):
    """`value` (a reply body) with every image in it, raw or base64 in JSON, spoiled by `fault`."""
    if isinstance(value, bytes):
        return _spoiled_bytes(value, fault)
    if isinstance(value, dict):
        return {key: _spoiled(item, fault) for key, item in value.items()}
    if isinstance(value, list):
        return [_spoiled(item, fault) for item in value]
    if isinstance(value, str) and len(value) > 64:
        try:
            data = base64.b64decode(value, validate=True)
        except ValueError:
            return value
        spoiled = _spoiled_bytes(data, fault)
        if spoiled is data:
            return value
        if fault == "truncated_image":  # cut on a 4-character boundary, so that it still decodes
            return value[: len(value) // 8 * 4]
        return base64.b64encode(spoiled).decode()
    return value


@dataclass(frozen=True)
class FakeFile:
    """A file part of a multipart request, as the fake received it; `format` and the size are read from
    its content (None and 0 when it is not an image Pillow reads)."""

    field: str
    filename: str
    content_type: str
    data: bytes
    format: str | None
    width: int
    height: int
    has_alpha: bool

    @property
    def size_bytes(self) -> int:
        return len(self.data)

    @classmethod
    def received(cls, field: str, filename: str, content_type: str, data: bytes) -> "FakeFile":
        try:
            with Image.open(io.BytesIO(data)) as image:
                image_format, (width, height) = (image.format or "").lower(), image.size
                has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        except OSError:
            image_format, width, height, has_alpha = None, 0, 0, False
        return cls(field, filename, content_type, data, image_format, width, height, has_alpha)


def inline_image(field: str, encoded: str, content_type: str = "") -> FakeFile | None:
    """An image sent inline (base64 in JSON), seen as a file part would be; None when it is not base64."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (ValueError, TypeError):
        return None
    return FakeFile.received(field, "", content_type, data)


@dataclass
class FakeRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    base_url: str
    json: dict = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)
    # The file parts of a multipart request, in the order sent.
    files: list[FakeFile] = field(default_factory=list)

    @property
    def prompt(self) -> str:
        image_request = self.json.get("image_request")
        if isinstance(image_request, dict):
            return str(image_request.get("prompt", ""))
        contents = self.json.get("contents")
        if isinstance(contents, list) and contents:
            return str(contents[0].get("parts", [{}])[0].get("text", ""))
        return str(self.json.get("prompt") or self.form.get("prompt") or "")


@dataclass
class Reply:
    status: int
    # An async iterator is sent chunk by chunk as it yields (server-sent events).
    body: dict | bytes | AsyncIterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)


def _parse_form(content_type: str, raw: bytes) -> tuple[dict[str, str], list[FakeFile]]:
    """The text parts (by name) and the file parts (those with a filename) of a multipart body."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields, files = {}, []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        filename = part.get_filename()
        if filename is None:
            fields[name] = data.decode()
        else:
            files.append(FakeFile.received(name, filename, part.get_content_type(), data))
    return fields, files


class FakeUpstream(ABC):
    """Subclasses implement `respond`; `requests` keeps every request received, in order."""

    slow_seconds = 2.0

    def __init__(self, api_key: str = "fake-key") -> None:
        self.api_key = api_key
        self.requests: list[FakeRequest] = []
        self._seen_prompts: set[str] = set()
        self.files: dict[str, tuple[bytes, str]] = {}
        # Set by a test to make every generation request fail with this status (a provider outage).
        self.outage_status: int | None = None
        # Set by a test to make the provider misbehave (FAULTS); `hang_seconds` bounds a hang.
        self.fault: str | None = None
        self.hang_seconds = 30.0
        # Streamed answers sent to their end, and those whose client hung up before it.
        self.streams_completed = 0
        self.streams_abandoned = 0

    @abstractmethod
    def authorised(self, request: FakeRequest) -> bool:
        """Whether the request carries the vendor's credentials as the vendor expects them."""

    @abstractmethod
    def error(self, status: int, message: str, *, policy: bool = False) -> Reply:
        """The vendor's error body for `status`."""

    @abstractmethod
    def generate(self, request: FakeRequest) -> Reply:
        """The vendor's answer to a successful generation request."""

    def host_file(self, request: FakeRequest, data: bytes = TINY_PNG, output_format: str = "png") -> str:
        """Serve `data` from this fake (as the vendor's CDN would) and return its URL."""
        name = uuid.uuid4().hex
        self.files[name] = (data, CONTENT_TYPES[output_format])
        return f"{request.base_url}/files/{name}.{output_format}"

    def respond(self, request: FakeRequest) -> Reply:
        if request.path.startswith("/files/"):
            hosted = self.files.get(request.path.removeprefix("/files/").partition(".")[0])
            if hosted is None:
                return Reply(404, b"gone")
            data, content_type = hosted
            if self.fault in ("not_image", "truncated_image"):
                data = _spoiled_bytes(data, self.fault)
            return Reply(200, data, {"content-type": content_type})
        if not self.authorised(request):
            return self.error(401, "Invalid API key.")
        if self.outage_status is not None:
            return self.error(self.outage_status, "Simulated outage")
        prompt = request.prompt
        failure = re.search(r"\[fail:(\d{3})\]", prompt)
        if failure:
            return self.error(int(failure.group(1)), f"Simulated failure {failure.group(1)}")
        if "[flaky]" in prompt and prompt not in self._seen_prompts:
            self._seen_prompts.add(prompt)
            return self.error(503, "Simulated transient failure")
        if "[policy]" in prompt:
            return self.error(400, "Your request was rejected by the safety system.", policy=True)
        return self.generate(request)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        host = headers.get("host", "127.0.0.1")
        request = FakeRequest(
            method=scope["method"],
            path=scope["path"],
            query=scope["query_string"].decode(),
            headers=headers,
            base_url=f"http://{host}",
        )
        content_type = headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            request.form, request.files = _parse_form(content_type, raw)
        elif raw:
            try:
                request.json = json.loads(raw)
            except ValueError:
                request.json = {}
        self.requests.append(request)
        if "[slow]" in request.prompt:
            await asyncio.sleep(self.slow_seconds)
        fault = None if request.path.startswith("/files/") else self.fault
        if fault == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(receive(), self.hang_seconds)  # the next message is the client hanging up
            return
        reply = self.respond(request)
        if fault == "bad_json":
            reply = Reply(200, b'{"data": [{"b64_json": "iVBORw0KGgo', reply.headers)
        elif fault == "bad_shape":
            reply = Reply(200, b'["not", "an", "object"]', reply.headers)
        elif fault in ("not_image", "truncated_image") and isinstance(reply.body, dict | bytes):
            reply.body = _spoiled(reply.body, fault)
        response_headers = {"content-type": "application/json", "x-request-id": uuid.uuid4().hex, **reply.headers}
        whole = isinstance(reply.body, dict | bytes)
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode() if whole else b""
        if fault == "drop" and whole:
            response_headers["content-length"] = str(len(body))
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(key.encode(), value.encode()) for key, value in response_headers.items()],
            }
        )
        if fault == "drop" and whole:
            # Half the promised body, then the app ends without finishing: the server closes the connection.
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            return
        if whole:
            await send({"type": "http.response.body", "body": body})
        else:
            await self._send_stream(reply.body, receive, send)

    async def _send_stream(self, chunks: AsyncIterator[bytes], receive, send) -> None:
        """Send each chunk as it comes; stop, counting the stream abandoned, when the client hangs up
        (uvicorn drops what is sent after that without a word)."""
        disconnected = asyncio.create_task(receive())  # the request is read: the next message is the hang-up
        try:
            async for chunk in chunks:
                if disconnected.done():
                    self.streams_abandoned += 1
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            self.streams_completed += 1
        finally:
            disconnected.cancel()


def serve_main(fake_class: type[FakeUpstream], default_port: int) -> None:
    """`python -m tests.fakes.<vendor>_upstream --port N`: run a fake on its own, for benchmarks."""
    import uvicorn

    parser = argparse.ArgumentParser(description=f"Run {fake_class.__name__} on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--api-key", default="fake-key")
    args = parser.parse_args()
    uvicorn.run(
        fake_class(api_key=args.api_key), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
    )
