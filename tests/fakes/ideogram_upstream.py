"""A fake of Ideogram's API: legacy JSON `/generate` and the v3 multipart endpoint, ephemeral URLs back.

`python -m tests.fakes.ideogram_upstream --port 9103`. Markers: see base.py;
"[policy]" answers 422 (the safety check), "[filtered]" marks the first image
`is_image_safe: false` with no URL.
"""

import datetime

from tests.fakes.base import FakeRequest, FakeUpstream, Reply, serve_main


class FakeIdeogram(FakeUpstream):
    def authorised(self, request: FakeRequest) -> bool:
        return request.headers.get("api-key") == self.api_key

    def error(self, status: int, message: str, *, policy: bool = False) -> Reply:
        if policy:
            return Reply(422, {"detail": "Prompt failed the safety check."})
        return Reply(status, {"detail": message}, {"retry-after": "0"} if status == 429 else {})

    def generate(self, request: FakeRequest) -> Reply:
        if request.path == "/generate":
            image_request = request.json.get("image_request") or {}
            count = int(image_request.get("num_images", 1))
            resolution = "1024x1024"
        elif request.path == "/v1/ideogram-v3/generate":
            count = int(request.form.get("num_images", 1))
            resolution = request.form.get("resolution", "1024x1024")
        else:
            return Reply(404, {"detail": "Not Found"})
        data = []
        for index in range(count):
            safe = not ("[filtered]" in request.prompt and index == 0)
            data.append(
                {
                    "url": self.host_file(request) if safe else None,
                    "prompt": request.prompt,
                    "resolution": resolution,
                    "is_image_safe": safe,
                    "seed": 12345 + index,
                    "style_type": "GENERAL",
                }
            )
        return Reply(200, {"created": datetime.datetime.now(datetime.UTC).isoformat(), "data": data})


if __name__ == "__main__":
    serve_main(FakeIdeogram, 9103)
