"""The PDF of an invoice or credit note, drawn with ReportLab (pure Python: no system libraries to install).

The page holds what the HTML view shows (templates/billing/partials/invoice.html): issuer and customer,
number, issue date, period, the lines, subtotal, tax and total in the invoice's currency.
"""

from collections.abc import Sequence
from io import BytesIO
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from billing.invoices.selectors import invoice_column_places
from billing.models import Invoice, InvoiceLine
from gateway.core.money import format_usd


def document_title(document: Invoice) -> str:
    return f"{document.get_kind_display()} {document.number}"


def _party(title: str, details: dict, style) -> Paragraph:
    lines = [f"<b>{escape(title)}</b>", escape(details.get("name", ""))]
    lines += [escape(line) for line in details.get("address", "").splitlines() if line.strip()]
    if details.get("email"):
        lines.append(escape(details["email"]))
    if details.get("tax_id"):
        lines.append(f"Tax ID: {escape(details['tax_id'])}")
    return Paragraph("<br/>".join(lines), style)


def invoice_pdf(document: Invoice, lines: Sequence[InvoiceLine]) -> bytes:
    """The document as PDF bytes. Page compression is off: the text stays searchable in the raw file, and an
    invoice is a page or two."""
    styles = getSampleStyleSheet()
    body, cell = styles["BodyText"], styles["BodyText"]
    buffer = BytesIO()
    pdf = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title=document_title(document),
        author=document.issuer_details.get("name", ""),
        pageCompression=0,
    )
    currency = document.currency
    places = invoice_column_places(invoice=document, lines=lines)
    facts = [
        f"<b>Number:</b> {escape(document.number)}",
        f"<b>Issue date:</b> {document.issue_date.isoformat()}",
        f"<b>Period:</b> {document.period_start.isoformat()} to {document.period_last.isoformat()} (UTC)",
        f"<b>Currency:</b> {escape(currency)}",
    ]
    if document.corrects is not None:
        facts.append(f"<b>Corrects invoice:</b> {escape(document.corrects.number)}")
        facts.append(f"<b>Reason:</b> {escape(document.reason)}")
    rows: list[list] = [["Description", "Quantity", "Unit price", f"Amount ({currency})"]]
    for line in lines:
        rows.append(
            [
                Paragraph(escape(line.description), cell),
                line.quantity_label,
                format_usd(line.unit_price, places=places.unit_price),
                format_usd(line.amount, places=places.amount),
            ]
        )
    totals_from = len(rows)
    rows.append(["Subtotal", "", "", format_usd(document.subtotal, places=places.amount)])
    rows.append(
        [
            f"{document.tax_label} ({document.tax_percent} %)",
            "",
            "",
            format_usd(document.tax_amount, places=places.amount),
        ]
    )
    rows.append([f"Total ({currency})", "", "", format_usd(document.total, places=places.amount)])
    table = Table(rows, colWidths=[84 * mm, 28 * mm, 28 * mm, 34 * mm], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
                ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEABOVE", (0, totals_from), (-1, totals_from), 0.8, colors.black),
                ("FONTNAME", (0, -1), (-1, -1), "Helvetica-Bold"),
            ]
        )
    )
    parties = Table(
        [[_party("From", document.issuer_details, body), _party("Bill to", document.customer_details, body)]],
        colWidths=[87 * mm, 87 * mm],
    )
    parties.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    story = [
        Paragraph(escape(document_title(document)), styles["Title"]),
        parties,
        Spacer(1, 6 * mm),
        Paragraph("<br/>".join(facts), body),
        Spacer(1, 6 * mm),
        table,
    ]
    pdf.build(story)
    return buffer.getvalue()
