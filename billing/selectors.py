"""Reads that cross relations: the model catalog as API clients see it (GET /v1/models and /v1/models/{id}),
and the spend of API keys for their lists."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db.models import Exists, OuterRef, Q, Sum

from accounts.callers import Caller
from billing.models import TokenPrice, UsageLineItem
from billing.periods import day_start, month_first
from providers.models import ModelSpec


@dataclass(frozen=True)
class KeySpend:
    month: Decimal = Decimal(0)
    total: Decimal = Decimal(0)


def key_spend_by_id(*, key_ids: Iterable[int], today: date) -> dict[int, KeySpend]:
    """What each key spent this UTC month and in total, summed from its line items as the overview sums spend.

    One query for the whole list; a key without line items is absent (its spend is KeySpend()).
    """
    rows = (
        UsageLineItem.objects.filter(api_key_id__in=list(key_ids))
        .values("api_key_id")
        .annotate(
            month=Sum("cost", filter=Q(created_at__gte=day_start(month_first(today)))),
            total=Sum("cost"),
        )
        .order_by()
    )
    return {row["api_key_id"]: KeySpend(row["month"] or Decimal(0), row["total"]) for row in rows}


def model_objects(*, caller: Caller, today: date, name: str | None = None) -> list[dict]:
    """The image models `caller` may use (only `name`, when given), as OpenAI's model objects.

    Besides OpenAI's fields, each says what the gateway will accept and how it prices: sizes (a list and/or
    a rule), qualities, styles, further parameters, max n, whether it edits (how many images, a mask) and
    streams, price basis, and the model's status upstream on `today` with its shutdown date and successor.
    """
    specs = ModelSpec.objects.filter(is_active=True, supports_images=True)
    if name is not None:
        specs = specs.filter(name=name)
    specs = specs.annotate(per_token=Exists(TokenPrice.objects.filter(model=OuterRef("pk")))).order_by("name")
    return [
        {
            "id": spec.name,
            "object": "model",
            "created": 0,
            "owned_by": spec.provider,
            "sizes": spec.sizes,
            "size_rule": spec.size_rule,
            "qualities": spec.qualities,
            "styles": spec.styles,
            "parameters": spec.parameters,
            "max_n": spec.max_n,
            "edits": spec.edit or None,
            "streams": spec.streams,
            "price_basis": "per_token" if spec.per_token else "per_image",
            "status": spec.effective_status(today),
            "shutdown_date": spec.shutdown_date.isoformat() if spec.shutdown_date else None,
            "successor": spec.successor or None,
        }
        for spec in specs
        if caller.allows_model(spec.name)
    ]
