"""The fake OpenAI upstream with a fault switch, run as its own process by the suite.

`python -m faults.upstream --port N` serves tests.fakes.openai_upstream.FakeOpenAI, plus two control routes
the suite calls directly:
  POST /_fault {"mode": "ok" | "hang" | "error500" | "drop" | "garbage", "seconds": S}
      how every image call is answered from now on: normally; after waiting S seconds (then normally);
      HTTP 500 in OpenAI's error shape; the connection closed halfway through the body; a 200 that is not JSON.
  GET /_stats  {"calls": N}  image calls received so far (the suite compares them with the line items).
"""

import argparse
import asyncio
import json

import uvicorn

from tests.fakes.openai_upstream import FakeOpenAI

MODES = ("ok", "hang", "error500", "drop", "garbage")


class FaultyUpstream(FakeOpenAI):
    def __init__(self, api_key: str) -> None:
        super().__init__(api_key=api_key)
        self.mode = "ok"
        self.hang_seconds = 0.0
        self.calls = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/_fault":
            return await self._control(receive, send)
        if path == "/_stats":
            return await _reply(send, 200, json.dumps({"calls": self.calls}).encode())
        if not path.startswith("/v1/images/"):
            return await super().__call__(scope, receive, send)
        self.calls += 1
        if self.mode == "hang":
            await asyncio.sleep(self.hang_seconds)
        elif self.mode == "error500":
            return await _reply(send, 500, b'{"error": {"message": "fault drill", "type": "server_error"}}')
        elif self.mode == "garbage":
            return await _reply(send, 200, b"<html>\x00not json{{")
        elif self.mode == "drop":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4096")]})
            await send({"type": "http.response.body", "body": b'{"created": 1, "data": [', "more_body": True})
            # uvicorn closes the connection when the app fails mid-body: the client sees it dropped.
            raise ConnectionAbortedError("fault drill: connection dropped")
        return await super().__call__(scope, receive, send)

    async def _control(self, receive, send) -> None:
        message = await receive()
        order = json.loads(message.get("body") or b"{}")
        if order.get("mode") not in MODES:
            return await _reply(send, 400, b'{"error": "mode must be one of ' + ", ".join(MODES).encode() + b'"}')
        self.mode = order["mode"]
        self.hang_seconds = float(order.get("seconds", 3600))
        return await _reply(send, 200, json.dumps({"mode": self.mode}).encode())


async def _reply(send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", default="sk-fault")
    args = parser.parse_args()
    uvicorn.run(FaultyUpstream(args.api_key), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
