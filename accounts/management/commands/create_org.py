from django.core.management.base import BaseCommand, CommandError
from django.utils.text import slugify

from accounts.audit import Actor
from accounts.services import AccountError, org_create


class Command(BaseCommand):
    help = "Create an organization (tenant)."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="Short unique identifier, e.g. acme")
        parser.add_argument("--name", default="", help="Display name (defaults to the slug)")
        parser.add_argument("--tier", default="free", help="free, pro or enterprise (default free)")

    def handle(self, *args, slug, name, tier, **options):
        if slugify(slug) != slug:
            raise CommandError(f"'{slug}' is not a valid slug: use lowercase letters, digits and hyphens")
        try:
            org = org_create(slug=slug, name=name, tier_slug=tier, actor=Actor.command())
        except AccountError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Created organization '{org.slug}' ({org.name}) on the {org.tier.name} tier.")
