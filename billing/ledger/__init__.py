"""The spend ledger: every request's line item, what it holds against the spend caps, and what it finally costs.

One interface (base.Ledger: open a line item with its reservations, settle it, record a
refusal, replace a reservation for a fallback attempt, sweep expired reservations) and
two backends, chosen once by the database:
- postgres: one statement per request-path step, the cap rules in PL/pgSQL functions;
- portable: transactions with row locks (SQLite, the embedded mode).
The rules both apply (which caps apply, cap periods, a new counter's spend so far, the
refusal) are written once, in rules.py, and rendered into the PostgreSQL functions.
"""

from functools import cache

from django.db import connections

from billing.ledger.base import Ledger, OpenedLineItem
from billing.ledger.items import LedgerError, line_item_changes, line_item_values
from billing.ledger.portable import PortableLedger
from billing.ledger.postgres import PostgresLedger
from billing.ledger.rules import SpendLimitExceeded

__all__ = [
    "Ledger",
    "LedgerError",
    "OpenedLineItem",
    "PortableLedger",
    "PostgresLedger",
    "SpendLimitExceeded",
    "ledger",
    "line_item_changes",
    "line_item_values",
]


@cache
def ledger() -> Ledger:
    """The backend for this process's database, chosen on first use and kept."""
    return PostgresLedger() if connections["default"].vendor == "postgresql" else PortableLedger()
