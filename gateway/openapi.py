"""The OpenAPI document at /api/schema/: the usage API (drf-spectacular, from its views) and, merged in by
`image_endpoints_add`, the routes that are not DRF views: the image endpoints (a raw ASGI app,
gateway.pipeline.endpoint), their jobs and /v1/models (plain Django views).

These paths are written here by hand, once, from what the code answers: gateway.pipeline.generation (the image
body), gateway.pipeline.quote, gateway.pipeline.jobs.job_object, billing.selectors.model_objects and the two
error shapes of gateway.core.errors. tests/api/test_schemathesis.py holds the code to this document.
"""

from typing import Any

from gateway.core.errors import ERROR_SCHEMAS, FLAT_ERROR_REF, OPENAI_ERROR_REF, Flavor

_OBJECT: dict[str, Any] = {"type": "object"}
_STRING: dict[str, Any] = {"type": "string"}
_INTEGER: dict[str, Any] = {"type": "integer"}
_USD = {"type": "string", "description": 'An exact decimal amount in USD, e.g. "0.04"'}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# What the image endpoints take and answer. OpenAI's shapes (the official SDK reads them), plus the gateway's own
# `perf` (what the call cost and took) and async jobs. Properties a model declares of its own (background,
# output_format, seed...) pass through: `additionalProperties`, checked against the catalog by the pipeline.
COMPONENTS: dict[str, dict[str, Any]] = {
    "ImageGenerationRequest": {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "prompt": {
                "type": "string",
                "minLength": 1,
                "description": "What to draw; each model has its maximum length",
            },
            "model": {"type": "string", "default": "dall-e-3", "description": "A model of GET /v1/models"},
            "n": {"type": "integer", "minimum": 1, "default": 1, "description": "Images, up to the model's max_n"},
            "size": {"type": "string", "description": "WIDTHxHEIGHT of the model's sizes or size rule, or auto"},
            "quality": {"type": "string", "description": "One of the model's qualities"},
            "style": {"type": "string", "description": "One of the model's styles"},
            "response_format": {"type": "string", "enum": ["url", "b64_json"]},
            "user": {"type": "string", "maxLength": 256, "description": "Your end user, for limits and reports"},
            "safety_identifier": {"type": "string", "maxLength": 256, "description": "The end user, when no user"},
            "provider": {"type": "string", "description": "Flat flavour: the provider the model must be served by"},
            "stream": {"type": "boolean", "description": "Server-sent events, on models with streams: true"},
            "partial_images": {"type": "integer", "minimum": 0, "maximum": 3},
            "callback_url": {
                "type": "string",
                "description": "With Prefer: respond-async, a public http(s) URL that receives the finished job",
            },
        },
        "additionalProperties": True,
    },
    "ImageEditRequest": {
        "type": "object",
        "required": ["image", "prompt"],
        "properties": {
            "image": {"type": "string", "format": "binary", "description": "PNG, JPEG or WebP; or several image[]"},
            "mask": {"type": "string", "format": "binary", "description": "A PNG with transparency"},
            "prompt": _STRING,
            "model": _STRING,
            "n": _STRING,
            "size": _STRING,
            "quality": _STRING,
            "response_format": {"type": "string", "enum": ["url", "b64_json"]},
            "user": _STRING,
        },
        "additionalProperties": True,
    },
    "Image": {
        "type": "object",
        "properties": {
            "url": {"type": "string", "description": "A signed URL of the image, expiring"},
            "b64_json": {"type": "string", "description": "The image, base64-encoded"},
            "revised_prompt": _STRING,
        },
    },
    "Perf": {
        "type": "object",
        "description": "The gateway's account of the call",
        "required": ["request_id", "provider", "model_used", "n", "cost_usd", "latency_ms"],
        "properties": {
            "request_id": _STRING,
            "provider": _STRING,
            "model_used": _STRING,
            "size": _STRING,
            "quality": _STRING,
            "n": _INTEGER,
            "cost_usd": _USD,
            "latency_ms": _INTEGER,
            "cached": {"type": "boolean"},
            "attempts": {"type": "array", "items": _OBJECT, "description": "Each fallback attempt, when several"},
        },
    },
    "ImagesResponse": {
        "type": "object",
        "required": ["created", "data", "perf"],
        "properties": {
            "created": {"type": "integer", "description": "Unix seconds"},
            "data": {"type": "array", "items": _ref("Image")},
            "size": _STRING,
            "quality": _STRING,
            "background": _STRING,
            "output_format": _STRING,
            "usage": {"type": "object", "description": "Token usage, for models priced per token"},
            "perf": _ref("Perf"),
        },
    },
    "ImageJob": {
        "type": "object",
        "required": ["id", "object", "status", "created_at", "model", "request_id"],
        "properties": {
            "id": {"type": "string", "description": "imgjob_…, or a request id for a call whose client left"},
            "object": {"type": "string", "enum": ["image.job"]},
            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
            "created_at": _INTEGER,
            "started_at": _INTEGER,
            "finished_at": _INTEGER,
            "expires_at": _INTEGER,
            "model": _STRING,
            "request_id": _STRING,
            "http_status": {"type": "integer", "description": "What a synchronous call would have answered"},
            "created": _INTEGER,
            "data": {"type": "array", "items": _ref("Image")},
            "usage": _OBJECT,
            "perf": _ref("Perf"),
            "error": {"type": "object", "nullable": True, "description": "A failed job's error, in its flavour"},
            "callback": {
                "type": "object",
                "properties": {
                    "url": _STRING,
                    "attempts": _INTEGER,
                    "delivered_at": {"type": "integer", "nullable": True},
                    "last_error": {"type": "string", "nullable": True},
                },
            },
        },
    },
    "ImageJobList": {
        "type": "object",
        "required": ["object", "data", "first_id", "last_id", "has_more"],
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": _ref("ImageJob")},
            "first_id": {"type": "string", "nullable": True},
            "last_id": {"type": "string", "nullable": True},
            "has_more": {"type": "boolean"},
        },
    },
    "ImageQuote": {
        "type": "object",
        "required": ["object", "model", "n", "currency", "admitted", "refusal", "caps"],
        "properties": {
            "object": {"type": "string", "enum": ["image.quote"]},
            "model": _STRING,
            "size": _STRING,
            "quality": _STRING,
            "n": _INTEGER,
            "price_basis": {"type": "string", "enum": ["per_image", "per_token"]},
            "currency": _STRING,
            "caps": {"type": "array", "items": _OBJECT, "description": "Each spend cap that applies, with its room"},
            "rate_limits": {"type": "object", "nullable": True},
            "admitted": {"type": "boolean", "description": "Whether a call with this body would be admitted now"},
            "refusal": {
                "type": "object",
                "nullable": True,
                "description": "The error such a call would get now: its `status` and its body",
            },
        },
        "additionalProperties": True,
    },
    "Model": {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {
            "id": _STRING,
            "object": {"type": "string", "enum": ["model"]},
            "created": _INTEGER,
            "owned_by": {"type": "string", "description": "The provider"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": _ref("Model")},
        },
    },
}

# The statuses each kind of route answers besides success, and why.
_WHY = {
    "400": "The request is malformed or a parameter is not allowed; `param` names it",
    "401": "No API key, or an invalid, expired or revoked one",
    "402": "Flat flavour: a spend cap has no room for the request",
    "403": "The key may not do this (a read-only usage key, a suspended organization, a model the key excludes)",
    "404": "No such model, or no such job for this key",
    "405": "Another method: the Allow header says which",
    "409": "The first request with this Idempotency-Key is still in flight; a job no longer cancellable",
    "413": "The body is over the size limit",
    "415": "An edit must be multipart/form-data",
    "422": "The request cannot be served as asked: an Idempotency-Key reused with another body, no price configured",
    "429": "A rate limit (Retry-After says when), or on /v1/ a spend cap (insufficient_quota)",
    "502": "The provider failed; nothing was charged",
    "503": "The gateway cannot serve now (database or rate limiter unavailable, provider's breaker open)",
    "504": "The provider did not answer within the deadline; nothing was charged",
}
_IMAGE_ERRORS = ("400", "401", "402", "403", "404", "405", "409", "413", "415", "422", "429", "502", "503", "504")
_READ_ERRORS = ("400", "401", "403", "404", "405", "429", "503")


def _errors(flavor: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    schema = {"$ref": OPENAI_ERROR_REF if flavor == Flavor.OPENAI else FLAT_ERROR_REF}
    return {
        status: {"description": _WHY[status], "content": {"application/json": {"schema": schema}}}
        for status in statuses
        if status != "402" or flavor == Flavor.FLAT
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ASYNC = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": "respond-async: answer 202 with a job at once, and do the call in the background",
    "schema": {"type": "string"},
}
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A repeat with the same key and body replays the first answer",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def _image_operation(flavor: str, noun: str) -> dict[str, Any]:
    generation = noun == "generations"
    body = (
        {"application/json": {"schema": _ref("ImageGenerationRequest")}}
        if generation
        else {"multipart/form-data": {"schema": _ref("ImageEditRequest")}}
    )
    images = _ref("ImagesResponse")
    return {
        "post": {
            "operationId": f"images_{noun}_{flavor}",
            "summary": f"Create images ({'from a prompt' if generation else 'by editing images'})",
            "tags": ["images"],
            "security": [{"apiKey": []}],
            "parameters": [_ASYNC, _IDEMPOTENCY],
            "requestBody": {"required": True, "content": body},
            "responses": {
                "200": {
                    "description": "The images; with stream: true, server-sent events",
                    "content": {"application/json": {"schema": images}, "text/event-stream": {"schema": _STRING}},
                },
                "202": _json(_ref("ImageJob"), "With Prefer: respond-async, the job (Location: its URL)"),
                **_errors(flavor, _IMAGE_ERRORS),
            },
        }
    }


def _quote_operation(flavor: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"images_quote_{flavor}",
            "summary": "Price a generation (or, as multipart, an edit) and say whether it would be admitted now",
            "tags": ["images"],
            "security": [{"apiKey": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _ref("ImageGenerationRequest")},
                    "multipart/form-data": {"schema": _ref("ImageEditRequest")},
                },
            },
            "responses": {
                "200": _json(_ref("ImageQuote"), "The price and the admission; nothing is consumed"),
                **_errors(flavor, ("400", "401", "403", "404", "405", "413", "415", "422", "429", "503")),
            },
        }
    }


def _jobs_paths(prefix: str, flavor: str) -> dict[str, Any]:
    job_id = {"name": "id", "in": "path", "required": True, "schema": _STRING, "description": "imgjob_…"}
    listing = [
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 100},
        },
        {"name": "after", "in": "query", "required": False, "schema": _STRING, "description": "A job id"},
    ]
    return {
        f"{prefix}/images/jobs": {
            "get": {
                "operationId": f"image_jobs_list_{flavor}",
                "summary": "The key's image jobs, newest first",
                "tags": ["images"],
                "security": [{"apiKey": []}],
                "parameters": listing,
                "responses": {"200": _json(_ref("ImageJobList"), "A page of jobs"), **_errors(flavor, _READ_ERRORS)},
            }
        },
        f"{prefix}/images/jobs/{{id}}": {
            "get": {
                "operationId": f"image_job_get_{flavor}",
                "summary": "A job and, once finished, its answer",
                "tags": ["images"],
                "security": [{"apiKey": []}],
                "parameters": [job_id],
                "responses": {"200": _json(_ref("ImageJob"), "The job"), **_errors(flavor, _READ_ERRORS)},
            },
            "delete": {
                "operationId": f"image_job_cancel_{flavor}",
                "summary": "Cancel a queued job: nothing is charged",
                "tags": ["images"],
                "security": [{"apiKey": []}],
                "parameters": [job_id],
                "responses": {
                    "200": _json(_ref("ImageJob"), "The cancelled job"),
                    **_errors(flavor, (*_READ_ERRORS, "409")),
                },
            },
        },
    }


def _paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for prefix, flavor in (("/v1", Flavor.OPENAI), ("/api", Flavor.FLAT)):
        paths[f"{prefix}/images/generations"] = _image_operation(flavor, "generations")
        paths[f"{prefix}/images/edits"] = _image_operation(flavor, "edits")
        paths[f"{prefix}/images/quote"] = _quote_operation(flavor)
        paths |= _jobs_paths(prefix, flavor)
    model = {"name": "model", "in": "path", "required": True, "schema": _STRING}
    paths["/v1/models"] = {
        "get": {
            "operationId": "models_list",
            "summary": "The image models this key may use",
            "tags": ["models"],
            "security": [{"apiKey": []}],
            "responses": {"200": _json(_ref("ModelList"), "OpenAI's list"), **_errors(Flavor.OPENAI, _READ_ERRORS)},
        }
    }
    paths["/v1/models/{model}"] = {
        "get": {
            "operationId": "models_retrieve",
            "summary": "One of them",
            "tags": ["models"],
            "security": [{"apiKey": []}],
            "parameters": [model],
            "responses": {"200": _json(_ref("Model"), "OpenAI's model object"), **_errors(Flavor.OPENAI, _READ_ERRORS)},
        }
    }
    return paths


def image_endpoints_add(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the error shapes, and the routes that are not DRF views."""
    result.setdefault("components", {}).setdefault("schemas", {}).update({**ERROR_SCHEMAS, **COMPONENTS})
    result["paths"] = {**result.get("paths", {}), **_paths()}
    return result
