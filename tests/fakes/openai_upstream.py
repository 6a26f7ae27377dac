"""A fake of OpenAI's Images API (also any OpenAI-compatible server), speaking its real wire format.

`python -m tests.fakes.openai_upstream --port 9100` runs it alone. Markers: see
tests/fakes/base.py; also "[url]" answers with URLs instead of base64, as a
gateway in front of another provider might.
"""

import time

from tests.fakes.base import TINY_PNG_B64, FakeRequest, FakeUpstream, Reply, serve_main

_ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


# What GET /v1/models lists by default: id → the shutdown date OpenAI announced ("YYYY-MM-DD") or None.
LISTED_MODELS: dict[str, str | None] = {
    "gpt-image-2": None,
    "gpt-image-2.6-sunburst": None,
    "gpt-image-1-mini": "2026-12-01",
    "gpt-image-1.5": "2026-12-01",
    "gpt-4o": None,
}


class FakeOpenAI(FakeUpstream):
    def __init__(self, api_key: str = "fake-key") -> None:
        super().__init__(api_key)
        # GET /v1/models answers these; a test sets its own.
        self.listed_models = dict(LISTED_MODELS)

    def respond(self, request: FakeRequest) -> Reply:
        if request.method == "GET" and request.path == "/v1/models" and self.authorised(request):
            return self.models_list()
        return super().respond(request)

    def models_list(self) -> Reply:
        models = [
            {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "system", "shutdown_date": date}
            for name, date in self.listed_models.items()
        ]
        return Reply(200, {"object": "list", "data": models})

    def authorised(self, request: FakeRequest) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def error(self, status: int, message: str, *, policy: bool = False) -> Reply:
        code = "content_policy_violation" if policy else _ERROR_CODES.get(status)
        error_type = "server_error" if status >= 500 else "invalid_request_error"
        headers = {"retry-after": "0"} if status == 429 else {}
        return Reply(status, {"error": {"message": message, "type": error_type, "param": None, "code": code}}, headers)

    def generate(self, request: FakeRequest) -> Reply:
        if request.path != "/v1/images/generations":
            return self.error(404, f"Unknown path {request.path}")
        body = request.json
        n = int(body.get("n", 1))
        items = []
        for _ in range(n):
            item = {"url": self.host_file(request)} if "[url]" in request.prompt else {"b64_json": TINY_PNG_B64}
            if body.get("model") == "dall-e-3":
                item["revised_prompt"] = f"{body.get('prompt')} (revised)"
            items.append(item)
        return Reply(200, {"created": int(time.time()), "data": items})


if __name__ == "__main__":
    serve_main(FakeOpenAI, 9100)
