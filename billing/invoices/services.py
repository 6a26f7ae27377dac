"""Issuing invoices and credit notes, and editing who they are from and to.

Numbers come from the one issuer row's `next_number`, taken under `select_for_update` in the
same transaction that inserts the document, so numbers are sequential, never shared and
never skipped: a transaction that fails gives its number back with everything else.
"""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from accounts.audit import Actor, audit_record, audit_snapshot, audited_update
from accounts.models import Organization
from billing.invoices.pdf import invoice_pdf
from billing.invoices.selectors import billing_details_get, invoice_for_month
from billing.models import BillingDetails, Invoice, InvoiceIssuer, InvoiceLine
from billing.periods import month_first, month_last, next_month_first, today_utc
from billing.usage.statements import Statement, statement_build
from gateway.core.money import format_usd, quantize_usd

ISSUER_FIELDS = ("name", "address", "email", "tax_id", "tax_label", "tax_rate", "number_prefix")
BILLING_DETAILS_FIELDS = ("legal_name", "address", "email", "tax_id", "tax_rate")


class InvoiceError(Exception):
    """Why a document cannot be issued, in words for the person who asked."""


class InvoiceExists(InvoiceError):
    def __init__(self, invoice: Invoice):
        self.invoice = invoice
        super().__init__(
            f"{invoice.organization.slug} already has invoice {invoice.number} for {invoice.period_start:%B %Y}: "
            "an invoice is issued once; correct it with a credit note"
        )


@dataclass(frozen=True)
class Draft:
    """A document before it has a number: the invoice or credit note row and its lines, all unsaved."""

    document: Invoice
    lines: list[InvoiceLine]


def _actor(issued_by) -> Actor:
    return Actor.dashboard(issued_by) if issued_by is not None else Actor.command()


def issuer_get(*, lock: bool = False) -> InvoiceIssuer:
    """The one issuer, created from the INVOICE_* settings the first time anyone needs it."""
    issuers = InvoiceIssuer.objects.order_by("pk")
    if lock:
        issuers = issuers.select_for_update()
    issuer = issuers.first()
    if issuer is None:
        # get_or_create on the unique prefix: two first uses at once end with one row.
        InvoiceIssuer.objects.get_or_create(
            number_prefix=settings.INVOICE_NUMBER_PREFIX,
            defaults={
                "name": settings.INVOICE_ISSUER_NAME,
                "address": settings.INVOICE_ISSUER_ADDRESS,
                "email": settings.INVOICE_ISSUER_EMAIL,
                "tax_id": settings.INVOICE_ISSUER_TAX_ID,
                "tax_label": settings.INVOICE_TAX_LABEL,
                "tax_rate": settings.INVOICE_TAX_RATE,
            },
        )
        issuer = issuers.get()
    return issuer


def tax_of(amount: Decimal, rate_percent: Decimal) -> Decimal:
    return quantize_usd(amount * rate_percent / 100)


def _issuer_details(issuer: InvoiceIssuer) -> dict[str, str]:
    return {"name": issuer.name, "address": issuer.address, "email": issuer.email, "tax_id": issuer.tax_id}


def _customer_details(organization: Organization, details: BillingDetails) -> dict[str, str]:
    return {
        "name": details.legal_name or organization.name,
        "address": details.address,
        "email": details.email,
        "tax_id": details.tax_id,
        "organization": organization.slug,
    }


def _invoice_lines(statement: Statement) -> list[InvoiceLine]:
    """One line per model × size × quality that was charged (per project too, when the organization has
    projects, so each team's share is on the invoice); lines that cost nothing are left off."""
    lines: list[InvoiceLine] = []
    model_lines = statement.by_project_model if statement.has_projects else statement.by_model
    for model_line in model_lines:
        if model_line.totals.amount == 0:
            continue
        label = " · ".join(part for part in (model_line.model, model_line.size, model_line.quality) if part)
        lines.append(
            InvoiceLine(
                position=len(lines) + 1,
                description=f"Images: {label}" + (f" ({model_line.project})" if model_line.project else ""),
                model=model_line.model,
                size=model_line.size,
                quality=model_line.quality,
                project=model_line.project,
                quantity=model_line.totals.images,
                unit="image",
                unit_price=model_line.unit_price,
                amount=model_line.totals.amount,
            )
        )
    return lines


def _audit_snapshot(document: Invoice) -> dict[str, Any]:
    # The log is JSON: the PDF by its storage name.
    return {**audit_snapshot(document), "pdf": document.pdf.name}


def _number_and_save(draft: Draft, *, issuer: InvoiceIssuer) -> Invoice:
    """Give the draft the issuer's next number, write its PDF and insert it; the caller holds the issuer's lock."""
    document = draft.document
    document.issuer = issuer
    document.number = f"{issuer.number_prefix}-{issuer.next_number:06d}"
    document.issuer_details = _issuer_details(issuer)
    storage = document.pdf.storage
    name = f"invoices/{document.number}.pdf"
    # The number is ours until we commit, so a file already at its name was left by an attempt that rolled back.
    if storage.exists(name):
        storage.delete(name)
    document.pdf.name = storage.save(name, ContentFile(invoice_pdf(document, draft.lines)))
    try:
        with transaction.atomic():
            document.save()
            for line in draft.lines:
                line.invoice = document
            InvoiceLine.objects.bulk_create(draft.lines)
    except IntegrityError:
        storage.delete(document.pdf.name)
        raise
    InvoiceIssuer.objects.filter(pk=issuer.pk).update(next_number=F("next_number") + 1)
    return document


def closed_month_require(month: date) -> date:
    """The first day of `month`, or InvoiceError when the month has not ended (UTC): only closed months are billed."""
    first = month_first(month)
    if month_last(first) >= today_utc(timezone.now()):
        raise InvoiceError(f"{first:%B %Y} has not ended yet (UTC): only a closed month can be invoiced")
    return first


def invoice_issue(*, organization: Organization, month: date, issued_by=None) -> Invoice:
    """The month's invoice: one line per charged model × size × quality (× project) of its statement, taxed,
    numbered, frozen."""
    month = closed_month_require(month)
    if existing := invoice_for_month(organization=organization, month=month):
        raise InvoiceExists(existing)
    statement = statement_build(organization=organization, month=month)
    lines = _invoice_lines(statement)
    if not lines:
        raise InvoiceError(f"{organization.slug} was charged nothing in {statement.first:%B %Y}: nothing to invoice")
    subtotal = sum((line.amount for line in lines), Decimal(0))
    if subtotal != statement.total.amount:
        # Its lines are meant to hold every charge; an invoice that disagrees with its statement is never issued.
        raise InvoiceError(
            f"The statement's lines ({format_usd(subtotal)}) do not add up to its total "
            f"({format_usd(statement.total.amount)}) for {organization.slug}, {statement.first:%B %Y}"
        )
    details = billing_details_get(organization=organization)
    try:
        with transaction.atomic():
            issuer = issuer_get(lock=True)
            rate = details.tax_rate if details.tax_rate is not None else issuer.tax_rate
            tax = tax_of(subtotal, rate)
            draft = Draft(
                Invoice(
                    organization=organization,
                    kind=Invoice.Kind.INVOICE,
                    issue_date=today_utc(timezone.now()),
                    period_start=statement.first,
                    period_end=next_month_first(statement.first),
                    currency=statement.currency,
                    subtotal=subtotal,
                    tax_label=issuer.tax_label,
                    tax_rate=rate,
                    tax_amount=tax,
                    total=subtotal + tax,
                    customer_details=_customer_details(organization, details),
                    issued_by=issued_by,
                ),
                lines,
            )
            invoice = _number_and_save(draft, issuer=issuer)
            audit_record(
                actor=_actor(issued_by),
                action="invoice.issue",
                instance=invoice,
                organization=organization,
                after=_audit_snapshot(invoice),
            )
    except IntegrityError:
        # Someone issued the month's invoice between our check and our insert.
        existing = invoice_for_month(organization=organization, month=month)
        if existing is None:
            raise
        raise InvoiceExists(existing) from None
    return invoice


def credited_so_far(invoice: Invoice) -> Decimal:
    """How much of the invoice's subtotal its credit notes have taken back, as a positive amount."""
    return -(invoice.credit_notes.aggregate(total=Sum("subtotal"))["total"] or Decimal(0))


def credit_note_issue(*, invoice: Invoice, amount: Decimal, reason: str, issued_by=None) -> Invoice:
    """A credit note for `amount` (before tax) of `invoice`, at the invoice's tax rate, with its own number.

    The invoice and its credit notes together are what the customer owes: the subtotals and totals add up.
    """
    reason = reason.strip()
    if invoice.kind != Invoice.Kind.INVOICE:
        raise InvoiceError(f"{invoice.number} is a credit note: a credit note corrects an invoice")
    if not reason:
        raise InvoiceError("Say why the invoice is corrected: the reason is printed on the credit note")
    amount = quantize_usd(amount)
    if amount <= 0:
        raise InvoiceError("A credit note credits a positive amount")
    with transaction.atomic():
        # The issuer's lock also serializes credit notes, so two cannot together credit more than the invoice.
        issuer = issuer_get(lock=True)
        left = invoice.subtotal - credited_so_far(invoice)
        if amount > left:
            raise InvoiceError(f"At most {format_usd(left)} {invoice.currency} of {invoice.number} is left to credit")
        tax = tax_of(amount, invoice.tax_rate)
        draft = Draft(
            Invoice(
                organization=invoice.organization,
                kind=Invoice.Kind.CREDIT_NOTE,
                corrects=invoice,
                issue_date=today_utc(timezone.now()),
                period_start=invoice.period_start,
                period_end=invoice.period_end,
                currency=invoice.currency,
                subtotal=-amount,
                tax_label=invoice.tax_label,
                tax_rate=invoice.tax_rate,
                tax_amount=-tax,
                total=-(amount + tax),
                customer_details=invoice.customer_details,
                reason=reason,
                issued_by=issued_by,
            ),
            [
                InvoiceLine(
                    position=1,
                    description=f"Credit on invoice {invoice.number}: {reason}",
                    quantity=1,
                    unit="credit",
                    unit_price=-amount,
                    amount=-amount,
                )
            ],
        )
        credit_note = _number_and_save(draft, issuer=issuer)
        audit_record(
            actor=_actor(issued_by),
            action="invoice.credit_note",
            instance=credit_note,
            organization=invoice.organization,
            after=_audit_snapshot(credit_note),
        )
    return credit_note


def billing_details_update(*, organization: Organization, changes: dict[str, Any], actor: Actor) -> BillingDetails:
    """Change who the organization's next invoices are addressed to; issued ones keep what they printed."""
    details, _ = BillingDetails.objects.get_or_create(organization=organization)
    return audited_update(
        actor=actor, action="billing_details.update", instance=details, changes=changes, organization=organization
    )


def issuer_update(*, changes: dict[str, Any], actor: Actor) -> InvoiceIssuer:
    """Change the issuer's details for the next documents; the numbering sequence is never edited."""
    return audited_update(actor=actor, action="invoice_issuer.update", instance=issuer_get(), changes=changes)
