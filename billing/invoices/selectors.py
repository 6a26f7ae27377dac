"""Reads for the invoice pages and the issue_invoices command."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Organization
from billing.models import BillingDetails, Invoice, InvoiceLine
from billing.periods import month_first, month_last, today_utc
from billing.usage.filter import UsageFilter
from gateway.core.money import usd_places


def invoices_list(*, organization: Organization) -> QuerySet[Invoice]:
    """The organization's invoices and credit notes, newest first."""
    return Invoice.objects.filter(organization=organization).select_related("corrects", "issued_by")


def invoice_for_month(*, organization: Organization, month: date) -> Invoice | None:
    return Invoice.objects.filter(
        organization=organization, kind=Invoice.Kind.INVOICE, period_start=month_first(month)
    ).first()


def last_closed_month() -> date:
    """The first day of the latest month that has ended (UTC): the one the "Issue invoice" button bills."""
    return month_first(month_first(today_utc(timezone.now())) - date.resolution)


def organizations_with_charges(*, month: date) -> list[Organization]:
    """Organizations charged anything in the month, by slug."""
    items = UsageFilter(organization_id=None, date_from=month_first(month), date_to=month_last(month)).line_items()
    charged = items.filter(cost__gt=0).values("organization_id")
    return list(Organization.objects.filter(pk__in=charged).order_by("slug"))


def billing_details_get(*, organization: Organization) -> BillingDetails:
    """The organization's billing details; an unsaved, empty row when nobody has entered any yet."""
    details = BillingDetails.objects.filter(organization=organization).first()
    return details if details is not None else BillingDetails(organization=organization)


@dataclass(frozen=True)
class ColumnPlaces:
    """The decimal places of an invoice's two money columns, so each column shows one number of places."""

    unit_price: int
    amount: int


def invoice_column_places(*, invoice: Invoice, lines: Sequence[InvoiceLine]) -> ColumnPlaces:
    amounts = [line.amount for line in lines] + [invoice.subtotal, invoice.tax_amount, invoice.total]
    return ColumnPlaces(unit_price=usd_places(line.unit_price for line in lines), amount=usd_places(amounts))
