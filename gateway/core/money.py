"""Money is Decimal USD, kept to the micro-dollar; this is the one place that rounds."""

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MICRO = Decimal("0.000001")
CURRENCY = "USD"
# Columns that hold money: up to 99,999,999.999999 USD.
MONEY_DIGITS = 14
MONEY_PLACES = 6
CENT_PLACES = 2


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


def usd_places(amounts: Iterable[Decimal]) -> int:
    """The decimal places that show every amount exactly: at least the cent, at most the micro-dollar.

    For a column of amounts, so that all of them are shown to the same places (format_usd's `places`).
    """
    # Quantized amounts are finite, so each exponent is an int.
    places = [-int(quantize_usd(amount).normalize().as_tuple().exponent) for amount in amounts]
    return min(max([CENT_PLACES, *places]), MONEY_PLACES)


def format_usd(amount: Decimal, *, places: int | None = None) -> str:
    """The exact amount as a plain decimal string: to `places` decimals, else without trailing zeros past the cent.

    `places` (from usd_places) must show the amount exactly; it is never a rounding.
    """
    places = usd_places([amount]) if places is None else places
    text = format(quantize_usd(amount), "f")
    whole, frac = text.split(".")
    if frac[places:].strip("0"):
        raise ValueError(f"{amount} needs more than {places} decimal places")
    return f"{whole}.{frac[:places]}"
