from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.services import AccountError, org_get
from billing.periods import today_utc
from billing.usage.rollups import rollup_days_unbuilt, rollup_reconcile


def day_range_arguments(parser, *, default_days: int) -> None:
    parser.add_argument(
        "--from", dest="date_from", help=f"First UTC day, YYYY-MM-DD (default: {default_days} days back)"
    )
    parser.add_argument("--to", dest="date_to", help="Last UTC day included, YYYY-MM-DD (default: today)")
    parser.add_argument("--org", help="Only this organization (slug)")
    parser.set_defaults(default_days=default_days)


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--{name} must be a date as YYYY-MM-DD, got '{text}'") from None


def organization_and_days(options: dict):
    """The --org, --from and --to of a rollup command, checked."""
    today = today_utc(timezone.now())
    last = _day(options["date_to"], "to") if options["date_to"] else today
    first = (
        _day(options["date_from"], "from") if options["date_from"] else last - timedelta(options["default_days"] - 1)
    )
    if first > last:
        raise CommandError(f"--from ({first}) must not be after --to ({last})")
    try:
        organization = org_get(slug=options["org"]) if options["org"] else None
    except AccountError as exc:
        raise CommandError(str(exc)) from None
    return organization, first, last


class Command(BaseCommand):
    help = (
        "Check that the daily usage rollups equal the line items (requests, images, failures, amount charged and "
        "provider cost) over a range of UTC days (default: the last 7); lists every difference and exits non-zero "
        "when there is one. Days whose rollups were never built (beat builds them; the embedded mode runs no beat) "
        "are named and not compared: rollup_usage builds them."
    )

    def add_arguments(self, parser):
        day_range_arguments(parser, default_days=7)

    def handle(self, *args, **options):
        organization, first, last = organization_and_days(options)
        organization_id = organization.pk if organization else None
        unbuilt = rollup_days_unbuilt(first=first, last=last, organization_id=organization_id)
        if unbuilt:
            days = ", ".join(day.isoformat() for day in unbuilt)
            self.stdout.write(f"No rollups yet for {days}: not compared (rollup_usage builds them)")
        differences = rollup_reconcile(first=first, last=last, organization_id=organization_id)
        for difference in differences:
            self.stdout.write(difference.describe())
        if differences:
            raise CommandError(
                f"{len(differences)} rollup group(s) differ from the line items between {first} and {last}; "
                "rebuild them with rollup_usage"
            )
        self.stdout.write(f"Rollups equal the line items from {first} to {last}" + (" where built" if unbuilt else ""))
