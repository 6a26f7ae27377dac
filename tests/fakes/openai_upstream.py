"""A fake of OpenAI's Images API, speaking its real wire format over real HTTP.

A plain ASGI app (no Django), so it can run under uvicorn in a test thread or as
its own process for benchmarks: `python -m tests.fakes.openai_upstream --port 9100`.
Behaviour is steered per call through the `prompt`: "[fail:500]", "[fail:429]",
"[policy]" make it answer like the real API does in those cases.
"""

import argparse
import base64
import io
import json
import re
import time
import uuid

from PIL import Image

_TINY_PNG = io.BytesIO()
Image.new("RGB", (8, 8), (40, 90, 200)).save(_TINY_PNG, format="PNG")
TINY_PNG_B64 = base64.b64encode(_TINY_PNG.getvalue()).decode()


def _error(status: int, message: str, code: str | None, error_type: str = "invalid_request_error", param=None):
    return status, {"error": {"message": message, "type": error_type, "param": param, "code": code}}


class FakeOpenAI:
    """Records every request it receives in `self.requests` (method, path, headers, JSON body)."""

    def __init__(self, api_key: str = "sk-fake") -> None:
        self.api_key = api_key
        self.requests: list[dict] = []

    def respond(self, path: str, headers: dict[str, str], body: dict) -> tuple[int, dict, dict[str, str]]:
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return (*_error(401, "Incorrect API key provided: sk-…", "invalid_api_key"), {})
        if path != "/v1/images/generations":
            return (*_error(404, f"Unknown path {path}", None), {})
        prompt = str(body.get("prompt", ""))
        failure = re.search(r"\[fail:(\d{3})\]", prompt)
        if failure:
            status = int(failure.group(1))
            extra = {"retry-after": "0"} if status == 429 else {}
            return (
                *_error(
                    status,
                    f"Simulated failure {status}",
                    "rate_limit_exceeded" if status == 429 else None,
                    "server_error" if status >= 500 else "invalid_request_error",
                ),
                extra,
            )
        if "[policy]" in prompt:
            return (
                *_error(400, "Your request was rejected as a result of our safety system.", "content_policy_violation"),
                {},
            )
        n = int(body.get("n", 1))
        item: dict = {"b64_json": TINY_PNG_B64}
        if body.get("model") == "dall-e-3":
            item["revised_prompt"] = f"{prompt} (revised)"
        return 200, {"created": int(time.time()), "data": [dict(item) for _ in range(n)]}, {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        try:
            body = json.loads(b"".join(chunks) or b"{}")
        except ValueError:
            body = {}
        self.requests.append({"method": scope["method"], "path": scope["path"], "headers": headers, "json": body})
        status, payload, extra_headers = self.respond(scope["path"], headers, body)
        raw = json.dumps(payload).encode()
        response_headers = [(b"content-type", b"application/json"), (b"x-request-id", uuid.uuid4().hex.encode())]
        response_headers += [(key.encode(), value.encode()) for key, value in extra_headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": raw})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--api-key", default="sk-fake")
    args = parser.parse_args()
    uvicorn.run(
        FakeOpenAI(api_key=args.api_key), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
