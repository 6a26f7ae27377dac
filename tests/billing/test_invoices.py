"""Invoices and credit notes: built from the month's statement to the micro-dollar, numbered from one sequence
(gap-free under concurrency), frozen once issued, corrected only by credit notes that reconcile; their pages,
PDF and the issue_invoices command."""

import re
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connections
from django.urls import reverse

from accounts.models import AuditEvent, Membership
from accounts.services import org_create
from billing.invoices.selectors import last_closed_month
from billing.invoices.services import (
    InvoiceError,
    InvoiceExists,
    credit_note_issue,
    invoice_issue,
    issuer_get,
)
from billing.models import BillingDetails, Invoice, InvoiceFrozen, InvoiceIssuer, InvoiceLine
from billing.usage.statements import statement_build
from gateway.core.money import quantize_usd
from tests.people import _user

MARCH = date(2026, 3, 1)
APRIL_20 = datetime(2026, 4, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
def issuer(settings) -> InvoiceIssuer:
    settings.INVOICE_ISSUER_NAME = "Imagegate Ltd"
    settings.INVOICE_ISSUER_ADDRESS = "1 Render Street\nLondon"
    settings.INVOICE_TAX_RATE = Decimal("20")
    settings.INVOICE_TAX_LABEL = "VAT"
    settings.INVOICE_NUMBER_PREFIX = "IG"
    return issuer_get()


@time_machine.travel(APRIL_20, tick=False)
def test_an_invoice_is_the_months_charged_statement_lines_taxed(orgs, ledger, issuer):
    acme = orgs["acme"]
    statement = statement_build(organization=acme, month=MARCH)
    invoice = invoice_issue(organization=acme, month=MARCH)

    # The subtotal is the statement's charged total, exactly; a line per charged model × size × quality.
    assert invoice.subtotal == statement.total.amount == Decimal("0.254002")
    lines = list(invoice.lines.all())
    charged = [line for line in statement.by_model if line.totals.amount]
    assert [(line.model, line.size, line.quality, line.amount) for line in lines] == [
        (line.model, line.size, line.quality, line.totals.amount) for line in charged
    ]
    assert [line.position for line in lines] == list(range(1, len(lines) + 1))
    assert sum(line.quantity for line in lines) == statement.total.images == 7  # succeeded images only
    assert invoice.tax_label == "VAT" and invoice.tax_rate == Decimal(20)
    assert invoice.tax_amount == quantize_usd(Decimal("0.254002") * Decimal("0.2")) == Decimal("0.050800")
    assert invoice.total == invoice.subtotal + invoice.tax_amount
    assert invoice.number == "IG-000001" and invoice.kind == Invoice.Kind.INVOICE
    assert (invoice.period_start, invoice.period_end, invoice.issue_date) == (MARCH, date(2026, 4, 1), APRIL_20.date())
    assert invoice.issuer_details["name"] == "Imagegate Ltd"
    assert invoice.customer_details["name"] == "Acme"
    # Its PDF is stored under its number; text is left uncompressed so the number and total can be found.
    assert invoice.pdf.name == "invoices/IG-000001.pdf"
    pdf = invoice.pdf.open("rb").read()
    assert pdf.startswith(b"%PDF-") and b"IG-000001" in pdf and b"0.304802" in pdf
    assert AuditEvent.objects.filter(action="invoice.issue", object_repr="IG-000001", organization=acme).exists()
    issuer.refresh_from_db()
    assert issuer.next_number == 2


@time_machine.travel(APRIL_20, tick=False)
def test_the_organizations_own_rate_and_details_apply(orgs, ledger, issuer):
    BillingDetails.objects.create(
        organization=orgs["acme"], legal_name="Acme Corp.", tax_id="GB123", tax_rate=Decimal("7.5")
    )
    invoice = invoice_issue(organization=orgs["acme"], month=MARCH)
    assert invoice.tax_rate == Decimal("7.5") and invoice.tax_label == "VAT"
    assert invoice.tax_amount == quantize_usd(Decimal("0.254002") * Decimal("0.075"))
    assert invoice.customer_details["name"] == "Acme Corp." and invoice.customer_details["tax_id"] == "GB123"


@time_machine.travel(datetime(2026, 3, 31, 23, 59, tzinfo=UTC), tick=False)
def test_an_open_month_cannot_be_invoiced(orgs, ledger, issuer):
    with pytest.raises(InvoiceError, match="March 2026 has not ended yet"):
        invoice_issue(organization=orgs["acme"], month=MARCH)
    assert not Invoice.objects.exists()


@time_machine.travel(APRIL_20, tick=False)
def test_one_invoice_per_month_and_the_second_attempt_names_it(orgs, ledger, issuer):
    first = invoice_issue(organization=orgs["acme"], month=MARCH)
    with pytest.raises(InvoiceExists, match="already has invoice IG-000001 for March 2026") as exists:
        invoice_issue(organization=orgs["acme"], month=date(2026, 3, 17))
    assert exists.value.invoice == first
    with pytest.raises(InvoiceError, match="charged nothing in February 2026"):
        invoice_issue(organization=orgs["acme"], month=date(2026, 2, 1))
    # Refusals took no number.
    assert invoice_issue(organization=orgs["globex"], month=MARCH).number == "IG-000002"


@time_machine.travel(APRIL_20, tick=False)
def test_an_issued_invoice_and_its_lines_never_change(orgs, ledger, issuer):
    invoice = invoice_issue(organization=orgs["acme"], month=MARCH)
    line = invoice.lines.first()
    invoice.total = Decimal(0)
    with pytest.raises(InvoiceFrozen):
        invoice.save()
    with pytest.raises(InvoiceFrozen):
        invoice.delete()
    with pytest.raises(InvoiceFrozen):
        Invoice.objects.filter(pk=invoice.pk).update(total=Decimal(0))
    with pytest.raises(InvoiceFrozen):
        Invoice.objects.filter(pk=invoice.pk).delete()
    line.amount = Decimal(0)
    with pytest.raises(InvoiceFrozen):
        line.save()
    with pytest.raises(InvoiceFrozen):
        InvoiceLine.objects.filter(invoice=invoice).update(amount=Decimal(0))
    with pytest.raises(InvoiceFrozen):
        line.delete()
    invoice.refresh_from_db()
    assert invoice.total == Decimal("0.304802") and invoice.lines.count() == 4


@time_machine.travel(APRIL_20, tick=False)
def test_a_month_with_a_credit_note_reconciles(orgs, ledger, issuer, people):
    acme = orgs["acme"]
    invoice = invoice_issue(organization=acme, month=MARCH)
    credit = credit_note_issue(invoice=invoice, amount=Decimal("0.05"), reason="Cached images billed", issued_by=None)
    assert credit.number == "IG-000002" and credit.kind == Invoice.Kind.CREDIT_NOTE and credit.corrects == invoice
    assert credit.subtotal == Decimal("-0.05") and credit.tax_amount == Decimal("-0.01")
    assert [line.amount for line in credit.lines.all()] == [Decimal("-0.05")]
    assert b"IG-000001" in credit.pdf.open("rb").read()

    # The invoice and its credit notes add up to what the corrected month owes.
    documents = Invoice.objects.filter(organization=acme, period_start=MARCH)
    statement_total = statement_build(organization=acme, month=MARCH).total.amount
    corrected = statement_total - Decimal("0.05")
    assert sum(d.subtotal for d in documents) == corrected == Decimal("0.204002")
    assert sum(line.amount for d in documents for line in d.lines.all()) == corrected
    assert sum(d.total for d in documents) == sum(d.subtotal + d.tax_amount for d in documents)
    assert sum(d.total for d in documents) == corrected + quantize_usd(corrected * Decimal("0.2"))

    # No more can be credited than is left, and a credit note is not itself corrected.
    with pytest.raises(InvoiceError, match="At most 0.204002 USD of IG-000001 is left to credit"):
        credit_note_issue(invoice=invoice, amount=Decimal("0.21"), reason="too much", issued_by=None)
    with pytest.raises(InvoiceError, match="is a credit note"):
        credit_note_issue(invoice=credit, amount=Decimal("0.01"), reason="x", issued_by=None)
    with pytest.raises(InvoiceError, match="Say why"):
        credit_note_issue(invoice=invoice, amount=Decimal("0.01"), reason="  ", issued_by=None)
    last = credit_note_issue(invoice=invoice, amount=Decimal("0.204002"), reason="Waived", issued_by=people.fiona)
    assert last.number == "IG-000003" and sum(d.subtotal for d in documents.all()) == 0
    assert AuditEvent.objects.filter(action="invoice.credit_note").count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_issues_take_distinct_gap_free_numbers(people, issuer, add_item, settings):
    """Eight organizations invoiced at once, from eight threads with their own connections."""
    month = last_closed_month()
    organizations = [org_create(slug=f"co-{i}", name=f"Co {i}", tier_slug="pro") for i in range(8)]
    for organization in organizations:
        add_item(organization, None, datetime.combine(month, datetime.min.time(), tzinfo=UTC) + timedelta(hours=5))
    barrier = threading.Barrier(len(organizations))
    numbers, errors = [], []

    def issue(organization):
        try:
            barrier.wait()
            numbers.append(invoice_issue(organization=organization, month=month).number)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=issue, args=(org,)) for org in organizations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert sorted(numbers) == [f"IG-{n:06d}" for n in range(1, 9)]
    assert sorted(Invoice.objects.values_list("number", flat=True)) == sorted(numbers)
    assert InvoiceIssuer.objects.get().next_number == 9


# --- Pages -------------------------------------------------------------------


@pytest.fixture
def last_month_usage(orgs, keys, add_item):
    """acme's charges in the last closed month: two images of dall-e-3 and a failure."""
    when = datetime.combine(last_closed_month(), datetime.min.time(), tzinfo=UTC) + timedelta(days=2, hours=3)
    add_item(orgs["acme"], keys["acme"], when, n=2, unit_price="0.04")
    add_item(orgs["acme"], keys["acme"], when, status="failed")


def test_finance_issues_last_months_invoice_and_downloads_its_pdf(people, last_month_usage, issuer, as_user):
    client = as_user(people.fiona)
    response = client.post(reverse("org-invoices", args=["acme"]))
    invoice = Invoice.objects.get(organization=people.acme)
    assert response.status_code == 302 and response["Location"] == reverse("org-invoice", args=["acme", invoice.pk])
    assert invoice.issued_by == people.fiona and invoice.period_start == last_closed_month()
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b"IG-000001" in page.content and b"0.096" in page.content and b"Imagegate Ltd" in page.content
    download = client.get(reverse("org-invoice-pdf", args=["acme", invoice.pk]))
    assert download["Content-Disposition"] == 'attachment; filename="IG-000001.pdf"'
    assert download["Content-Type"] == "application/pdf" and download.content.startswith(b"%PDF-")
    listing = client.get(reverse("org-invoices", args=["acme"]))
    assert f"Issue invoice for {last_closed_month():%B %Y}".encode() in listing.content
    assert b"IG-000001" in listing.content

    again = client.post(reverse("org-invoices", args=["acme"]))
    assert again.status_code == 422 and b"already has invoice IG-000001" in again.content
    assert Invoice.objects.count() == 1


def test_each_money_column_shows_one_number_of_places(people, last_month_usage, add_item, orgs, keys, issuer, as_user):
    """0.08 and 0.0168 in one column would read as different precisions: the page and the PDF align them."""
    when = datetime.combine(last_closed_month(), datetime.min.time(), tzinfo=UTC) + timedelta(days=3)
    add_item(orgs["acme"], keys["acme"], when, model="dall-e-2", n=3, unit_price="0.018")
    invoice = invoice_issue(organization=people.acme, month=last_closed_month())
    page = as_user(people.fiona).get(reverse("org-invoice", args=["acme", invoice.pk])).content.decode()
    table = page[page.index('id="invoice-lines"') : page.index("</table>")]
    cells = re.findall(r'<td class="num"[^>]*>([-0-9.]+)</td>', table)
    unit_prices, amounts = cells[0:4:2], cells[1:4:2] + cells[4:]
    assert unit_prices == ["0.018", "0.040"] and amounts == ["0.0540", "0.0800", "0.1340", "0.0268", "0.1608"]
    pdf = invoice.pdf.open("rb").read()
    assert all(f"({amount})".encode() in pdf for amount in amounts)


def test_members_get_403_and_admins_read_billing_details_only(people, last_month_usage, issuer, as_user):
    admin = _user("adam")
    Membership.objects.create(user=admin, organization=people.acme, role=Membership.Role.ADMIN)
    invoice = invoice_issue(organization=people.acme, month=last_closed_month())
    bob = as_user(people.bob)
    for url in (
        reverse("org-invoices", args=["acme"]),
        reverse("org-invoice", args=["acme", invoice.pk]),
        reverse("org-invoice-pdf", args=["acme", invoice.pk]),
        reverse("org-billing-details", args=["acme"]),
    ):
        assert bob.get(url).status_code == 403, url
    assert bob.post(reverse("org-invoices", args=["acme"])).status_code == 403

    adam = as_user(admin)
    details_url = reverse("org-billing-details", args=["acme"])
    assert adam.get(details_url).status_code == 200
    assert adam.post(details_url, {"legal_name": "Adam's Acme"}).status_code == 403
    credit_url = reverse("org-invoice-credit-note", args=["acme", invoice.pk])
    assert adam.post(credit_url, {"amount": "0.01", "reason": "x"}).status_code == 403
    assert b"Issue credit note" not in adam.get(reverse("org-invoice", args=["acme", invoice.pk])).content
    assert not BillingDetails.objects.exists() and Invoice.objects.count() == 1


def test_owners_and_finance_edit_billing_details_and_issue_credit_notes(people, last_month_usage, issuer, as_user):
    client = as_user(people.fiona)
    url = reverse("org-billing-details", args=["acme"])
    bad = client.post(url, {"legal_name": "Acme Corp.", "email": "not an email", "tax_rate": "150"})
    assert bad.status_code == 422 and b"Enter a valid email address" in bad.content
    assert b"less than or equal to 100" in bad.content and not BillingDetails.objects.exists()
    saved = client.post(url, {"legal_name": "Acme Corp.", "address": "2 Main St", "tax_id": "GB9", "tax_rate": "10"})
    assert saved.status_code == 302
    details = BillingDetails.objects.get(organization=people.acme)
    assert (details.legal_name, details.tax_rate) == ("Acme Corp.", Decimal(10))
    assert AuditEvent.objects.filter(action="billing_details.update", actor=people.fiona).exists()

    invoice = invoice_issue(organization=people.acme, month=last_closed_month(), issued_by=people.alice)
    assert invoice.customer_details["name"] == "Acme Corp." and invoice.tax_amount == Decimal("0.008")
    credit_url = reverse("org-invoice-credit-note", args=["acme", invoice.pk])
    too_much = client.post(credit_url, {"amount": "1", "reason": "goodwill"})
    assert too_much.status_code == 422 and b"At most 0.08 USD of IG-000001 is left to credit" in too_much.content
    assert client.post(credit_url, {"amount": "abc", "reason": "x"}).status_code == 422
    done = client.post(credit_url, {"amount": "0.02", "reason": "goodwill"})
    credit = Invoice.objects.get(kind=Invoice.Kind.CREDIT_NOTE)
    assert done.status_code == 302 and credit.corrects == invoice and credit.issued_by == people.fiona
    page = client.get(reverse("org-invoice", args=["acme", credit.pk]))
    assert b"Corrects invoice" in page.content and b"IG-000001" in page.content and b"-0.022" in page.content


def test_staff_edit_the_issuer(people, issuer, as_user):
    client = as_user(people.stella)
    url = reverse("staff-invoicing")
    assert b"IG-000001" in client.get(url).content
    bad = client.post(url, {"name": "", "tax_label": "VAT", "tax_rate": "-1", "number_prefix": "IG"})
    assert bad.status_code == 422 and b"This field is required" in bad.content
    data = {"name": "Imagegate GmbH", "address": "Berlin", "tax_label": "USt", "tax_rate": "19", "number_prefix": "IG"}
    assert client.post(url, data).status_code == 302
    issuer.refresh_from_db()
    assert (issuer.name, issuer.tax_rate, issuer.next_number) == ("Imagegate GmbH", Decimal(19), 1)
    assert AuditEvent.objects.filter(action="invoice_issuer.update", actor=people.stella).exists()
    assert as_user(people.alice).post(url, data).status_code == 403


# --- The command -------------------------------------------------------------


def _issue(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("issue_invoices", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@time_machine.travel(APRIL_20, tick=False)
def test_issue_invoices_prints_each_pdf_and_skips_existing_ones(orgs, ledger, issuer):
    out, err = _issue("--month", "2026-03", "--org", "acme")
    assert out.splitlines() == ["invoices/IG-000001.pdf"] and not err
    out, err = _issue("--month", "2026-03")
    assert out.splitlines() == ["invoices/IG-000002.pdf"]
    assert "acme already has invoice IG-000001 for March 2026" in err
    assert Invoice.objects.get(number="IG-000002").organization == orgs["globex"]


@time_machine.travel(APRIL_20, tick=False)
def test_issue_invoices_says_when_nobody_was_charged(orgs, ledger, issuer):
    out, err = _issue("--month", "2026-02")
    assert not out and "No organization was charged anything in February 2026" in err
    assert not Invoice.objects.exists()


@time_machine.travel(APRIL_20, tick=False)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "2026-13"], "'2026-13' is not a month as YYYY-MM"),
        (["--month", "2026-04", "--org", "acme"], "April 2026 has not ended yet"),
        (["--month", "2026-05"], "May 2026 has not ended yet"),
        (["--month", "2026-03", "--org", "nobody"], "no organization with the slug 'nobody'"),
    ],
)
def test_issue_invoices_explains_bad_input(orgs, ledger, issuer, args, message):
    with pytest.raises(CommandError, match=message):
        _issue(*args)
    assert not Invoice.objects.exists()


@time_machine.travel(APRIL_20, tick=False)
def test_the_admin_shows_invoices_read_only(orgs, ledger, issuer, client):
    invoice = invoice_issue(organization=orgs["acme"], month=MARCH)
    client.force_login(_user("root", is_staff=True, is_superuser=True))
    url = reverse("admin:billing_invoice_change", args=[invoice.pk])
    page = client.get(url)
    assert page.status_code == 200 and b"IG-000001" in page.content and b'name="total"' not in page.content
    assert client.post(url, {"total": "0"}).status_code == 403
    assert client.post(reverse("admin:billing_invoice_delete", args=[invoice.pk]), {"post": "yes"}).status_code == 403
    invoice.refresh_from_db()
    assert invoice.total == Decimal("0.304802")


def test_issue_invoices_help(capsys):
    with pytest.raises(SystemExit):
        call_command("issue_invoices", "--help")
    assert "--month" in capsys.readouterr().out
