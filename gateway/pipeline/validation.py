"""Turning a request body into validated image parameters, against the model catalog.

Every refusal names the field (`param`) and says what is allowed.
"""

import json
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from gateway.core.errors import GatewayError, invalid_parameter
from providers.base import EDIT, GENERATE, ImageParams, InputImage
from providers.models import ModelSpec, model_status
from providers.sizes import AUTO, SizeRule, size_parse

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
    default_response_format: str = "url"
    size_rule: SizeRule | None = None
    size_classes: tuple[dict[str, Any], ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    refuses_auto: bool = False
    output_tokens: dict[str, Any] = field(default_factory=dict)
    list_rates: dict[str, Any] = field(default_factory=dict)
    status: str = ModelSpec.Status.LIVE
    shutdown_date: date | None = None
    successor: str = ""
    successor_enabled: bool = True
    # {"max_images": N, "mask": bool, "parameters": {...}} when it edits images; empty when it cannot.
    edit: dict[str, Any] = field(default_factory=dict)
    streams: bool = False

    def parameters_for(self, action: str) -> dict[str, Any]:
        """The further parameters the model takes for this action: an edit adds its edit-only ones."""
        if action == EDIT:
            return {**self.parameters, **self.edit.get("parameters", {})}
        return self.parameters

    def status_on(self, today: date) -> str:
        return model_status(self.status, self.shutdown_date, today)

    @property
    def fixed_sizes(self) -> tuple[str, ...]:
        """The listed sizes a provider choosing `auto` may pick from."""
        return tuple(size for size in self.sizes if size != AUTO)

    @property
    def fixed_qualities(self) -> tuple[str, ...]:
        return tuple(quality for quality in self.qualities if quality != AUTO)


# The request fields every model understands; any other must be one of the model's `parameters`.
_COMMON_FIELDS = frozenset(
    {
        "model",
        "prompt",
        "n",
        "size",
        "quality",
        "style",
        "response_format",
        "user",
        "safety_identifier",
        "provider",
        "stream",
        "partial_images",
    }
)
# Streamed partial images per image, as OpenAI takes them.
MAX_PARTIAL_IMAGES = 3


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object in `body`, or a GatewayError saying why it is not one."""
    depth_refuse(body)
    try:
        payload = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_parameter(f"The request body is not valid JSON: {exc}", None) from None
    if not isinstance(payload, dict):
        raise invalid_parameter("The request body must be a JSON object.", None)
    text_refuse(payload)
    return payload


# Deeper than any image request needs (the deepest parameter is an object in an object), shallow enough that
# nothing downstream (JSON decoding, hashing, storing) can recurse its way into a RecursionError.
MAX_JSON_DEPTH = 32
# Far more arrays and objects than any image request holds; a body with more is refused before it is decoded,
# so a megabyte of brackets costs a few milliseconds rather than a scan in Python.
MAX_JSON_CONTAINERS = 1000
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")


def depth_refuse(body: bytes) -> None:
    """Refuse (400) a JSON body nested deeper than MAX_JSON_DEPTH, or with more than MAX_JSON_CONTAINERS arrays and
    objects, before it is decoded: only brackets outside strings count."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return  # every request a client really sends: too few brackets to nest that deep
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    if len(brackets) > 2 * MAX_JSON_CONTAINERS:
        raise GatewayError(
            400,
            "invalid_json",
            f"The request body holds more than {MAX_JSON_CONTAINERS} JSON arrays or objects; "
            "an image request needs a few.",
        )
    depth = 0
    for bracket in brackets:
        depth += 1 if bracket in b"[{" else -1
        if depth > MAX_JSON_DEPTH:
            raise GatewayError(
                400,
                "invalid_json",
                f"The request body nests JSON arrays or objects more than {MAX_JSON_DEPTH} levels deep; "
                "an image request needs two at most.",
            )


def text_refuse(payload: dict[str, Any]) -> None:
    """Refuse (400) the first parameter whose name or text holds what no text column can store.

    U+0000 (PostgreSQL text and JSON cannot store it) and a lone UTF-16 surrogate ("\\ud800" is valid JSON
    but no valid UTF-8: encoding it to store, log or hash the request would fail), in a JSON body or a form.
    """
    for key, value in payload.items():
        problem = _unstorable(key) or _unstorable(value)
        if problem:
            name = _printable(key)
            raise invalid_parameter(f"'{name}' contains {problem}.", name)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _unstorable(value: Any) -> str:
    """What `value` (a parameter's name or value, walked without recursion) holds that cannot be stored, or ""."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "a NUL character (\\u0000), which is not allowed"
            if _SURROGATE.search(item):
                return "a lone UTF-16 surrogate (\\ud800-\\udfff), which is not valid Unicode: send UTF-8 text"
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
    return ""


def _printable(name: str) -> str:
    """A parameter's name as a message can show it: without the characters that made it refused."""
    return _SURROGATE.sub("\ufffd", name.replace("\x00", ""))


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
    if value is None or (value == AUTO and AUTO not in allowed):
        return default
    if value not in allowed:
        options = ", ".join(allowed) if allowed else "none"
        raise invalid_parameter(f"Invalid {field} '{value}' for model {model}. Allowed values: {options}.", field)
    return value


def _size(payload: dict, entry: CatalogEntry) -> str:
    """The requested size: one of the model's sizes, or any size its rule allows."""
    rule = entry.size_rule
    if rule is None:
        return _choice(payload, "size", entry.sizes, entry.default_size, entry.name)
    value = _optional_string(payload, "size")
    if value is None:
        return entry.default_size
    if value in entry.sizes:
        return value
    dimensions = size_parse(value)
    if dimensions is not None and rule.allows(*dimensions):
        return value
    listed = ", ".join(entry.sizes)
    shown = value if len(value) <= 20 else value[:20] + "…"
    if dimensions is None:
        reason = "a size is WIDTHxHEIGHT in pixels, e.g. 1536x1024"
    else:
        reason = rule.describe()
    raise invalid_parameter(f"Size {shown} is not allowed for {entry.name}: {reason}; or use one of {listed}.", "size")


def _auto_refused(entry: CatalogEntry, field: str, value: str) -> str:
    """Under the refuse policy an omitted size or quality takes the first listed choice; `auto` asked for is 400."""
    if value != AUTO or not entry.refuses_auto:
        return value
    raise invalid_parameter(
        f"{field}=auto is not accepted for {entry.name} on this gateway: its price is only known after the call. "
        f"Set an explicit {field}.",
        field,
    )


def _options(payload: dict[str, Any], entry: CatalogEntry, action: str) -> dict[str, Any]:
    """The model's further parameters as requested, each checked; a parameter the model does not take is 400."""
    options: dict[str, Any] = {}
    parameters = entry.parameters_for(action)
    for name, value in payload.items():
        if name in _COMMON_FIELDS or value is None:
            continue
        allowed = parameters.get(name)
        if allowed is None:
            accepted = ", ".join(sorted(parameters)) or "none beyond the common ones"
            raise invalid_parameter(
                f"Unknown parameter '{name}' for model {entry.name}. Its further parameters: {accepted}.", name
            )
        if isinstance(allowed, dict):
            low, high = int(allowed["min"]), int(allowed["max"])
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise invalid_parameter(
                    f"'{name}' must be an integer from {low} to {high} for model {entry.name}.", name
                )
        elif value not in allowed:
            raise invalid_parameter(
                f"Invalid {name} {value!r} for model {entry.name}. Allowed values: {', '.join(allowed)}.", name
            )
        options[name] = value
    _options_consistent(options, entry)
    return options


def _options_consistent(options: dict[str, Any], entry: CatalogEntry) -> None:
    """The combinations OpenAI's image models refuse, refused here before anything is spent."""
    output_format = options.get("output_format", "png")
    if options.get("background") == "transparent" and output_format not in ("png", "webp"):
        raise invalid_parameter(
            f"background 'transparent' needs output_format png or webp, not {output_format}.", "background"
        )
    if "output_compression" in options and output_format not in ("jpeg", "webp"):
        raise invalid_parameter(
            f"output_compression applies to output_format jpeg or webp only, not {output_format}.",
            "output_compression",
        )


def check_model_usable(
    entry: CatalogEntry | None, model: str, action: str = GENERATE, editor: str = ""
) -> CatalogEntry:
    """The model exists and can do `action`; `editor` is the model to suggest when it cannot edit."""
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
    if action == EDIT and not entry.edit:
        suggestion = f" Use {editor} instead." if editor else ""
        raise GatewayError(
            400,
            "ACTION_NOT_SUPPORTED",
            f"Model {entry.name} does not support image_edit action.{suggestion}",
            param="model",
        )
    return entry


def _edit_inputs(entry: CatalogEntry, images: tuple[InputImage, ...], mask: InputImage | None) -> None:
    """An edit's images fit what the model takes: how many, and whether a mask."""
    if not images:
        raise invalid_parameter(
            "'image' is required: the image(s) to edit, as one file or several as image[].", "image"
        )
    most = int(entry.edit.get("max_images", 1))
    if len(images) > most:
        raise invalid_parameter(
            f"Model {entry.name} edits at most {most} input image{'s' if most != 1 else ''}; got {len(images)}.",
            "image",
        )
    if mask is not None and not entry.edit.get("mask"):
        raise invalid_parameter(f"Model {entry.name} does not take a mask: omit 'mask'.", "mask")


def _streaming(payload: dict[str, Any], entry: CatalogEntry) -> tuple[bool, int]:
    """(stream, partial_images) as requested; a model that cannot stream refuses `stream: true`."""
    stream = payload.get("stream")
    if stream not in (None, True, False):
        raise invalid_parameter(f"'stream' must be true or false, got {stream!r}.", "stream")
    partial_images = payload.get("partial_images")
    if partial_images is None:
        partial_images = 0
    if (
        isinstance(partial_images, bool)
        or not isinstance(partial_images, int)
        or not 0 <= partial_images <= MAX_PARTIAL_IMAGES
    ):
        raise invalid_parameter(
            f"'partial_images' must be an integer from 0 to {MAX_PARTIAL_IMAGES}, got {partial_images!r}.",
            "partial_images",
        )
    if stream and not entry.streams:
        raise invalid_parameter(
            f"Model {entry.name} cannot stream partial images: omit 'stream', or use a model that streams "
            '(GET /v1/models says which: "streams": true).',
            "stream",
        )
    return bool(stream), partial_images if stream else 0


def end_user_of(payload: dict[str, Any]) -> str:
    """The end user a request names (`user`, else `safety_identifier`), as recorded even on a refusal; never raises."""
    for name in ("user", "safety_identifier"):
        value = payload.get(name)
        if isinstance(value, str) and value:
            return value[:MAX_END_USER_LENGTH]
    return ""


def end_user_require(payload: dict[str, Any], *, required: bool) -> None:
    """Refuse a request that names no end user when its organization requires one, so none escapes their limits."""
    if required and not end_user_of(payload):
        raise GatewayError(
            400,
            "end_user_required",
            "This organization requires every image request to name its end user: send 'user' "
            "(or 'safety_identifier') with a stable id of the person the image is for.",
            param="user",
        )


def validate_params(
    payload: dict[str, Any],
    entry: CatalogEntry,
    *,
    provider_required: bool,
    images: tuple[InputImage, ...] = (),
    mask: InputImage | None = None,
    action: str = GENERATE,
) -> ImageParams:
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

    size = _auto_refused(entry, "size", _size(payload, entry))
    quality = _auto_refused(
        entry, "quality", _choice(payload, "quality", entry.qualities, entry.default_quality, entry.name)
    )
    options = _options(payload, entry, action)
    stream, partial_images = _streaming(payload, entry)
    if action == EDIT:
        _edit_inputs(entry, images, mask)
    if options.get("output_format") == "svg" and n > 1:
        raise invalid_parameter(f"output_format svg makes one image per request on {entry.name}: set n to 1.", "n")
    style = _optional_string(payload, "style")
    if style is not None:
        if not entry.styles:
            raise invalid_parameter(f"Model {entry.name} does not accept a style.", "style")
        style = _choice(payload, "style", entry.styles, entry.styles[0], entry.name)
    response_format = _optional_string(payload, "response_format") or entry.default_response_format
    if response_format not in RESPONSE_FORMATS:
        raise invalid_parameter(
            f"Invalid response_format '{response_format}'. Allowed values: url, b64_json.", "response_format"
        )
    # OpenAI now asks for `safety_identifier` as the end user's id; `user` is its older name.
    end_user = _optional_string(payload, "user") or _optional_string(payload, "safety_identifier") or ""
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
        options=options,
        action=action,
        images=images,
        mask=mask,
        stream=stream,
        partial_images=partial_images,
    )
