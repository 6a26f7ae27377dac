"""Every response carries an X-Request-ID, errors included."""

import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex}"


class IdentifiedRequest(HttpRequest):
    """What views behind RequestIdMiddleware receive: HttpRequest does not declare the attribute it sets."""

    request_id: str


class RequestIdMiddleware:
    """Gives each request an id (request.request_id) and echoes it as X-Request-ID.

    Written natively for both modes so the async hot path takes no thread hop here.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        request.request_id = new_request_id()
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response

    async def _acall(self, request):
        request.request_id = new_request_id()
        response = await self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response
