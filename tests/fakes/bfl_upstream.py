"""A fake of Black Forest Labs' API: submit a task, poll `polling_url`, download the sample.

`python -m tests.fakes.bfl_upstream --port 9102`. The submit answer carries `cost` in credits ($0.01):
FLUX.2 per megapixel (the first, then each started one), FLUX.1 per image. A FLUX.2 width or height that
is not a multiple of 16 (or under 64, or over 4 MP in all) is a 422, as BFL's validation answers.
A task is Pending for `pending_polls` polls, then Ready with a real image of the size asked for.
An edit sends its images inline as base64 (`input_image`, `input_image_2` ... up to 8 on FLUX.2, 4 on
klein, one on Kontext); each is checked, kept in the request's `files`, and billed per started megapixel
at the model's further-megapixel rate.
Markers: see base.py; "[moderated]" ends the task as Content Moderated and "[policy]" as Request Moderated,
"[stuck]" never leaves Pending, "[evil-poll]" returns a polling_url on a host that is not BFL's.
"""

import math
import uuid

from tests.fakes.base import FakeRequest, FakeUpstream, Reply, image_bytes, inline_image, serve_main

MEGAPIXEL = 1024 * 1024
# Credits for the first megapixel and for each further started one.
FLUX_2 = {
    "flux-2-pro": (3, 1.5),
    "flux-2-max": (7, 3),
    "flux-2-flex": (5, 5),
    "flux-2-klein-4b": (1.4, 0.1),
    "flux-2-klein-9b": (1.5, 0.2),
}
# FLUX.1: credits per image; Kontext and Ultra take an aspect ratio, the others pixels (multiples of 32).
FLUX_1 = {"flux-pro": 5, "flux-pro-1.1": 4, "flux-dev": 2.5, "flux-kontext-pro": 4, "flux-kontext-max": 8}
FLUX_1_RATIOS = {"flux-kontext-pro": 1024 * 1024, "flux-kontext-max": 1024 * 1024, "flux-pro-1.1-ultra": 4 * MEGAPIXEL}
ULTRA_CREDITS = 6
# How many input images each model takes: FLUX.2 up to 8 (klein 4), Kontext one, the others none.
INPUT_FIELDS = ("input_image", *(f"input_image_{number}" for number in range(2, 9)))
MAX_INPUTS = {
    **{model: 4 if "klein" in model else 8 for model in FLUX_2},
    "flux-kontext-pro": 1,
    "flux-kontext-max": 1,
}


def unprocessable(field: str, message: str) -> Reply:
    return Reply(422, {"detail": [{"loc": ["body", field], "msg": message, "type": "value_error"}]})


def ratio_size(ratio: str, pixels: int) -> tuple[int, int]:
    a, _, b = ratio.partition(":")
    width = round(math.sqrt(pixels * int(a) / int(b)) / 32) * 32
    return width, round(pixels / width / 32) * 32


class FakeBFL(FakeUpstream):
    pending_polls = 1

    def __init__(self, api_key: str = "fake-key") -> None:
        super().__init__(api_key)
        self.tasks: dict[str, dict] = {}

    def authorised(self, request: FakeRequest) -> bool:
        return request.headers.get("x-key") == self.api_key

    def error(self, status: int, message: str, *, policy: bool = False) -> Reply:
        if status == 429:
            return Reply(
                429,
                {"error": "rate_limit_exceeded", "message": "Too many concurrent requests", "retry_after": 0},
                {"retry-after": "0"},
            )
        if status == 422:
            return unprocessable("width", message)
        return Reply(status, {"detail": message})

    def respond(self, request: FakeRequest) -> Reply:
        if request.path == "/v1/get_result":
            return self.poll(request)
        if "[policy]" in request.prompt and self.authorised(request):
            # BFL accepts the task and refuses it while polling (Request Moderated).
            return self.generate(request)
        return super().respond(request)

    def generate(self, request: FakeRequest) -> Reply:
        model = request.path.removeprefix("/v1/")
        body = request.json
        if request.method != "POST" or model not in (*FLUX_2, *FLUX_1, "flux-pro-1.1-ultra"):
            return Reply(404, {"detail": "Not Found"})
        output_format = body.get("output_format", "jpeg")
        if output_format not in ("jpeg", "png"):
            return unprocessable("output_format", "Input should be 'jpeg' or 'png'")
        refusal = self.inputs_refusal(request, model)
        if refusal is not None:
            return refusal
        if model in FLUX_1_RATIOS:
            ratio = str(body.get("aspect_ratio", "16:9"))
            a, _, b = ratio.partition(":")
            if not (a.isdigit() and b.isdigit()) or not 9 / 21 <= int(a) / int(b) <= 21 / 9:
                return unprocessable("aspect_ratio", "Aspect ratio must be between 21:9 and 9:21")
            width, height = ratio_size(ratio, FLUX_1_RATIOS[model])
            cost = FLUX_1.get(model, ULTRA_CREDITS)
        else:
            width, height = body.get("width"), body.get("height")
            step = 16 if model in FLUX_2 else 32
            for field, value in (("width", width), ("height", height)):
                if not isinstance(value, int) or value < 64 or value % step:
                    return unprocessable(field, f"Input should be a multiple of {step} and at least 64")
            if model in FLUX_2 and width * height > 4 * MEGAPIXEL:
                return unprocessable("width", "The image may have at most 4 megapixels")
            output_mp = width * height / MEGAPIXEL
            if model in FLUX_2:
                # Each input image is billed like further output megapixels (BFL's image-to-image prices).
                first, extra = FLUX_2[model]
                input_mp = sum(math.ceil(file.width * file.height / MEGAPIXEL) for file in request.files)
                cost = first + (math.ceil(output_mp - 1) + input_mp) * extra
            else:
                cost = FLUX_1[model]
        task_id = uuid.uuid4().hex
        self.tasks[task_id] = {"prompt": request.prompt, "polls": 0, "size": (width, height), "format": output_format}
        polling_host = "http://169.254.169.254" if "[evil-poll]" in request.prompt else request.base_url
        return Reply(
            200,
            {
                "id": task_id,
                "polling_url": f"{polling_host}/v1/get_result?id={task_id}",
                "cost": round(cost, 2),
                "input_mp": 0.0,
                "output_mp": round(width * height / MEGAPIXEL, 2),
            },
        )

    @staticmethod
    def inputs_refusal(request: FakeRequest, model: str) -> Reply | None:
        """BFL's 422 for input images a model does not take, out of order, or not a PNG, JPEG or WEBP image;
        the images received are kept in `request.files`, named by their field."""
        sent = [field for field in INPUT_FIELDS if field in request.json]
        if sent != list(INPUT_FIELDS[: len(sent)]):
            return unprocessable(sent[-1], "Input images are input_image, input_image_2, ... without gaps")
        if len(sent) > MAX_INPUTS.get(model, 0):
            return unprocessable(sent[-1], f"{model} takes at most {MAX_INPUTS.get(model, 0)} input images")
        for field in sent:
            image = inline_image(field, str(request.json[field]))
            if image is None or image.format not in ("png", "jpeg", "webp"):
                return unprocessable(field, "Input should be a base64-encoded PNG, JPEG or WEBP image or a URL")
            request.files.append(image)
        return None

    def poll(self, request: FakeRequest) -> Reply:
        if request.headers.get("x-key") != self.api_key:
            return self.error(401, "Invalid API key.")
        task_id = request.query.removeprefix("id=")
        task = self.tasks.get(task_id)
        if task is None:
            return Reply(200, {"id": task_id, "status": "Task not found"})
        task["polls"] += 1
        prompt = task["prompt"]
        if "[stuck]" in prompt or task["polls"] <= self.pending_polls:
            return Reply(200, {"id": task_id, "status": "Pending", "progress": 0.5})
        if "[moderated]" in prompt or "[policy]" in prompt:
            status = "Request Moderated" if "[policy]" in prompt else "Content Moderated"
            return Reply(200, {"id": task_id, "status": status, "details": {"Moderation Reasons": []}})
        sample = self.host_file(request, image_bytes(*task["size"], task["format"]), task["format"])
        result = {"sample": sample, "prompt": prompt, "seed": 1234}
        return Reply(200, {"id": task_id, "status": "Ready", "result": result, "progress": None})


if __name__ == "__main__":
    serve_main(FakeBFL, 9102)
