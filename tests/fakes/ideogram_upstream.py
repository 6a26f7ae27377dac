"""A fake of Ideogram's API: the v2 route of Ideogram 4.5 (JSON), the v1 route of 3.0 (multipart) and the
legacy JSON `/generate`; ephemeral URLs to real images back.

`python -m tests.fakes.ideogram_upstream --port 9103`. Markers: see base.py; "[policy]" answers 422 (the
safety check), "[filtered]" marks the first image `is_image_safe: false` with no URL.
"""

import datetime
import uuid

from tests.fakes.base import FakeRequest, FakeUpstream, Reply, image_bytes, serve_main

V2_MODELS = ("ideogram-4-5", "ideogram-4", "ideogram-3")
V2_RESOLUTIONS = {"1k": (1024, 1024), "2k": (2048, 2048)}
RENDERING_SPEEDS = ("FLASH", "TURBO", "DEFAULT", "QUALITY")
LEGACY_MODELS = ("V_1", "V_1_TURBO", "V_2", "V_2_TURBO", "V_2A", "V_2A_TURBO")


def bad_request(message: str) -> Reply:
    return Reply(400, {"detail": message})


def v3_resolution(resolution: str) -> tuple[int, int] | None:
    """One of 3.0's ~70 resolutions, approximated as 512 to 1536 pixels a side in steps of 32."""
    width, _, height = resolution.partition("x")
    if not (width.isdigit() and height.isdigit()):
        return None
    w, h = int(width), int(height)
    return (w, h) if all(512 <= side <= 1536 and side % 32 == 0 for side in (w, h)) else None


class FakeIdeogram(FakeUpstream):
    def authorised(self, request: FakeRequest) -> bool:
        return request.headers.get("api-key") == self.api_key

    def error(self, status: int, message: str, *, policy: bool = False) -> Reply:
        if policy:
            return Reply(422, {"detail": "Prompt failed the safety check."})
        return Reply(status, {"detail": message}, {"retry-after": "0"} if status == 429 else {})

    def generate(self, request: FakeRequest) -> Reply:
        if request.path.startswith("/v2/image/generate/"):
            return self.v2(request)
        if request.path == "/generate":
            image_request = request.json.get("image_request") or {}
            if image_request.get("model", "V_2") not in LEGACY_MODELS:
                return bad_request(f"Unknown model {image_request.get('model')!r}")
            return self.answer(request, int(image_request.get("num_images", 1)), (1024, 1024))
        if request.path == "/v1/ideogram-v3/generate":
            form = request.form
            if form.get("rendering_speed", "DEFAULT") not in RENDERING_SPEEDS:
                return bad_request(f"rendering_speed must be one of {', '.join(RENDERING_SPEEDS)}")
            size = v3_resolution(form.get("resolution", "1024x1024"))
            if size is None:
                return bad_request(f"Resolution {form.get('resolution')} is not supported by Ideogram 3.0")
            return self.answer(request, int(form.get("num_images", 1)), size)
        return Reply(404, {"detail": "Not Found"})

    def v2(self, request: FakeRequest) -> Reply:
        if request.path.removeprefix("/v2/image/generate/") not in V2_MODELS:
            return Reply(404, {"detail": "Not Found"})
        body = request.json
        if body.get("quality", "medium") not in ("low", "medium", "high"):
            return bad_request("quality must be one of low, medium, high")
        if body.get("magic_prompt", "auto") not in ("auto", "on", "off"):
            return bad_request("magic_prompt must be one of auto, on, off")
        if not 1 <= int(body.get("num_images", 1)) <= 8:
            return bad_request("num_images must be between 1 and 8")
        custom = body.get("custom_width"), body.get("custom_height")
        if custom != (None, None):
            if "resolution" in body:
                return bad_request("custom_width and custom_height cannot be combined with resolution")
            if not all(isinstance(side, int) and 16 <= side <= 4096 and side % 16 == 0 for side in custom):
                return bad_request("custom_width and custom_height must be multiples of 16 between 16 and 4096")
            size = (custom[0], custom[1])
            if size[0] * size[1] > 4_194_304:
                return bad_request("custom_width x custom_height may not exceed 4194304 pixels")
        elif body.get("resolution", "1k") in V2_RESOLUTIONS:
            size = V2_RESOLUTIONS[body.get("resolution", "1k")]
        else:
            return bad_request("resolution must be one of 1k, 2k")
        return self.answer(request, int(body.get("num_images", 1)), size, generation_id=uuid.uuid4().hex)

    def answer(self, request: FakeRequest, count: int, size: tuple[int, int], generation_id: str = "") -> Reply:
        """The v2 answer (with its generation id) or the v1 and legacy one (with its creation time and styles)."""
        data = []
        for index in range(count):
            safe = not ("[filtered]" in request.prompt and index == 0)
            item = {
                "url": self.host_file(request, image_bytes(*size)) if safe else None,
                "prompt": request.prompt,
                "resolution": f"{size[0]}x{size[1]}",
                "is_image_safe": safe,
                "seed": 12345 + index,
            }
            data.append(item if generation_id else item | {"style_type": "GENERAL"})
        if generation_id:
            return Reply(
                200, {"generation_id": generation_id, "generation_kind": "sampling", "seed": 12345, "data": data}
            )
        return Reply(200, {"created": datetime.datetime.now(datetime.UTC).isoformat(), "data": data})


if __name__ == "__main__":
    serve_main(FakeIdeogram, 9103)
