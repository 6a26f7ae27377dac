"""A fake of the Gemini API's image models on `models/{model}:generateContent`, Google RPC errors included.

`python -m tests.fakes.google_upstream --port 9104`. Only gemini-3.1-flash-image and gemini-3-pro-image
answer; Imagen (and `:predict`) is shut down, so anything else is 404 NOT_FOUND. One image per call, at
the size Google makes for the aspect ratio and image size asked for, with `usageMetadata`.

Markers: see base.py; "[policy]" is a blocked prompt (200 with `promptFeedback.blockReason`),
"[image-safety]" a candidate stopped by the image filter (finish reason IMAGE_SAFETY, no image),
"[filtered]" stops only the first call with that prompt, "[text]" adds a text part before the image.
An edit's images come as `inlineData` parts after the prompt (up to 14); each must be the type its
`mimeType` says, is kept in the request's `files`, and counts 1,120 image tokens of the prompt.
"""

import base64
import math
import uuid

from tests.fakes.base import FakeRequest, FakeUpstream, Reply, image_bytes, inline_image, serve_main

_STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}
RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
# Google's 1K sizes; the 512, 2K and 4K tiers scale them by 1/2, 2 and 4.
SIZES_1K = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}
SCALES = {"512": 0.5, "1K": 1, "2K": 2, "4K": 4}
# Output tokens per image by image size (3.1 flash: Google's model page; pro: its per-image prices at $120/1M).
MODELS = {
    "gemini-3.1-flash-image": {
        "ratios": (*RATIOS, "1:4", "4:1", "1:8", "8:1"),
        "tokens": {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520},
    },
    "gemini-3-pro-image": {"ratios": RATIOS, "tokens": {"1K": 1120, "2K": 1120, "4K": 2000}},
}
MAX_INPUT_IMAGES = 14
# What an input image counts as in the prompt (Gemini 3 at its default media resolution).
INPUT_IMAGE_TOKENS = 1120
INPUT_TYPES = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}


def image_dimensions(ratio: str, image_size: str) -> tuple[int, int]:
    """The pixels of an image; the extreme ratios of 3.1 flash keep the tier's area (Google publishes no sizes)."""
    a, _, b = ratio.partition(":")
    width, height = SIZES_1K.get(ratio) or (
        round(math.sqrt(1024 * 1024 * int(a) / int(b)) / 16) * 16,
        round(math.sqrt(1024 * 1024 * int(b) / int(a)) / 16) * 16,
    )
    scale = SCALES[image_size]
    return int(width * scale), int(height * scale)


class FakeGoogle(FakeUpstream):
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
            return Reply(200, {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {}})
        if status == 429:
            retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0s"}
            return self._rpc_error(429, "Resource has been exhausted (e.g. check quota).", details=[retry])
        return self._rpc_error(status, message)

    def generate(self, request: FakeRequest) -> Reply:
        name, _, method = request.path.removeprefix("/v1beta/models/").partition(":")
        if not request.path.startswith("/v1beta/models/") or method != "generateContent" or name not in MODELS:
            return self._rpc_error(
                404,
                f"models/{name} is not found for API version v1beta, or is not supported for {method or 'this call'}.",
            )
        model = MODELS[name]
        config = request.json.get("generationConfig") or {}
        image_config = config.get("imageConfig") or {}
        ratio, image_size = image_config.get("aspectRatio", "1:1"), image_config.get("imageSize", "1K")
        if "IMAGE" not in (config.get("responseModalities") or []):
            return self._rpc_error(400, "This model only generates images: responseModalities must include IMAGE.")
        if ratio not in model["ratios"]:
            return self._rpc_error(400, f"Invalid value at 'generation_config.image_config.aspect_ratio': {ratio}")
        if image_size not in model["tokens"]:
            return self._rpc_error(400, f"Invalid value at 'generation_config.image_config.image_size': {image_size}")
        refusal = self.inputs_refusal(request)
        if refusal is not None:
            return refusal
        prompt = request.prompt
        text_tokens, image_tokens = len(prompt) // 4 + 1, INPUT_IMAGE_TOKENS * len(request.files)
        usage: dict = {"promptTokenCount": text_tokens + image_tokens}
        if request.files:
            usage["promptTokensDetails"] = [
                {"modality": "TEXT", "tokenCount": text_tokens},
                {"modality": "IMAGE", "tokenCount": image_tokens},
            ]
        stopped = "[image-safety]" in prompt or ("[filtered]" in prompt and prompt not in self._seen_prompts)
        self._seen_prompts.add(prompt)
        if stopped:
            candidate = {"content": {"role": "model", "parts": []}, "finishReason": "IMAGE_SAFETY", "index": 0}
            return Reply(
                200,
                {"candidates": [candidate], "usageMetadata": {**usage, "totalTokenCount": usage["promptTokenCount"]}},
            )
        data = base64.b64encode(image_bytes(*image_dimensions(ratio, image_size))).decode()
        parts: list[dict] = [{"text": "Here is your image."}] if "[text]" in prompt else []
        parts.append({"inlineData": {"mimeType": "image/png", "data": data}})
        tokens = model["tokens"][image_size]
        text_tokens = 5 if "[text]" in prompt else 0
        usage |= {
            "candidatesTokenCount": tokens + text_tokens,
            "totalTokenCount": usage["promptTokenCount"] + tokens + text_tokens,
            "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": tokens}]
            + ([{"modality": "TEXT", "tokenCount": text_tokens}] if text_tokens else []),
        }
        candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        return Reply(
            200,
            {"candidates": [candidate], "usageMetadata": usage, "modelVersion": name, "responseId": uuid.uuid4().hex},
        )

    def inputs_refusal(self, request: FakeRequest) -> Reply | None:
        """Google's 400 for inline images it cannot read (or too many); those it takes go to `request.files`."""
        parts = ((request.json.get("contents") or [{}])[0].get("parts")) or []
        for number, part in enumerate(parts[1:], start=1):
            inline = part.get("inlineData") if isinstance(part, dict) else None
            if not isinstance(inline, dict):
                return self._rpc_error(400, f"Invalid value at 'contents[0].parts[{number}]': expected inlineData")
            mime_type = str(inline.get("mimeType", ""))
            image = inline_image(f"parts[{number}]", str(inline.get("data", "")), mime_type)
            if image is None or image.format != INPUT_TYPES.get(mime_type):
                return self._rpc_error(400, f"Unable to process input image at 'contents[0].parts[{number}]'.")
            request.files.append(image)
        if len(request.files) > MAX_INPUT_IMAGES:
            return self._rpc_error(400, f"At most {MAX_INPUT_IMAGES} input images are supported.")
        return None


if __name__ == "__main__":
    serve_main(FakeGoogle, 9104)
