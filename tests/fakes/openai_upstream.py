"""A fake of OpenAI's Images API as it is in November 2026, speaking its real wire format; and of an
OpenAI-compatible server (another gateway, a self-hosted one), which speaks the older dall-e dialect.

`python -m tests.fakes.openai_upstream --port 9100` runs the OpenAI fake alone. It serves only the live
GPT image models (docs/providers.md), and the deprecated ones until their shutdown day: any other model
is 404 `model_not_found`, as after a shutdown. It checks each parameter as OpenAI does (a 400
`invalid_request_error` naming `param`), answers real images of the size and format asked for, and
reports `usage` from its own copy of OpenAI's output-token formula and tables (../shared/PROVIDERS.md
§1 and §1.4; a fake is the provider, so it does not ask the gateway).

Edits (`POST /v1/images/edits`, multipart) are checked as OpenAI checks them: `image` or up to 16
`image[]` files in png, jpeg or webp, a mask that is a PNG with alpha the size of the first image,
`input_fidelity` high or low (not on gpt-image-1-mini); `usage` counts each input image's tokens by the
fake's own patch count. `stream` answers server-sent events: each image's `partial_images` partial
events, then its completed event (§2); `streams_completed` counts streams sent to their end.

Markers: see tests/fakes/base.py; also "[quota]" answers 429 `insufficient_quota` (the account is out
of credit), "[nousage]" leaves `usage` out of the answer, "[badusage]" and "[hugeusage]" report
negative and absurd output tokens, "[streamfail]" ends a stream with an error event after its first
partial image, "[slowstream]" waits half a second before each event. The compatible fake answers
"[url]" with URLs instead of base64, as a gateway in front of another provider might.
"""

import asyncio
import base64
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date
from fractions import Fraction

from tests.fakes.base import FakeFile, FakeRequest, FakeUpstream, Reply, image_bytes, serve_main

STANDARD_SIZES = ("1024x1024", "1536x1024", "1024x1536")
FORMATS = ("png", "jpeg", "webp")
# What "auto" resolves to when the model picks the size itself.
AUTO_SIZE = "1024x1024"
PARAMETERS = frozenset(
    {
        "model",
        "prompt",
        "n",
        "size",
        "quality",
        "background",
        "output_format",
        "output_compression",
        "moderation",
        "user",
        "stream",
        "partial_images",
    }
)
MAX_EDIT_IMAGES = 16
EDIT_FORMATS = ("png", "jpeg", "webp")
# Output tokens each streamed partial image adds (../shared/PROVIDERS.md §1.2).
PARTIAL_IMAGE_TOKENS = 100
# Form fields OpenAI reads as integers or booleans (the SDK sends every scalar as text).
INTEGER_FIELDS = ("n", "output_compression", "partial_images")


@dataclass(frozen=True)
class ImageModel:
    """One model OpenAI serves: its qualities, how many output tokens an image costs, its formats and sizes."""

    qualities: tuple[str, ...]
    # The quality it picks for "auto". Sunburst uses high; Flare picks for itself (up to ~5,800 tokens
    # at 1024², between xhigh and max), which this fake takes as xhigh.
    auto_quality: str
    output_tokens: Callable[[int, int, str], int]
    formats: tuple[str, ...] = FORMATS
    parameters: frozenset[str] = PARAMETERS
    # Any WxH that follows the custom-size rule, or the standard sizes only (the gpt-image-1 generation).
    custom_sizes: bool = True
    # The day OpenAI shuts a deprecated model down; from then on it answers like a shut-down one.
    shutdown: date | None = None
    # Whether its edits take `input_fidelity` (not gpt-image-1-mini).
    input_fidelity: bool = True


def formula(factors: dict[str, int], multipliers: dict[str, Fraction] | None = None) -> Callable[[int, int, str], int]:
    """Output tokens of one image by the formula that reproduces OpenAI's calculator."""

    def tokens(width: int, height: int, quality: str) -> int:
        factor = factors[quality]
        long, short = max(width, height), min(width, height)
        shape = (2 * factor * short + long) // (2 * long)
        count = -(-(factor * shape * (2_000_000 + width * height)) // 4_000_000)
        multiplier = (multipliers or {}).get(quality, Fraction(1))
        return -(-count * multiplier.numerator // multiplier.denominator)

    return tokens


# gpt-image-1's published output tokens; the fake uses them for the models of its generation still served.
GPT_IMAGE_1_TOKENS = {
    "1024x1024": {"low": 272, "medium": 1056, "high": 4160},
    "1024x1536": {"low": 408, "medium": 1584, "high": 6240},
    "1536x1024": {"low": 400, "medium": 1568, "high": 6208},
}


def gpt_image_1_tokens(width: int, height: int, quality: str) -> int:
    return GPT_IMAGE_1_TOKENS[f"{width}x{height}"][quality]


GPT_IMAGE_2 = formula({"low": 16, "medium": 48, "high": 96})
GPT_IMAGE_25_FACTORS = {"low": 16, "medium": 24, "high": 48, "xhigh": 64, "max": 96}
GPT_IMAGE_25 = formula(GPT_IMAGE_25_FACTORS)
# gpt-image-2.6 spends about 4.2x the 2.5 tokens at low and medium (664 measured at low 1536x1024).
GPT_IMAGE_26 = formula(GPT_IMAGE_25_FACTORS, {"low": Fraction(21, 5), "medium": Fraction(21, 5)})
QUALITIES_2 = ("low", "medium", "high")
QUALITIES_25 = (*QUALITIES_2, "xhigh", "max")
FORMATS_26 = (*FORMATS, "gif", "svg")
PARAMETERS_26 = PARAMETERS | {"complexity"}
DECEMBER_SHUTDOWN = date(2026, 12, 1)
MODELS = {
    "gpt-image-2": ImageModel(QUALITIES_2, "high", GPT_IMAGE_2),
    "gpt-image-2-2026-04-21": ImageModel(QUALITIES_2, "high", GPT_IMAGE_2),
    "gpt-image-2.5-flare": ImageModel(QUALITIES_25, "xhigh", GPT_IMAGE_25),
    "gpt-image-2.5-sunburst": ImageModel(QUALITIES_25, "high", GPT_IMAGE_25),
    "gpt-image-2.6-flare": ImageModel(QUALITIES_25, "xhigh", GPT_IMAGE_26, FORMATS_26, PARAMETERS_26),
    "gpt-image-2.6-sunburst": ImageModel(QUALITIES_25, "high", GPT_IMAGE_26, FORMATS_26, PARAMETERS_26),
    **{
        name: ImageModel(
            QUALITIES_2,
            "high",
            gpt_image_1_tokens,
            custom_sizes=False,
            shutdown=DECEMBER_SHUTDOWN,
            input_fidelity=name != "gpt-image-1-mini",
        )
        for name in ("gpt-image-1.5", "gpt-image-1.5-2025-12-16", "gpt-image-1-mini", "chatgpt-image-latest")
    },
}
SHUT_DOWN = ("dall-e-2", "dall-e-3", "gpt-image-1")


def size_allowed(size: str, custom: bool = True) -> tuple[int, int] | None:
    """(width, height) when the size is standard or follows the custom-size rule; None otherwise."""
    width, _, height = size.partition("x")
    if not (width.isdigit() and height.isdigit()):
        return None
    w, h = int(width), int(height)
    if size in STANDARD_SIZES:
        return w, h
    if not custom:
        return None
    long, short = max(w, h), min(w, h)
    if w % 16 or h % 16 or long > 3840 or long > 3 * short or not 655_360 <= w * h <= 8_294_400:
        return None
    return w, h


def input_image_tokens(width: int, height: int) -> int:
    """The image tokens of one input image: its 32 px patches once magnified (up to 2x) towards a 1024 px
    long edge, at most 1,536. The fake's own count; the gateway only holds a bound of it."""
    scale = min(2.0, max(1.0, 1024 / max(width, height)))
    return min(1536, math.ceil(width * scale / 32) * math.ceil(height * scale / 32))


def form_values(form: dict[str, str]) -> dict:
    """The form's fields typed as OpenAI reads them; a value that does not parse stays text (and is refused)."""
    body: dict = dict(form)
    for name in INTEGER_FIELDS:
        if name in body and body[name].lstrip("-").isdigit():
            body[name] = int(body[name])
    if body.get("stream") in ("true", "false"):
        body["stream"] = body["stream"] == "true"
    return body


def server_sent_event(event: dict) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def error_reply(status: int, message: str, *, kind: str = "invalid_request_error", param=None, code=None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "param": param, "code": code}})


def invalid(param: str, message: str, code: str = "invalid_value") -> Reply:
    return error_reply(400, message, param=param, code=code)


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
        if policy:
            return error_reply(
                400,
                "Your request was rejected by the safety system. safety_violations=[violence].",
                kind="image_generation_user_error",
                code="moderation_blocked",
            )
        if status == 401:
            return error_reply(401, "Incorrect API key provided.", code="invalid_api_key")
        if status == 429:
            reply = error_reply(429, "Rate limit reached for images per minute.", code="rate_limit_exceeded")
            reply.headers["retry-after"] = "0"
            return reply
        return error_reply(status, message, kind="server_error" if status >= 500 else "invalid_request_error")

    def generate(self, request: FakeRequest) -> Reply:
        if request.path == "/v1/images/generations":
            return self.images(request, request.json)
        if request.path == "/v1/images/edits":
            if not request.headers.get("content-type", "").startswith("multipart/form-data"):
                return invalid("image", "Edits take multipart/form-data.", "invalid_content_type")
            return self.images(request, form_values(request.form), edit=True)
        return self.error(404, f"Unknown path {request.path}")

    def images(self, request: FakeRequest, body: dict, *, edit: bool = False) -> Reply:
        if "[quota]" in request.prompt:
            return error_reply(
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                kind="insufficient_quota",
                code="credit_balance_exhausted",
            )
        name = str(body.get("model") or "")
        model = MODELS.get(name)
        if model is None or (model.shutdown is not None and date.today() >= model.shutdown):
            gone = (
                "has been deprecated"
                if model or name in SHUT_DOWN
                else "does not exist or you do not have access to it"
            )
            return error_reply(404, f"The model `{name}` {gone}.", code="model_not_found")
        parameters = model.parameters | ({"input_fidelity"} if edit and model.input_fidelity else set())
        refusal = self.refusal(model, body, parameters) or (self.edit_refusal(request.files) if edit else None)
        if refusal is not None:
            return refusal
        quality = body.get("quality", "auto")
        quality = model.auto_quality if quality == "auto" else quality
        size = body.get("size", "auto")
        size = AUTO_SIZE if size == "auto" else size
        width, height = size_allowed(size, model.custom_sizes) or (0, 0)
        output_format = body.get("output_format", "png")
        transparent = body.get("background") == "transparent"
        data = image_bytes(
            width, height, output_format, transparent=transparent, compression=body.get("output_compression")
        )
        n = int(body.get("n", 1))
        partials = int(body.get("partial_images", 0)) if body.get("stream") else 0
        fields = {
            "background": "transparent" if transparent else "opaque",
            "output_format": output_format,
            "quality": quality,
            "size": size,
        }
        usage = None
        if "[nousage]" not in request.prompt:
            inputs = [file for file in request.files if file.field in ("image", "image[]")]
            per_image = model.output_tokens(width, height, quality) + partials * PARTIAL_IMAGE_TOKENS
            usage = self.usage(request.prompt, inputs, n * per_image)
        image = base64.b64encode(data).decode()
        if body.get("stream"):
            kind = "image_edit" if edit else "image_generation"
            events = self.events(kind, request.prompt, n, partials, {"b64_json": image, **fields}, usage)
            return Reply(200, events, {"content-type": "text/event-stream"})
        answer = {"created": int(time.time()), "data": [{"b64_json": image} for _ in range(n)], **fields}
        if usage is not None:
            answer["usage"] = usage
        return Reply(200, answer)

    @staticmethod
    def usage(prompt: str, inputs: list[FakeFile], output_tokens: int) -> dict:
        text_tokens = len(prompt) // 4 + 1
        image_tokens = sum(input_image_tokens(file.width, file.height) for file in inputs)
        if "[badusage]" in prompt:
            output_tokens = -output_tokens
        if "[hugeusage]" in prompt:
            output_tokens = 10**30
        return {
            "input_tokens": text_tokens + image_tokens,
            "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
            "output_tokens": output_tokens,
            "total_tokens": text_tokens + image_tokens + output_tokens,
        }

    @staticmethod
    async def events(
        kind: str, prompt: str, n: int, partials: int, fields: dict, usage: dict | None
    ) -> AsyncIterator[bytes]:
        """The server-sent events of a streamed answer: each image's partial images, then its completed event
        (`usage` on each, as OpenAI sends it). "[streamfail]" sends an error event after the first partial
        image, "[slowstream]" waits half a second before each event."""
        slow = 0.5 if "[slowstream]" in prompt else 0
        for _ in range(n):
            for index in range(partials):
                await asyncio.sleep(slow)
                partial = {"type": f"{kind}.partial_image", **fields, "partial_image_index": index}
                yield server_sent_event({**partial, "created_at": int(time.time())})
                if "[streamfail]" in prompt:
                    break
            if "[streamfail]" in prompt:
                error = {"type": "server_error", "code": "server_error", "message": "The image could not be made."}
                yield server_sent_event({"type": "error", "error": error})
                return
            await asyncio.sleep(slow)
            completed = {"type": f"{kind}.completed", **fields, "created_at": int(time.time())}
            yield server_sent_event(completed | ({"usage": usage} if usage is not None else {}))

    @staticmethod
    def edit_refusal(files: list[FakeFile]) -> Reply | None:
        """OpenAI's 400 for the input images or mask of an edit; None when they are fine."""
        images = [file for file in files if file.field in ("image", "image[]")]
        if not images:
            return invalid("image", "Missing required parameter: 'image'.", "missing_required_parameter")
        if {file.field for file in images} == {"image", "image[]"} or len(images) > MAX_EDIT_IMAGES:
            return invalid("image", f"Send one 'image' or up to {MAX_EDIT_IMAGES} 'image[]' files.")
        for file in images:
            if file.format not in EDIT_FORMATS:
                return invalid(
                    file.field,
                    f"Invalid image file '{file.filename}': supported formats are 'png', 'jpeg' and 'webp'.",
                    "invalid_image_format",
                )
        masks = [file for file in files if file.field == "mask"]
        if masks:
            mask, first = masks[0], images[0]
            if mask.format != "png" or not mask.has_alpha:
                return invalid("mask", "The mask must be a PNG with an alpha channel.", "invalid_image_format")
            if (mask.width, mask.height) != (first.width, first.height):
                return invalid("mask", "The mask must have the same dimensions as the image.", "invalid_image_size")
        return None

    @staticmethod
    def refusal(model: ImageModel, body: dict, parameters: frozenset[str] | set[str]) -> Reply | None:
        """OpenAI's 400 for the first parameter the model does not take as given; None when all are fine."""
        for name in body:
            if name not in parameters:
                return invalid(name, f"Unknown parameter: '{name}'.", "unknown_parameter")
        if not str(body.get("prompt") or ""):
            return invalid("prompt", "Missing required parameter: 'prompt'.", "missing_required_parameter")
        n = body.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= 10:
            return invalid("n", f"Invalid 'n': {n!r}; it must be between 1 and 10.")
        size = body.get("size", "auto")
        if size != "auto" and size_allowed(str(size), model.custom_sizes) is None:
            rule = (
                "Width and height must be multiples of 16, the longest edge at most 3840, the aspect ratio at most "
                "3:1 and the total pixels between 655360 and 8294400."
                if model.custom_sizes
                else f"Supported sizes are {', '.join(STANDARD_SIZES)} and auto."
            )
            return invalid("size", f"Invalid size '{size}'. {rule}", "invalid_size")
        quality = body.get("quality", "auto")
        if quality != "auto" and quality not in model.qualities:
            return invalid("quality", f"Invalid quality '{quality}' for this model.")
        output_format = body.get("output_format", "png")
        if output_format not in model.formats:
            return invalid("output_format", f"Invalid output_format '{output_format}' for this model.")
        if output_format == "svg" and n != 1:
            return invalid("n", "output_format 'svg' generates one image per request: n must be 1.")
        background = body.get("background", "auto")
        if background not in ("transparent", "opaque", "auto"):
            return invalid("background", f"Invalid background '{background}'.")
        if background == "transparent" and output_format not in ("png", "webp"):
            return invalid("background", "A transparent background needs output_format 'png' or 'webp'.")
        if "output_compression" in body:
            compression = body["output_compression"]
            if output_format not in ("jpeg", "webp"):
                return invalid("output_compression", "output_compression is only supported for jpeg and webp.")
            if not isinstance(compression, int) or not 0 <= compression <= 100:
                return invalid("output_compression", "output_compression must be an integer from 0 to 100.")
        if body.get("moderation", "auto") not in ("low", "auto"):
            return invalid("moderation", f"Invalid moderation '{body['moderation']}'.")
        if body.get("complexity", "high") not in ("low", "medium", "high"):
            return invalid("complexity", f"Invalid complexity '{body['complexity']}'.")
        if body.get("input_fidelity", "low") not in ("high", "low"):
            return invalid("input_fidelity", f"Invalid input_fidelity '{body['input_fidelity']}'.")
        if not isinstance(body.get("stream", False), bool):
            return invalid("stream", "'stream' must be a boolean.")
        partials = body.get("partial_images", 0)
        if not isinstance(partials, int) or not 0 <= partials <= 3:
            return invalid("partial_images", f"Invalid 'partial_images': {partials!r}; it must be between 0 and 3.")
        return None


class FakeOpenAICompatible(FakeOpenAI):
    """A server that speaks the dall-e dialect for its own models: any model, any WxH, url or b64_json."""

    def images(self, request: FakeRequest, body: dict, *, edit: bool = False) -> Reply:
        width, _, height = str(body.get("size") or AUTO_SIZE).partition("x")
        data = image_bytes(int(width), int(height))
        as_url = "[url]" in request.prompt or body.get("response_format", "url") == "url"
        items = [
            {"url": self.host_file(request, data)} if as_url else {"b64_json": base64.b64encode(data).decode()}
            for _ in range(int(body.get("n", 1)))
        ]
        return Reply(200, {"created": int(time.time()), "data": items})


if __name__ == "__main__":
    serve_main(FakeOpenAI, 9100)
