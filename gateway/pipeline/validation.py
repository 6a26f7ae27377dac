"""Turning a request body into validated image parameters, against the model catalog.

Every refusal names the field (`param`) and says what is allowed.
"""

import json
from dataclasses import dataclass
from typing import Any

from gateway.core.errors import GatewayError, invalid_parameter
from providers.base import ImageParams

DEFAULT_MODEL = "dall-e-3"
RESPONSE_FORMATS = ("url", "b64_json")
MAX_END_USER_LENGTH = 256


@dataclass(frozen=True)
class CatalogEntry:
    """The parts of a ModelSpec validation needs, detached from the ORM."""

    name: str
    provider: str
    upstream_model: str
    supports_images: bool
    suggested_model: str
    sizes: tuple[str, ...]
    qualities: tuple[str, ...]
    styles: tuple[str, ...]
    default_size: str
    default_quality: str
    max_n: int
    max_prompt_length: int


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object in `body`, or a GatewayError saying why it is not one."""
    try:
        payload = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_parameter(f"The request body is not valid JSON: {exc}", None) from None
    if not isinstance(payload, dict):
        raise invalid_parameter("The request body must be a JSON object.", None)
    for field, value in payload.items():
        # Nothing recorded may hold one: PostgreSQL text and JSON cannot store U+0000.
        if _holds_nul(field) or _holds_nul(value):
            name = field.replace("\x00", "")
            raise invalid_parameter(f"'{name}' contains a NUL character (\\u0000), which is not allowed.", name)
    return payload


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    return False


def requested_model(payload: dict[str, Any]) -> str:
    model = payload.get("model", DEFAULT_MODEL)
    if model is None:
        return DEFAULT_MODEL
    if not isinstance(model, str) or not model.strip():
        raise invalid_parameter("'model' must be a non-empty string, for example \"dall-e-3\".", "model")
    return model.strip()


def _optional_string(payload: dict[str, Any], field: str) -> str | None:
    value = payload.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_parameter(f"'{field}' must be a string, got {type(value).__name__}.", field)
    return value


def _choice(payload: dict, field: str, allowed: tuple[str, ...], default: str, model: str) -> str:
    value = _optional_string(payload, field)
    if value is None or (value == "auto" and "auto" not in allowed):
        return default
    if value not in allowed:
        options = ", ".join(allowed) if allowed else "none"
        raise invalid_parameter(f"Invalid {field} '{value}' for model {model}. Allowed values: {options}.", field)
    return value


def check_model_usable(entry: CatalogEntry | None, model: str) -> CatalogEntry:
    if entry is None:
        raise GatewayError(
            404,
            "model_not_found",
            f"The model '{model}' does not exist. GET /v1/models lists the models.",
            param="model",
        )
    if not entry.supports_images:
        suggestion = entry.suggested_model or DEFAULT_MODEL
        raise GatewayError(
            400,
            "ACTION_NOT_SUPPORTED",
            f"Model {entry.name} does not support image_generation action. Use {suggestion} instead.",
            param="model",
        )
    return entry


def validate_params(payload: dict[str, Any], entry: CatalogEntry, *, provider_required: bool) -> ImageParams:
    prompt = payload.get("prompt")
    if prompt is None:
        raise invalid_parameter("'prompt' is required: a text description of the image.", "prompt")
    if not isinstance(prompt, str):
        raise invalid_parameter(f"'prompt' must be a string, got {type(prompt).__name__}.", "prompt")
    if not prompt.strip():
        raise invalid_parameter("'prompt' must not be empty.", "prompt")
    if len(prompt) > entry.max_prompt_length:
        raise invalid_parameter(
            f"'prompt' is {len(prompt)} characters; model {entry.name} allows at most {entry.max_prompt_length}.",
            "prompt",
        )

    n = payload.get("n", 1)
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int):
        raise invalid_parameter(f"'n' must be an integer, got {type(n).__name__}.", "n")
    if n < 1:
        raise invalid_parameter(f"'n' must be at least 1, got {n}.", "n")
    if n > entry.max_n:
        raise GatewayError(
            400,
            "IMAGE_REQUEST_TOO_LARGE",
            f"Requested number of images ({n}) exceeds maximum allowed ({entry.max_n})",
            param="n",
        )

    size = _choice(payload, "size", entry.sizes, entry.default_size, entry.name)
    quality = _choice(payload, "quality", entry.qualities, entry.default_quality, entry.name)
    style = _optional_string(payload, "style")
    if style is not None:
        if not entry.styles:
            raise invalid_parameter(f"Model {entry.name} does not accept a style.", "style")
        style = _choice(payload, "style", entry.styles, entry.styles[0], entry.name)
    response_format = _optional_string(payload, "response_format") or "url"
    if response_format not in RESPONSE_FORMATS:
        raise invalid_parameter(
            f"Invalid response_format '{response_format}'. Allowed values: url, b64_json.", "response_format"
        )
    end_user = _optional_string(payload, "user") or ""
    if len(end_user) > MAX_END_USER_LENGTH:
        raise invalid_parameter(f"'user' must be at most {MAX_END_USER_LENGTH} characters.", "user")

    provider = _optional_string(payload, "provider")
    if provider is None and provider_required:
        raise invalid_parameter(
            f"'provider' is required, for example \"{entry.provider}\" for model {entry.name}.", "provider"
        )
    if provider is not None and provider != entry.provider:
        raise invalid_parameter(
            f"Provider '{provider}' does not serve model {entry.name}; use \"{entry.provider}\".", "provider"
        )
    return ImageParams(
        model=entry.name,
        prompt=prompt,
        n=n,
        size=size,
        quality=quality,
        style=style or "",
        response_format=response_format,
        end_user=end_user,
        provider=entry.provider,
    )
