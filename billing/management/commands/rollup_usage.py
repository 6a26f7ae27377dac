from django.core.management.base import BaseCommand

from billing.management.commands.reconcile_usage import day_range_arguments, organization_and_days
from billing.usage.rollups import rollup_rebuild_range


class Command(BaseCommand):
    help = "Rebuild the daily usage rollups from the line items for a range of UTC days (default: yesterday and today)."

    def add_arguments(self, parser):
        day_range_arguments(parser, default_days=2)

    def handle(self, *args, **options):
        organization, first, last = organization_and_days(options)
        organization_id = organization.pk if organization else None
        rows = rollup_rebuild_range(first=first, last=last, organization_id=organization_id)
        self.stdout.write(f"Rebuilt rollups {first} to {last}: {rows} rows")
