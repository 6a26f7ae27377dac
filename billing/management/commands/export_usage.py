import sys

from django.core.management.base import BaseCommand, CommandError

from accounts.services import AccountError, org_get
from billing.usage.exports import usage_csv_write
from billing.usage.filter import FilterError, UsageFilter


class Command(BaseCommand):
    help = (
        "Export an organization's usage line items as CSV (columns in docs/finance.md), "
        "streamed in constant memory to stdout or a file."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="Organization slug")
        parser.add_argument("--from", dest="date_from", required=True, help="First day, YYYY-MM-DD (UTC)")
        parser.add_argument("--to", dest="date_to", required=True, help="Last day included, YYYY-MM-DD (UTC)")
        parser.add_argument("--format", choices=["csv"], default="csv", help="Output format (csv)")
        parser.add_argument("--output", help="Write to this file instead of stdout")
        parser.add_argument("--model", default="", help="Only this model")
        parser.add_argument("--status", default="", help="Only this status")
        parser.add_argument("--key", default="", help="Only the key with this prefix")
        parser.add_argument("--end-user", default="", help="Only this end user")

    def handle(self, *args, org, date_from, date_to, output, model, status, key, end_user, **options):
        try:
            organization = org_get(slug=org)
            usage_filter = UsageFilter.from_params(
                {"from": date_from, "to": date_to, "model": model, "status": status, "key": key, "end_user": end_user},
                organization_id=organization.pk,
            )
        except (AccountError, FilterError) as exc:
            raise CommandError(str(exc)) from None
        items = usage_filter.line_items()
        if output:
            try:
                with open(output, "w", encoding="utf-8", newline="") as file:
                    rows = usage_csv_write(items=items, output=file)
            except OSError as exc:
                raise CommandError(f"Cannot write {output}: {exc.strerror}") from None
            self.stderr.write(f"Wrote {rows} rows to {output}")
        else:
            usage_csv_write(items=items, output=sys.stdout)
