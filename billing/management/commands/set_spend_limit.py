from django.core.management.base import BaseCommand, CommandError

from accounts.audit import Actor
from accounts.services import AccountError, org_get
from billing.limits import spend_limit_remove, spend_limit_save
from billing.services import BillingError
from gateway.core.money import format_usd, parse_usd


class Command(BaseCommand):
    help = (
        "Set a USD spend cap on an organization, or on one of its keys with --key, for a period "
        "(day and month are UTC); remove it with --delete. Every change is recorded in the audit log. "
        "Example: set_spend_limit --org acme --period day --usd 25"
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="Organization slug")
        parser.add_argument("--key", help="API key prefix (e.g. igw-AbCd1234) to cap one key instead")
        parser.add_argument("--period", required=True, choices=["day", "month", "total"])
        parser.add_argument("--usd", help="The cap in USD, e.g. 25 or 0.50")
        parser.add_argument("--delete", action="store_true", help="Remove the cap")

    def handle(self, *args, org, key, period, usd, delete, **options):
        if delete == (usd is not None):
            raise CommandError("Give either --usd AMOUNT or --delete, not both and not neither")
        try:
            organization = org_get(slug=org)
            if delete:
                spend_limit_remove(organization=organization, key_prefix=key, period=period, actor=Actor.command())
                self.stdout.write(f"Removed the {period} cap on {key or organization.slug}.")
                return
            try:
                amount = parse_usd(usd)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            limit = spend_limit_save(
                organization=organization, key_prefix=key, period=period, amount=amount, actor=Actor.command()
            )
        except (AccountError, BillingError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"The {period} cap on {limit.owner_label} is now ${format_usd(limit.amount)}.")
