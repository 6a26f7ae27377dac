"""A fake of Black Forest Labs' API: submit a task, poll `polling_url`, download the sample.

`python -m tests.fakes.bfl_upstream --port 9102`. A task is Pending for
`pending_polls` polls, then Ready. Markers: see base.py; "[moderated]" ends the
task as Content Moderated and "[policy]" as Request Moderated, "[stuck]" never leaves Pending, "[evil-poll]" returns
a polling_url on a host that is not BFL's.
"""

import uuid

from tests.fakes.base import FakeRequest, FakeUpstream, Reply, serve_main

MODELS = ("flux-pro", "flux-pro-1.1", "flux-dev", "flux-pro-1.1-ultra")


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
            return Reply(422, {"detail": [{"loc": ["body", "width"], "msg": message, "type": "value_error"}]})
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
        if request.method != "POST" or model not in MODELS:
            return Reply(404, {"detail": "Not Found"})
        task_id = uuid.uuid4().hex
        self.tasks[task_id] = {"prompt": request.prompt, "polls": 0}
        polling_host = "http://169.254.169.254" if "[evil-poll]" in request.prompt else request.base_url
        return Reply(200, {"id": task_id, "polling_url": f"{polling_host}/v1/get_result?id={task_id}", "cost": 4.0})

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
        sample = self.host_file(request)
        result = {"sample": sample, "prompt": prompt, "seed": 1234}
        return Reply(200, {"id": task_id, "status": "Ready", "result": result, "progress": None})


if __name__ == "__main__":
    serve_main(FakeBFL, 9102)
