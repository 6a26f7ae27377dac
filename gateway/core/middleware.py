"""Every response carries an X-Request-ID, errors included; parameters that cannot be stored are refused up front;
the API's paths answer in their error shape even where Django would answer with a page; a database outage is a 503."""

import logging
import time
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from gateway.core.db import (
    DATABASE_RETRY_AFTER_SECONDS,
    database_failure_note,
    database_known_down,
    database_unavailable_error,
    database_unreachable,
)
from gateway.core.errors import Flavor, GatewayError, error_response

logger = logging.getLogger("gateway.core.middleware")


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex}"


class IdentifiedRequest(HttpRequest):
    """What views behind RequestIdMiddleware receive: HttpRequest does not declare the attribute it sets."""

    request_id: str


class _BothModesMiddleware:
    """A middleware written natively for sync and async stacks, so an async view takes no thread hop for it."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)


class RequestIdMiddleware(_BothModesMiddleware):
    """Gives each request an id (request.request_id) and echoes it as X-Request-ID."""

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


access_logger = logging.getLogger("gateway.access")


class AccessLogMiddleware(_BothModesMiddleware):
    """One line per Django request when ACCESS_LOG is on: method, path (never its query, which may carry a
    token or a signed URL's signature), status, latency and request id."""

    def _log(self, request, response, started: float) -> None:
        if settings.ACCESS_LOG:
            latency_ms = int((time.monotonic() - started) * 1000)
            fields = {
                "request_id": getattr(request, "request_id", ""),
                "method": request.method,
                "path": request.path[:300],
                "status": response.status_code,
                "latency_ms": latency_ms,
            }
            access_logger.info(
                "%s %s %s %sms", request.method, fields["path"], response.status_code, latency_ms, extra=fields
            )

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        started = time.monotonic()
        response = self.get_response(request)
        self._log(request, response, started)
        return response

    async def _acall(self, request):
        started = time.monotonic()
        response = await self.get_response(request)
        self._log(request, response, started)
        return response


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _nul_parameter(request: HttpRequest) -> str | None:
    """The first query or form parameter holding a NUL character (its name), or None."""
    sources = [request.GET]
    if request.method == "POST" and request.content_type in _FORM_TYPES:
        sources.append(request.POST)
    for params in sources:
        for name, values in params.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                return name.replace("\x00", "")
    return None


class NulParameterMiddleware(_BothModesMiddleware):
    """A NUL character in the path, a query or a form field is a 400 that names it.

    PostgreSQL cannot hold U+0000 in text, so such a value would otherwise fail deep
    inside a filter or a save as a 500.
    """

    def _refusal(self, request: IdentifiedRequest) -> HttpResponse | None:
        param = None if "\x00" in request.path else _nul_parameter(request)
        if param is None and "\x00" not in request.path:
            return None
        where = "the path" if param is None else f"parameter '{param}'"
        message = f"The request's {where} contains a NUL character (\\u0000), which is not allowed."
        flavor = api_flavor(request.path)
        if flavor is not None:
            error = GatewayError(400, "invalid_parameter", message, param=param)
            return error_response(error, flavor=flavor, request_id=request.request_id)
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return self._refusal(request) or self.get_response(request)

    async def _acall(self, request):
        return self._refusal(request) or await self.get_response(request)


# The API's two flavours by path prefix, first match wins, and what each serves, for a client that asked for
# something else. The usage API (and its schema) promise OpenAI's error shape although they live under /api/.
_API_PREFIXES = {
    "/v1/": Flavor.OPENAI,
    "/api/usage/": Flavor.OPENAI,
    "/api/schema/": Flavor.OPENAI,
    "/api/": Flavor.FLAT,
}
_SERVED = {
    Flavor.OPENAI: "POST /v1/images/generations, /v1/images/edits and /v1/images/quote, "
    "GET /v1/images/jobs and /v1/images/jobs/{id}, GET /v1/models and GET /v1/models/{model}",
    Flavor.FLAT: "POST /api/images/generations, /api/images/edits and /api/images/quote, "
    "GET /api/images/jobs and /api/images/jobs/{id}, and the usage API "
    "(GET /api/usage and /api/usage/summary, described at /api/docs/)",
}


def api_flavor(path: str) -> str | None:
    """The error shape of an API path, or None for a page of the dashboard."""
    return next((flavor for prefix, flavor in _API_PREFIXES.items() if (path + "/").startswith(prefix)), None)


class ApiErrorShapeMiddleware(_BothModesMiddleware):
    """Under /v1/ and /api/, an unknown path (404) or a method the view does not take (405) answers JSON in
    that flavour's error shape rather than Django's HTML page, in debug mode too.

    JSON answers pass untouched: the image endpoints, the models and the usage API write their own errors.
    """

    def _reshaped(self, request, response):
        if response.status_code not in (404, 405) or response.get("Content-Type", "").startswith("application/json"):
            return response
        flavor = api_flavor(request.path)
        if flavor is None:
            return response
        path = request.path[:200]
        if response.status_code == 404:
            error = GatewayError(404, "not_found", f"Unknown path {path}: this gateway serves {_SERVED[flavor]}.")
        else:
            allowed = response.get("Allow", "")
            error = GatewayError(
                405,
                "method_not_allowed",
                f"Method {request.method} is not allowed on {path}: use {allowed}.",
                headers={"Allow": allowed},
            )
        return error_response(error, flavor=flavor, request_id=request.request_id)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return self._reshaped(request, self.get_response(request))

    async def _acall(self, request):
        return self._reshaped(request, await self.get_response(request))


async def _answered(response: HttpResponse) -> HttpResponse:
    return response


class DatabaseUnavailableMiddleware(_BothModesMiddleware):
    """A view that cannot reach the database answers 503 with Retry-After and logs one line, not a 500 and a
    traceback: JSON in the API's flavours under /v1/ and /api/, a short page elsewhere (the dashboard)."""

    def __call__(self, request):
        # A connection attempt failed a moment ago: answer at once rather than wait out the pool's timeout.
        # /healthz still looks for itself.
        if database_known_down() and request.path != "/healthz":
            logger.warning("request %s: database unavailable (down a moment ago)", getattr(request, "request_id", "-"))
            response = self._unavailable(request)
            return _answered(response) if self.is_async else response
        return self.get_response(request)  # a coroutine, on an async stack

    def process_exception(self, request, exception):
        database_failure_note(exception)
        if not database_unreachable(exception):
            return None
        cause = exception.__cause__ if isinstance(exception, GatewayError) else exception
        logger.warning("request %s: database unavailable (%r)", getattr(request, "request_id", "-"), cause)
        return self._unavailable(request)

    def _unavailable(self, request) -> HttpResponse:
        flavor = api_flavor(request.path)
        response: HttpResponse
        if flavor is not None:
            response = error_response(database_unavailable_error(), flavor=flavor, request_id=request.request_id)
        else:
            response = HttpResponse(
                "The service is briefly unavailable (its database cannot be reached). Try again in a few seconds.",
                status=503,
                content_type="text/plain; charset=utf-8",
            )
            response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        # Logged above: Django's request logger need not log the 503 again.
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response
