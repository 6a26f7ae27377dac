"""Invoice pages: the list with the "Issue invoice" button, each invoice as HTML and PDF, credit notes,
the organization's billing details, and the issuer (staff).

Who may do what (outsiders get 404 everywhere, through accounts.access):
- read invoices and issue last month's: finance roles (owner, admin, finance) and staff; members 403;
- issue a credit note and edit the billing details: owners, finance and staff, who answer for the money the
  documents ask for; admins read the billing details and get 403 on changes;
- edit the issuer: staff only.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import OrgAccess, org_access_get
from accounts.audit import Actor
from accounts.dashboard import after_change, render_panel, require_finance, require_staff
from accounts.models import Membership
from billing.invoices.forms import BillingDetailsForm, CreditNoteForm, InvoiceIssuerForm
from billing.invoices.selectors import billing_details_get, invoice_column_places, invoices_list, last_closed_month
from billing.invoices.services import (
    BILLING_DETAILS_FIELDS,
    ISSUER_FIELDS,
    InvoiceError,
    billing_details_update,
    credit_note_issue,
    credited_so_far,
    invoice_issue,
    issuer_get,
    issuer_update,
)
from billing.models import Invoice
from gateway.core.money import format_usd

INVOICES_TEMPLATE = "billing/partials/invoices.html"
INVOICE_TEMPLATE = "billing/partials/invoice.html"
BILLING_DETAILS_TEMPLATE = "billing/partials/billing_details.html"
ISSUER_TEMPLATE = "billing/partials/invoicing.html"
# Besides staff: the roles that answer for what an invoice asks for.
BILLING_EDIT_ROLES = {Membership.Role.OWNER, Membership.Role.FINANCE}


def may_edit_billing(access: OrgAccess) -> bool:
    return access.is_staff or access.role in BILLING_EDIT_ROLES


def _require_edit_billing(access: OrgAccess) -> None:
    if not may_edit_billing(access):
        raise PermissionDenied("Only owners, finance and platform staff can change this")


def _finance_access(request: HttpRequest, slug: str) -> OrgAccess:
    access = org_access_get(request.user, slug)
    require_finance(access)
    return access


def _invoice_get(access: OrgAccess, invoice_id: int) -> Invoice:
    return get_object_or_404(
        Invoice.objects.select_related("corrects", "issued_by"), pk=invoice_id, organization=access.organization
    )


def _invoices_context(access: OrgAccess, **extra) -> dict:
    return {
        "access": access,
        "invoices": invoices_list(organization=access.organization),
        "last_month": last_closed_month(),
        **extra,
    }


@login_required
@require_http_methods(["GET", "POST"])
def invoices(request: HttpRequest, slug: str) -> HttpResponse:
    """The invoices and credit notes; a POST issues last month's invoice."""
    access = _finance_access(request, slug)
    if request.method == "POST":
        month = last_closed_month()
        try:
            invoice = invoice_issue(organization=access.organization, month=month, issued_by=request.user)
        except InvoiceError as exc:
            return render_panel(request, INVOICES_TEMPLATE, _invoices_context(access, error=str(exc)), status=422)
        messages.success(
            request,
            f"Issued invoice {invoice.number} for {month:%B %Y}: {format_usd(invoice.total)} {invoice.currency}.",
        )
        return after_change(request, reverse("org-invoice", args=[slug, invoice.pk]))
    return render_panel(request, INVOICES_TEMPLATE, _invoices_context(access))


def _invoice_context(access: OrgAccess, invoice: Invoice, **extra) -> dict:
    is_invoice = invoice.kind == Invoice.Kind.INVOICE
    lines = list(invoice.lines.all())
    context = {
        "access": access,
        "invoice": invoice,
        "lines": lines,
        "places": invoice_column_places(invoice=invoice, lines=lines),
        "credit_notes": invoice.credit_notes.all() if is_invoice else [],
        "may_credit": is_invoice and may_edit_billing(access),
        **extra,
    }
    if context["may_credit"]:
        context.setdefault("credit_form", CreditNoteForm())
        context["credit_left"] = invoice.subtotal - credited_so_far(invoice)
    return context


@login_required
@require_GET
def invoice(request: HttpRequest, slug: str, invoice_id: int) -> HttpResponse:
    access = _finance_access(request, slug)
    return render_panel(request, INVOICE_TEMPLATE, _invoice_context(access, _invoice_get(access, invoice_id)))


@login_required
@require_GET
def invoice_pdf(request: HttpRequest, slug: str, invoice_id: int) -> HttpResponse:
    access = _finance_access(request, slug)
    document = _invoice_get(access, invoice_id)
    if not document.pdf:
        raise Http404("This document has no PDF")
    # A page or two: read whole, rather than a file iterator that ASGI would have to consume synchronously.
    with document.pdf.open("rb") as pdf:
        response = HttpResponse(pdf.read(), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{document.number}.pdf"'
    return response


@login_required
@require_POST
def invoice_credit_note(request: HttpRequest, slug: str, invoice_id: int) -> HttpResponse:
    access = _finance_access(request, slug)
    corrected = _invoice_get(access, invoice_id)
    _require_edit_billing(access)
    form = CreditNoteForm(request.POST)
    if form.is_valid():
        try:
            credit_note = credit_note_issue(
                invoice=corrected,
                amount=form.cleaned_data["amount"],
                reason=form.cleaned_data["reason"],
                issued_by=request.user,
            )
        except InvoiceError as exc:
            form.add_error("amount", str(exc))
        else:
            messages.success(request, f"Issued credit note {credit_note.number} correcting {corrected.number}.")
            return after_change(request, reverse("org-invoice", args=[slug, credit_note.pk]))
    context = _invoice_context(access, corrected, credit_form=form)
    return render_panel(request, INVOICE_TEMPLATE, context, status=422)


@login_required
@require_http_methods(["GET", "POST"])
def billing_details(request: HttpRequest, slug: str) -> HttpResponse:
    access = _finance_access(request, slug)
    details = billing_details_get(organization=access.organization)
    context = {"access": access, "may_edit": may_edit_billing(access)}
    if request.method != "POST":
        return render_panel(
            request, BILLING_DETAILS_TEMPLATE, {**context, "form": BillingDetailsForm(instance=details)}
        )
    _require_edit_billing(access)
    form = BillingDetailsForm(request.POST)
    if not form.is_valid():
        return render_panel(request, BILLING_DETAILS_TEMPLATE, {**context, "form": form}, status=422)
    billing_details_update(
        organization=access.organization,
        changes={name: form.cleaned_data[name] for name in BILLING_DETAILS_FIELDS},
        actor=Actor.dashboard(request.user),
    )
    messages.success(request, "Saved the billing details; invoices issued from now on are addressed with them.")
    return after_change(request, reverse("org-billing-details", args=[slug]))


@login_required
@require_http_methods(["GET", "POST"])
def staff_invoicing(request: HttpRequest) -> HttpResponse:
    require_staff(request)
    issuer = issuer_get()
    context = {"staff_view": True, "issuer": issuer}
    if request.method != "POST":
        return render_panel(request, ISSUER_TEMPLATE, {**context, "form": InvoiceIssuerForm(instance=issuer)})
    form = InvoiceIssuerForm(request.POST, instance=issuer)
    if not form.is_valid():
        return render_panel(request, ISSUER_TEMPLATE, {**context, "form": form}, status=422)
    issuer_update(
        changes={name: form.cleaned_data[name] for name in ISSUER_FIELDS}, actor=Actor.dashboard(request.user)
    )
    messages.success(request, "Saved the issuer; documents issued from now on carry these details.")
    return after_change(request, reverse("staff-invoicing"))
