from django.core.management.base import BaseCommand, CommandError

from accounts.audit import Actor
from accounts.services import AccountError, org_get, org_tier_set


class Command(BaseCommand):
    help = (
        "Move an organization to a tier; Enterprise may carry custom image limits. The change is audited. "
        "Example: set_tier --org acme --tier enterprise --images-per-minute 120 --images-per-day 20000 "
        "--max-concurrent-requests 200"
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="Organization slug")
        parser.add_argument("--tier", required=True, choices=["free", "pro", "enterprise"])
        parser.add_argument("--images-per-minute", type=int, help="Enterprise only: custom images per rolling minute")
        parser.add_argument("--images-per-day", type=int, help="Enterprise only: custom images per UTC day")
        parser.add_argument(
            "--max-concurrent-requests",
            type=int,
            help="Any tier: image requests in flight at once, in place of the tier's cap",
        )

    def handle(self, *args, org, tier, images_per_minute, images_per_day, max_concurrent_requests, **options):
        try:
            organization = org_tier_set(
                organization=org_get(slug=org),
                tier_slug=tier,
                images_per_minute=images_per_minute,
                images_per_day=images_per_day,
                max_concurrent_requests=max_concurrent_requests,
                actor=Actor.command(),
            )
        except AccountError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"'{organization.slug}' is on the {organization.tier.name} tier: "
            f"{organization.images_per_minute} images per minute, {organization.images_per_day} per day, "
            f"{organization.max_concurrent_requests} requests in flight at once."
        )
