from decimal import Decimal

from django import template

from billing.money import format_usd

register = template.Library()


@register.filter
def usd(amount: Decimal) -> str:
    """An exact amount, as the CSV and the API show it."""
    return format_usd(amount)
