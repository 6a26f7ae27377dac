from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing.periods import today_utc
from providers.lifecycle import DEFAULT_WARN_DAYS, catalog_lifecycle_check


class Command(BaseCommand):
    help = (
        "Compare the model catalog with what each provider lists (OpenAI announces shutdown dates): a model "
        "listed with a shutdown date becomes deprecated, then retired once the date has come; one no longer "
        "listed is retired. Staff (users with is_staff and an email) get one email about the models that shut "
        "down within --days, each model and date once. Providers without credentials, or that cannot list their "
        "models, are named and skipped. The beat task billing.tasks.model_catalog_check runs this daily."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            default=DEFAULT_WARN_DAYS,
            help=f"Warn staff this many days ahead of a shutdown (default {DEFAULT_WARN_DAYS})",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would change and who would be warned; change nothing"
        )

    def handle(self, *args, days, dry_run, **options):
        if days < 0:
            raise CommandError(f"--days must be 0 or more, e.g. --days {DEFAULT_WARN_DAYS}")
        report = catalog_lifecycle_check(today=today_utc(timezone.now()), warn_days=days, dry_run=dry_run)
        for provider, count in sorted(report.checked.items()):
            self.stdout.write(f"Checked {provider}: {count} catalog model(s) compared with its list.")
        for provider, reason in sorted(report.unchecked.items()):
            self.stdout.write(f"Not checked {provider}: {reason}.")
        for change in report.changes:
            self.stdout.write(f"{'Would change' if dry_run else 'Changed'} {change}.")
        if not report.changes:
            self.stdout.write("No catalog model needs a change.")
        if report.warnings:
            staff = ", ".join(report.recipients) or "nobody: no active staff user has an email address"
            self.stdout.write(f"{'Would warn' if dry_run else 'Warned'} staff ({staff}):")
            for line in report.warnings:
                self.stdout.write(f"  {line}")
        else:
            self.stdout.write(f"No shutdown within {days} days that staff have not been warned of.")
        if dry_run:
            self.stdout.write("Dry run: nothing was changed and no email was sent.")
