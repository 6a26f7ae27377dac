"""Line items as the ledger writes them: the columns of a new one, and what settling a pending one changes."""

from datetime import datetime
from decimal import Decimal

from billing.models import UsageLineItem
from gateway.core.money import CURRENCY, quantize_usd


class LedgerError(RuntimeError):
    """A step the ledger refuses because its caller is wrong (never a business refusal: see SpendLimitExceeded)."""


def line_item_values(
    *,
    request_id: str,
    created_at: datetime,
    organization_id: int,
    api_key_id: int | None,
    status: str,
    project_id: int | None = None,
    model: str = "",
    provider: str = "",
    size: str = "",
    quality: str = "",
    n: int = 0,
    end_user: str = "",
    unit_price: Decimal = Decimal(0),
    cost: Decimal = Decimal(0),
    error_code: str = "",
    http_status: int = 200,
    latency_ms: int = 0,
    provider_cost: Decimal = Decimal(0),
    tokens: dict | None = None,
    details: dict | None = None,
) -> dict:
    """The columns of a new line item, by field name."""
    return {
        "request_id": request_id,
        "created_at": created_at,
        "organization": organization_id,
        "api_key": api_key_id,
        "project": project_id,
        "status": status,
        "model": model,
        "provider": provider,
        "size": size,
        "quality": quality,
        "n": n,
        "end_user": end_user,
        "unit_price": quantize_usd(unit_price),
        "cost": quantize_usd(cost),
        "currency": CURRENCY,
        "error_code": error_code,
        "http_status": http_status,
        "latency_ms": latency_ms,
        "provider_cost": quantize_usd(provider_cost),
        "tokens": tokens or {},
        "details": details or {},
    }


def line_item_changes(
    *,
    status: str,
    cost: Decimal,
    http_status: int,
    latency_ms: int,
    error_code: str = "",
    provider: str | None = None,
    model: str | None = None,
    unit_price: Decimal | None = None,
    size: str | None = None,
    quality: str | None = None,
    provider_cost: Decimal | None = None,
    tokens: dict | None = None,
    details: dict | None = None,
) -> dict:
    """What settling a pending line item writes: what it finally cost and how it ended.

    `details` replaces what was stored (the caller holds what it opened the item with);
    `model`, `provider` and `unit_price` change when a fallback route was served by another
    model than the first; `size` and `quality` when the provider chose them ("auto").
    """
    if status != UsageLineItem.Status.SUCCEEDED and cost:
        raise LedgerError("Only a succeeded request can cost anything")
    changes: dict = {
        "status": status,
        "cost": quantize_usd(cost),
        "http_status": http_status,
        "latency_ms": latency_ms,
        "error_code": error_code,
    }
    optional = {
        "provider": provider,
        "model": model,
        "size": size,
        "quality": quality,
        "tokens": tokens,
        "details": details,
    }
    changes |= {name: value for name, value in optional.items() if value is not None}
    if unit_price is not None:
        changes["unit_price"] = quantize_usd(unit_price)
    if provider_cost is not None:
        changes["provider_cost"] = quantize_usd(provider_cost)
    return changes


# Settling touches a line item only while it is pending: the sweeper may have closed it as abandoned.
STILL_PENDING = {"status": UsageLineItem.Status.PENDING}
