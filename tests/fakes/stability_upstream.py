"""A fake of Stability AI's v2beta Stable Image generate endpoints (multipart in, base64 JSON out).

`python -m tests.fakes.stability_upstream --port 9101`. Markers: see base.py;
"[filtered]" answers 200 with finish_reason CONTENT_FILTERED (a blurred image).
"""

import uuid

from tests.fakes.base import TINY_PNG_B64, FakeRequest, FakeUpstream, Reply, serve_main

PATHS = (
    "/v2beta/stable-image/generate/sd3",
    "/v2beta/stable-image/generate/core",
    "/v2beta/stable-image/generate/ultra",
)
_NAMES = {400: "bad_request", 401: "unauthorized", 429: "rate_limit_exceeded", 500: "internal_error"}


class FakeStability(FakeUpstream):
    def authorised(self, request: FakeRequest) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def error(self, status: int, message: str, *, policy: bool = False) -> Reply:
        if policy:
            status, name = 403, "content_moderation"
            message = "Your request was flagged by our content moderation system."
        else:
            name = _NAMES.get(status, "error")
        return Reply(status, {"id": uuid.uuid4().hex, "name": name, "errors": [message]})

    def generate(self, request: FakeRequest) -> Reply:
        if request.path not in PATHS or not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return self.error(400, "prompt: is required (send multipart/form-data)")
        finish_reason = "CONTENT_FILTERED" if "[filtered]" in request.prompt else "SUCCESS"
        return Reply(
            200,
            {"image": TINY_PNG_B64, "seed": 343940597, "finish_reason": finish_reason},
            {"content-type": "application/json; type=image/png"},
        )


if __name__ == "__main__":
    serve_main(FakeStability, 9101)
