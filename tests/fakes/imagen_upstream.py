"""A fake of Imagen on the Gemini API (`models/{model}:predict`), Google RPC errors included.

`python -m tests.fakes.imagen_upstream --port 9104`. Markers: see base.py;
"[filtered]" drops one image from `predictions`, as the RAI filter does.
"""

from tests.fakes.base import TINY_PNG_B64, FakeRequest, FakeUpstream, Reply, serve_main

_STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}


class FakeImagen(FakeUpstream):
    def authorised(self, request: FakeRequest) -> bool:
        return request.headers.get("x-goog-api-key") == self.api_key

    def respond(self, request: FakeRequest) -> Reply:
        if not request.path.startswith("/files/") and not self.authorised(request):
            # Google answers a bad key with 400, not 401.
            return self._rpc_error(400, "API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID")
        return super().respond(request)

    def _rpc_error(self, status: int, message: str, *, reason: str = "", details: list | None = None) -> Reply:
        details = list(details or [])
        if reason:
            details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason})
        error = {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNAVAILABLE")}
        return Reply(status, {"error": {**error, "details": details}})

    def error(self, status: int, message: str, *, policy: bool = False) -> Reply:
        if policy:
            return self._rpc_error(400, "Image generation failed: the prompt may violate our policies.")
        if status == 429:
            retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0s"}
            return self._rpc_error(429, "Resource has been exhausted (e.g. check quota).", details=[retry])
        return self._rpc_error(status, message)

    def generate(self, request: FakeRequest) -> Reply:
        if not request.path.startswith("/v1beta/models/") or not request.path.endswith(":predict"):
            return self._rpc_error(404, f"Unknown path {request.path}")
        count = int(request.json.get("parameters", {}).get("sampleCount", 4))
        if "[filtered]" in request.prompt:
            count -= 1
        predictions = [{"bytesBase64Encoded": TINY_PNG_B64, "mimeType": "image/png"} for _ in range(count)]
        return Reply(200, {"predictions": predictions} if predictions else {})


if __name__ == "__main__":
    serve_main(FakeImagen, 9104)
