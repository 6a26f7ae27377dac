"""A fake of Stability AI's v2beta Stable Image generate endpoints: multipart in, the image back.

`accept: image/*` answers the image's bytes with `finish-reason` and `seed` headers; `accept:
application/json` answers base64 JSON. Images are real, at Stability's one-megapixel size for the aspect
ratio, in the output format asked for. `python -m tests.fakes.stability_upstream --port 9101`.
Image-to-image (ultra, and sd3 with `mode=image-to-image`): one `image` file and a `strength` from 0 to
1, no `aspect_ratio`; the output takes the input's nearest aspect ratio. Core takes no image.
Markers: see base.py; "[filtered]" answers 200 with finish reason CONTENT_FILTERED (a blurred image).
"""

import base64
import math
import uuid

from tests.fakes.base import CONTENT_TYPES, FakeRequest, FakeUpstream, Reply, image_bytes, serve_main

PATHS = (
    "/v2beta/stable-image/generate/sd3",
    "/v2beta/stable-image/generate/core",
    "/v2beta/stable-image/generate/ultra",
)
SD3_MODELS = ("sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium")
SIZES = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "9:16": (768, 1344),
    "21:9": (1536, 640),
    "9:21": (640, 1536),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "5:4": (1088, 896),
    "4:5": (896, 1088),
}
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
        form = request.form
        if request.path not in PATHS or not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return self.error(400, "prompt: is required (send multipart/form-data)")
        sd3 = request.path.endswith("/sd3")
        if sd3 and form.get("model", "sd3.5-large") not in SD3_MODELS:
            return self.error(400, f"model: must be one of {', '.join(SD3_MODELS)}")
        images = [file for file in request.files if file.field == "image"]
        if images:
            refusal = self.image_to_image_refusal(request, sd3)
            if refusal is not None:
                return refusal
            # The output keeps the input's shape: the size of the nearest aspect ratio.
            ratio = min(
                SIZES,
                key=lambda name: abs(math.log(SIZES[name][0] / SIZES[name][1] * images[0].height / images[0].width)),
            )
        else:
            if form.get("mode", "text-to-image") != "text-to-image":
                return self.error(400, "image: is required in image-to-image mode")
            ratio = form.get("aspect_ratio", "1:1")
            if ratio not in SIZES:
                return self.error(400, f"aspect_ratio: must be one of {', '.join(SIZES)}")
        output_format = form.get("output_format", "png")
        if output_format not in (("jpeg", "png") if sd3 else ("jpeg", "png", "webp")):
            return self.error(400, f"output_format: {output_format} is not supported here")
        data = image_bytes(*SIZES[ratio], output_format)
        finish_reason = "CONTENT_FILTERED" if "[filtered]" in request.prompt else "SUCCESS"
        if request.headers.get("accept", "image/*") == "application/json":
            body = {"image": base64.b64encode(data).decode(), "seed": 343940597, "finish_reason": finish_reason}
            return Reply(200, body, {"content-type": f"application/json; type={CONTENT_TYPES[output_format]}"})
        headers = {"content-type": CONTENT_TYPES[output_format], "finish-reason": finish_reason, "seed": "343940597"}
        return Reply(200, data, headers)

    def image_to_image_refusal(self, request: FakeRequest, sd3: bool) -> Reply | None:
        """Stability's 400 for an image-to-image request it does not take; None when it is fine."""
        form, image = request.form, request.files[0]
        if request.path.endswith("/core"):
            return self.error(400, "image: is not supported by this endpoint")
        if sd3 and form.get("mode") != "image-to-image":
            return self.error(400, "mode: must be image-to-image when an image is given")
        if "aspect_ratio" in form:
            return self.error(400, "aspect_ratio: is not allowed in image-to-image mode")
        if image.format not in ("png", "jpeg", "webp") or len(request.files) > 1:
            return self.error(400, "image: must be one png, jpeg or webp image")
        try:
            strength = float(form["strength"])
        except (KeyError, ValueError):
            return self.error(400, "strength: is required when an image is given")
        if not 0 <= strength <= 1:
            return self.error(400, "strength: must be between 0 and 1")
        return None


if __name__ == "__main__":
    serve_main(FakeStability, 9101)
