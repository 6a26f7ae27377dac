"""What every fake upstream shares: a plain ASGI app (no Django) that records requests,
parses JSON or multipart bodies, and answers in the vendor's wire format.

Behaviour is steered per call through markers in the prompt, the way a test can
reach it through the gateway:
  [fail:NNN]  answer HTTP NNN with the vendor's error body (429 carries the vendor's retry hint)
  [policy]    the vendor's content-policy refusal
  [slow]      wait `slow_seconds` before answering (past the gateway's timeout in tests)
  [flaky]     the first call with this prompt fails with 503, later ones succeed
Vendor fakes add their own markers (see each module).
"""

import argparse
import asyncio
import base64
import io
import json
import re
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP

from PIL import Image


def png_bytes(colour: tuple[int, int, int] = (40, 90, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


TINY_PNG = png_bytes()
TINY_PNG_B64 = base64.b64encode(TINY_PNG).decode()


@dataclass
class FakeRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    base_url: str
    json: dict = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        image_request = self.json.get("image_request")
        if isinstance(image_request, dict):
            return str(image_request.get("prompt", ""))
        instances = self.json.get("instances")
        if isinstance(instances, list) and instances:
            return str(instances[0].get("prompt", ""))
        return str(self.json.get("prompt") or self.form.get("prompt") or "")


@dataclass
class Reply:
    status: int
    body: dict | bytes
    headers: dict[str, str] = field(default_factory=dict)


def _parse_form(content_type: str, raw: bytes) -> dict[str, str]:
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True).decode()
        for part in message.iter_parts()
    }


class FakeUpstream(ABC):
    """Subclasses implement `respond`; `requests` keeps every request received, in order."""

    slow_seconds = 2.0

    def __init__(self, api_key: str = "fake-key") -> None:
        self.api_key = api_key
        self.requests: list[FakeRequest] = []
        self._seen_prompts: set[str] = set()
        self.files: dict[str, bytes] = {}
        # Set by a test to make every generation request fail with this status (a provider outage).
        self.outage_status: int | None = None

    @abstractmethod
    def authorised(self, request: FakeRequest) -> bool:
        """Whether the request carries the vendor's credentials as the vendor expects them."""

    @abstractmethod
    def error(self, status: int, message: str, *, policy: bool = False) -> Reply:
        """The vendor's error body for `status`."""

    @abstractmethod
    def generate(self, request: FakeRequest) -> Reply:
        """The vendor's answer to a successful generation request."""

    def host_file(self, request: FakeRequest, data: bytes = TINY_PNG) -> str:
        """Serve `data` from this fake (as the vendor's CDN would) and return its URL."""
        name = uuid.uuid4().hex
        self.files[name] = data
        return f"{request.base_url}/files/{name}.png"

    def respond(self, request: FakeRequest) -> Reply:
        if request.path.startswith("/files/"):
            data = self.files.get(request.path.removeprefix("/files/").removesuffix(".png"))
            return Reply(200, data, {"content-type": "image/png"}) if data else Reply(404, b"gone")
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
            request.form = _parse_form(content_type, raw)
        elif raw:
            try:
                request.json = json.loads(raw)
            except ValueError:
                request.json = {}
        self.requests.append(request)
        if "[slow]" in request.prompt:
            await asyncio.sleep(self.slow_seconds)
        reply = self.respond(request)
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        response_headers = {"content-type": "application/json", "x-request-id": uuid.uuid4().hex, **reply.headers}
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(key.encode(), value.encode()) for key, value in response_headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})


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
