"""In a real browser: finance fills in the billing details, issues last month's invoice and downloads its PDF."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.invoices.selectors import last_closed_month
from billing.models import Invoice
from billing.periods import day_start
from tests.people import line_item

pytestmark = pytest.mark.django_db(transaction=True)


def test_finance_issues_last_months_invoice_and_downloads_the_pdf(page, live_gateway, sign_in, people, settings, shoot):
    settings.INVOICE_ISSUER_NAME = "Imagegate Ltd"
    settings.INVOICE_ISSUER_ADDRESS = "1 Render Street\nLondon EC1A 1AA"
    settings.INVOICE_ISSUER_TAX_ID = "GB 123 4567 89"
    settings.INVOICE_TAX_LABEL = "VAT"
    settings.INVOICE_TAX_RATE = Decimal("20")
    month = last_closed_month()
    mid_month = (timezone.now() - day_start(month) - timedelta(days=10)) // timedelta(minutes=1)
    for index, (model, cost, n) in enumerate([("dall-e-3", "0.08", 2), ("dall-e-2", "0.054", 3)]):
        line_item(
            people.acme, people.alice_key, request_id=f"req-last-{index}", minutes_ago=mid_month - index,
            model=model, n=n, cost=Decimal(cost), unit_price=Decimal(cost) / n,
        )  # fmt: skip

    sign_in(page, "fiona")
    page.goto(f"{live_gateway}/orgs/acme/")
    page.click("nav >> text=Billing details")
    page.fill("#id_legal_name", "Acme Corporation")
    page.fill("#id_address", "42 Harbour Road\nBristol BS1 4AA")
    page.fill("#id_email", "accounts@acme.test")
    page.fill("#id_tax_rate", "150")
    page.click("button:has-text('Save billing details')")
    page.wait_for_selector("#id_tax_rate-error")
    assert "less than or equal to 100" in page.locator("#id_tax_rate-error").inner_text()
    page.fill("#id_tax_rate", "")
    page.click("button:has-text('Save billing details')")
    page.wait_for_selector(".flash")
    shoot(page, "billing-details")

    page.click("nav >> text=Invoices")
    page.click(f"button:has-text('Issue invoice for {month:%B %Y}')")
    page.wait_for_url(re.compile(r"/orgs/acme/invoices/\d+/$"))
    invoice = Invoice.objects.get(organization=people.acme)
    assert invoice.issued_by == people.fiona and invoice.subtotal == Decimal("0.134")
    assert page.locator("#invoice-number").inner_text() == invoice.number
    assert page.locator("#invoice-total").inner_text() == "0.1608"
    assert "Acme Corporation" in page.locator("#invoice-customer").inner_text()
    assert "Imagegate Ltd" in page.locator("#invoice-issuer").inner_text()
    shoot(page, "invoice")

    with page.expect_download() as download_info:
        page.click("#invoice-pdf")
    download = download_info.value
    assert download.suggested_filename == f"{invoice.number}.pdf"
    pdf = open(download.path(), "rb").read()
    assert pdf.startswith(b"%PDF-") and invoice.number.encode() in pdf and b"0.1608" in pdf

    page.click("text=All invoices")
    page.wait_for_selector(f"#invoice-{invoice.pk}")
    page.click(f"button:has-text('Issue invoice for {month:%B %Y}')")
    page.wait_for_selector("#issue-error")
    assert f"already has invoice {invoice.number}" in page.locator("#issue-error").inner_text()
    assert Invoice.objects.count() == 1
    shoot(page, "invoices")
