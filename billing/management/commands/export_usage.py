import sys

from django.core.management.base import BaseCommand, CommandError

from accounts.services import AccountError, org_get, project_get
from billing.models import ExportFormat
from billing.usage import focus
from billing.usage.exports import usage_csv_write
from billing.usage.filter import FilterError, UsageFilter

STDOUT = "-"


class Command(BaseCommand):
    help = (
        "Export usage as our CSV (line items) or as FinOps FOCUS 1.2 charges (CSV or Parquet); columns in "
        "docs/finance.md. Streamed in constant memory to a file, or to stdout for the CSV formats."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", default="", help="Organization slug (default: every organization)")
        parser.add_argument(
            "--from", dest="date_from", default="", help="First day, YYYY-MM-DD (UTC; default: this month's first)"
        )
        parser.add_argument(
            "--to", dest="date_to", default="", help="Last day included, YYYY-MM-DD (UTC; default: today)"
        )
        parser.add_argument(
            "--format",
            dest="export_format",
            choices=ExportFormat.values,
            default=ExportFormat.CSV,
            help="csv (line items, the default), focus-csv or focus-parquet (charges in the FOCUS 1.2 columns)",
        )
        parser.add_argument(
            "--output", default=STDOUT, help="Write to this file; '-' (the default) is stdout, for the CSV formats"
        )
        parser.add_argument("--model", default="", help="Only this model")
        parser.add_argument("--status", default="", help="Only this status")
        parser.add_argument("--key", default="", help="Only the key with this prefix")
        parser.add_argument("--end-user", default="", help="Only this end user")
        parser.add_argument("--project", default="", help="Only the requests made in this project (its name)")

    def handle(
        self, *args, org, date_from, date_to, export_format, output, model, status, key, end_user, project, **options
    ):
        if output == STDOUT and export_format == ExportFormat.FOCUS_PARQUET:
            raise CommandError("Parquet is binary: give a file with --output PATH")
        try:
            organization = org_get(slug=org) if org else None
            if organization is not None and project.strip():
                project_get(organization=organization, name=project)
            params = {"from": date_from, "to": date_to, "model": model, "status": status, "key": key}
            usage_filter = UsageFilter.from_params(
                {**params, "end_user": end_user, "project": project},
                organization_id=organization.pk if organization else None,
            )
        except (AccountError, FilterError) as exc:
            raise CommandError(str(exc)) from None
        if output == STDOUT:
            self._write(usage_filter, export_format, sys.stdout)
            return
        try:
            mode = "wb" if export_format == ExportFormat.FOCUS_PARQUET else "w"
            with open(output, mode, **({} if mode == "wb" else {"encoding": "utf-8", "newline": ""})) as file:
                rows = self._write(usage_filter, export_format, file)
        except OSError as exc:
            raise CommandError(f"Cannot write {output}: {exc.strerror}") from None
        self.stderr.write(f"Wrote {rows} rows ({usage_filter.date_from} to {usage_filter.date_to}) to {output}")

    @staticmethod
    def _write(usage_filter: UsageFilter, export_format: str, file) -> int:
        if export_format == ExportFormat.CSV:
            return usage_csv_write(items=usage_filter.line_items(), output=file)
        scope = focus.FocusScope(usage_filter)
        if export_format == ExportFormat.FOCUS_CSV:
            return focus.focus_csv_write(scope=scope, output=file)
        return focus.focus_parquet_write(scope=scope, output=file)
