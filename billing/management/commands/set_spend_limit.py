from django.core.management.base import BaseCommand, CommandError

from accounts.audit import Actor
from accounts.services import AccountError, org_get
from billing.limits import spend_limit_remove, spend_limit_save
from billing.models import SpendLimit, cap_owner_label
from billing.services import BillingError
from gateway.core.money import format_usd, parse_usd

END_USER_MAX_LENGTH = SpendLimit._meta.get_field("end_user").max_length


class Command(BaseCommand):
    help = (
        "Set a USD spend cap for a period (day and month are UTC) on an organization, or on one of its keys "
        "(--key), projects (--project), end users (--end-user, the request's `user` field) or on every end user "
        "by default (--default-end-user, counted for each end user apart); remove it with --delete. Every change "
        "is recorded in the audit log. Example: set_spend_limit --org acme --project search --period day --usd 25"
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="Organization slug")
        owner = parser.add_mutually_exclusive_group()
        owner.add_argument("--key", help="API key prefix (e.g. igw-AbCd1234) to cap one key instead")
        owner.add_argument("--project", help="Project name to cap the project (all of its keys together)")
        owner.add_argument("--end-user", help="End user ID (the request's `user`) to cap that end user")
        owner.add_argument(
            "--default-end-user",
            action="store_true",
            help="Cap every end user by default, each counted apart (a named end user's cap replaces it)",
        )
        parser.add_argument("--period", required=True, choices=["day", "month", "total"])
        parser.add_argument("--usd", help="The cap in USD, e.g. 25 or 0.50")
        parser.add_argument("--delete", action="store_true", help="Remove the cap")

    def handle(self, *args, org, key, project, end_user, default_end_user, period, usd, delete, **options):
        if delete == (usd is not None):
            raise CommandError("Give either --usd AMOUNT or --delete, not both and not neither")
        if end_user is not None and not end_user.strip():
            raise CommandError("--end-user needs an end user ID; use --default-end-user to cap every end user")
        if end_user is not None and len(end_user) > END_USER_MAX_LENGTH:
            raise CommandError(f"--end-user is at most {END_USER_MAX_LENGTH} characters")
        owner = {"key_prefix": key, "project": project, "end_user": "" if default_end_user else end_user}
        try:
            organization = org_get(slug=org)
            if delete:
                spend_limit_remove(organization=organization, period=period, actor=Actor.command(), **owner)
                label = cap_owner_label(
                    organization_slug=organization.slug,
                    api_key_prefix=key,
                    project_name=project,
                    end_user=owner["end_user"],
                )
                self.stdout.write(f"Removed the {period} cap on {label}.")
                return
            try:
                amount = parse_usd(usd)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            limit = spend_limit_save(
                organization=organization, period=period, amount=amount, actor=Actor.command(), **owner
            )
        except (AccountError, BillingError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"The {period} cap on {limit.owner_label} is now ${format_usd(limit.amount)}.")
