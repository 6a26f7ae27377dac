from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.services import AccountError, org_get
from billing.periods import today_utc
from billing.usage.focus import focus_drop_day


class Command(BaseCommand):
    help = (
        "Write one day's FOCUS 1.2 file per organization with charges into the `focus` storage "
        "(FOCUS_DROP_DIR or FOCUS_DROP_S3_BUCKET), as the daily beat task does; rewriting a day replaces its files."
    )

    def add_arguments(self, parser):
        parser.add_argument("--date", dest="day", default="", help="The UTC day, YYYY-MM-DD (default: yesterday)")
        parser.add_argument("--org", default="", help="Only this organization (written even without charges)")

    def handle(self, *args, day, org, **options):
        try:
            when = date.fromisoformat(day) if day else today_utc(timezone.now()) - timedelta(days=1)
        except ValueError:
            raise CommandError(f"--date must be a day as YYYY-MM-DD, got '{day}'") from None
        if when >= today_utc(timezone.now()):
            raise CommandError(f"{when} has not ended yet (UTC); drop a past day")
        try:
            organizations = [org_get(slug=org)] if org else None
        except AccountError as exc:
            raise CommandError(str(exc)) from None
        for name in focus_drop_day(day=when, organizations=organizations):
            self.stdout.write(name)
