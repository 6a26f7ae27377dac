"""One error type for the whole pipeline, rendered in either wire shape.

OpenAI flavour: {"error": {"message", "type", "param", "code"}}.
Flat (ZIRI-style) flavour: {"error": "<message>", "code": "...", "requestId": "req-..."}.
"""

from django.http import JsonResponse

# OpenAI's `type` for each status family; clients mostly key on `code`.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
# Codes whose `type` is not their status family's: OpenAI answers an exhausted quota (our spend caps)
# with a 429 of type insufficient_quota, which clients tell apart from a rate limit by this type.
_TYPE_BY_CODE = {"insufficient_quota": "insufficient_quota"}


class GatewayError(Exception):
    """A request the gateway refuses or could not serve; `code` is the stable machine-readable reason."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}

    @property
    def error_type(self) -> str:
        by_status = _TYPE_BY_STATUS.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return _TYPE_BY_CODE.get(self.code, by_status)


def invalid_parameter(message: str, param: str | None) -> GatewayError:
    return GatewayError(400, "invalid_parameter", message, param=param)


class Flavor:
    OPENAI = "openai"
    FLAT = "flat"


def error_body(error: GatewayError, *, flavor: str, request_id: str) -> dict:
    if flavor == Flavor.FLAT:
        return {"error": error.message, "code": error.code, "requestId": request_id}
    return {"error": {"message": error.message, "type": error.error_type, "param": error.param, "code": error.code}}


def error_response(error: GatewayError, *, flavor: str, request_id: str) -> JsonResponse:
    response = JsonResponse(error_body(error, flavor=flavor, request_id=request_id), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


# The two shapes above as OpenAPI component schemas, for the document at /api/schema/ (gateway.openapi).
OPENAI_ERROR_REF = "#/components/schemas/Error"
FLAT_ERROR_REF = "#/components/schemas/FlatError"
ERROR_SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string", "description": "What went wrong and what to do about it"},
                    "type": {"type": "string", "description": "OpenAI's error family, e.g. invalid_request_error"},
                    "param": {"type": "string", "nullable": True, "description": "The parameter at fault"},
                    "code": {"type": "string", "description": "The stable machine-readable reason"},
                },
            }
        },
    },
    "FlatError": {
        "type": "object",
        "required": ["error", "code", "requestId"],
        "properties": {
            "error": {"type": "string", "description": "What went wrong and what to do about it"},
            "code": {"type": "string", "description": "The stable machine-readable reason"},
            "requestId": {"type": "string"},
        },
    },
}
