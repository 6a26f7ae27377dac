"""Names retired upstream, served by their successors so that existing clients keep working.

The request is validated and priced as the retired model (its own sizes, qualities and
price configs), then translated into what the successor takes: a size it allows (the
nearest one), the equivalent quality, the parameters it shares; what it cannot take
(dall-e-3's `style`) is dropped and noted on the line item. An operator can switch a
successor off: the name then answers 404 naming the successor.
"""

from dataclasses import dataclass, replace
from datetime import date

from gateway.core.errors import GatewayError
from gateway.pipeline.validation import CatalogEntry
from providers.base import ImageParams
from providers.models import ModelSpec
from providers.sizes import AUTO, SizeRule, size_parse

# dall-e-3's qualities in the terms of today's models.
QUALITY_EQUIVALENTS = {"standard": "medium", "hd": "high"}


@dataclass(frozen=True)
class Translation:
    params: ImageParams
    # What changed on the way, e.g. {"size": "256x256 → 816x816", "style": "vivid dropped"}.
    changes: dict[str, str]


def is_retired(entry: CatalogEntry, today: date) -> bool:
    return entry.status_on(today) == ModelSpec.Status.RETIRED


def retired_refusal(entry: CatalogEntry) -> GatewayError:
    """The answer for a retired name whose successor is switched off (or missing)."""
    if entry.successor:
        message = (
            f"The model '{entry.name}' has been retired by its provider. Use {entry.successor} instead "
            f"(GET /v1/models/{entry.successor} describes it)."
        )
    else:
        message = f"The model '{entry.name}' has been retired by its provider. GET /v1/models lists the models."
    return GatewayError(404, "model_not_found", message, param="model")


def _size_for(size: str, successor: CatalogEntry) -> str:
    if size == AUTO or size in successor.sizes:
        return size
    dimensions = size_parse(size)
    rule: SizeRule | None = successor.size_rule
    if dimensions is not None and rule is not None:
        return "{}x{}".format(*rule.nearest(*dimensions)) if not rule.allows(*dimensions) else size
    if dimensions is None or not successor.fixed_sizes:
        return successor.default_size

    def distance(candidate: str) -> float:
        width, height = size_parse(candidate) or (1, 1)
        assert dimensions is not None
        return abs(width / height - dimensions[0] / dimensions[1]) + abs(
            width * height / (dimensions[0] * dimensions[1]) - 1
        )

    return min(successor.fixed_sizes, key=distance)


def _quality_for(quality: str, successor: CatalogEntry) -> str:
    if quality in successor.qualities:
        return quality
    equivalent = QUALITY_EQUIVALENTS.get(quality, "")
    return equivalent if equivalent in successor.qualities else successor.default_quality


def successor_params(params: ImageParams, successor: CatalogEntry) -> Translation:
    """The request as the successor takes it."""
    changes: dict[str, str] = {}
    size = _size_for(params.size, successor)
    if size != params.size:
        changes["size"] = f"{params.size} → {size}"
    quality = _quality_for(params.quality, successor)
    if quality != params.quality:
        changes["quality"] = f"{params.quality} → {quality}"
    style = params.style if params.style in successor.styles else ""
    if params.style and not style:
        changes["style"] = f"{params.style} dropped"
    options = {}
    for name, value in params.options.items():
        allowed = successor.parameters_for(params.action).get(name)
        if allowed is not None and (isinstance(allowed, dict) or value in allowed):
            options[name] = value
        else:
            changes[name] = f"{value} dropped"
    translated = replace(
        params,
        model=successor.name,
        size=size,
        quality=quality,
        style=style,
        n=min(params.n, successor.max_n),
        provider=successor.provider,
        options=options,
    )
    return Translation(params=translated, changes=changes)
