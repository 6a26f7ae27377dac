"""Money is Decimal USD, kept to the micro-dollar; this is the one place that rounds."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MICRO = Decimal("0.000001")
CURRENCY = "USD"
# Columns that hold money: up to 99,999,999.999999 USD.
MONEY_DIGITS = 14
MONEY_PLACES = 6


def quantize_usd(amount: Decimal | int | str) -> Decimal:
    return Decimal(amount).quantize(MICRO, rounding=ROUND_HALF_UP)


def parse_usd(text: str) -> Decimal:
    """A non-negative USD amount from user input, or ValueError saying what is wrong."""
    try:
        amount = Decimal(text.strip().lstrip("$"))
    except (InvalidOperation, AttributeError):
        raise ValueError(f"'{text}' is not an amount in USD (for example 0.04)") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"'{text}' must be a non-negative amount in USD")
    if amount != quantize_usd(amount):
        raise ValueError(f"'{text}' has more than {MONEY_PLACES} decimal places")
    if amount >= Decimal(10) ** (MONEY_DIGITS - MONEY_PLACES):
        raise ValueError(f"'{text}' is too large")
    return quantize_usd(amount)


def format_usd(amount: Decimal) -> str:
    """The exact amount as a plain decimal string, without trailing zeros past the cent."""
    amount = quantize_usd(amount)
    text = format(amount.normalize(), "f")
    if "." not in text:
        return text + ".00"
    whole, frac = text.split(".")
    return f"{whole}.{frac.ljust(2, '0')}"
