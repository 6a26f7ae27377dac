"""Template filters for the dashboard: money shown exactly (the one money library), and lookups for audit diffs."""

from decimal import Decimal

from django import template
from django.utils import timezone

from billing.periods import today_utc
from billing.usage.overview import KeySpend, key_spend_by_id
from gateway.core.money import format_usd

register = template.Library()


@register.filter
def usd(amount: Decimal | None) -> str:
    """'$0.04' — the exact Decimal, never through a float; a negative margin reads '-$0.01'."""
    if amount is None:
        return "—"
    return f"-${format_usd(-amount)}" if amount < 0 else f"${format_usd(amount)}"


@register.filter
def usd_amount(amount: Decimal, places: int | None = None) -> str:
    """'0.04' — the exact amount without the dollar sign: form inputs, and statements, which name the currency.

    `places`: the decimal places of the amount's column (statements show a column to one number of places).
    """
    return format_usd(amount, places=places)


@register.filter
def dict_get(mapping: dict | None, key: str):
    return (mapping or {}).get(key)


@register.simple_tag
def key_spend(keys) -> dict[int, KeySpend]:
    """`{% key_spend keys as spend %}`: each listed key's spend (the keys pages live in accounts, below billing,
    so the page asks here rather than its view importing billing)."""
    spend = key_spend_by_id(key_ids=[key.pk for key in keys], today=today_utc(timezone.now()))
    return {key.pk: spend.get(key.pk, KeySpend()) for key in keys}
