from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from billing.invoices.selectors import organizations_with_charges
from billing.invoices.services import InvoiceError, InvoiceExists, closed_month_require, invoice_issue
from billing.usage.statements import month_parse


class Command(BaseCommand):
    help = (
        "Issue the invoices of a closed month (UTC): for --org, or for every organization charged anything in "
        "the month. Prints the storage name of each PDF written, one a line; an invoice that already exists is "
        "not issued again (said on stderr, exit status 0)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--month", required=True, help="The month to invoice, as YYYY-MM; it must have ended")
        parser.add_argument("--org", help="Only this organization (its slug)")

    def handle(self, *args, month, org, **options):
        try:
            first = closed_month_require(month_parse(month))
        except ValueError as exc:
            raise CommandError(f"--month: {exc}, e.g. --month 2026-10") from None
        except InvoiceError as exc:
            raise CommandError(f"--month: {exc}") from None
        if org:
            organization = Organization.objects.filter(slug=org).first()
            if organization is None:
                raise CommandError(f"--org: no organization with the slug '{org}'")
            organizations = [organization]
        else:
            organizations = organizations_with_charges(month=first)
            if not organizations:
                self.stderr.write(f"No organization was charged anything in {first:%B %Y}: no invoice to issue.")
        for organization in organizations:
            try:
                invoice = invoice_issue(organization=organization, month=first)
            except InvoiceExists as exc:
                self.stderr.write(f"{exc}; not issued again.")
            except InvoiceError as exc:
                raise CommandError(str(exc)) from None
            else:
                self.stdout.write(invoice.pdf.name)
