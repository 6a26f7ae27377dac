from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.audit import Actor
from accounts.services import AccountError, org_get, org_require_end_user_set
from billing.limits import end_user_limits_delete, end_user_limits_save
from billing.models import cap_owner_label
from billing.services import BillingError
from gateway.core.money import format_usd, parse_usd

NONE = "none"
RATE_OPTIONS = {"images_per_minute": "--images-per-minute", "images_per_day": "--images-per-day"}
CAP_OPTIONS = {"day": "usd_per_day", "month": "usd_per_month", "total": "usd_total"}


def _image_limit(option: str, text: str) -> int | None:
    if text.lower() == NONE:
        return None
    if not text.isdigit() or int(text) < 1:
        raise CommandError(f"{option} takes a whole number of images of at least 1 (or 'none'), not '{text}'")
    return int(text)


def _cap(option: str, text: str) -> Decimal | None:
    if text.lower() == NONE:
        return None
    try:
        return parse_usd(text)
    except ValueError as exc:
        raise CommandError(f"--{option.replace('_', '-')}: {exc}") from None


class Command(BaseCommand):
    help = (
        "Set the limits of an organization's end users (the `user` field of image requests): images per minute and "
        "per day, and USD spend caps per UTC day, UTC month or in total. Without --user they are the default every "
        "end user has; with --user they are that end user's own and replace the default window by window and period "
        "by period. A limit not given is kept; 'none' lifts one. --delete removes every limit and cap of that end user "
        "(or of the default). --require-user on makes every image request name its end user (400 end_user_required "
        "otherwise). Every change is recorded in the audit log. "
        "Example: set_end_user_limit --org acme --images-per-minute 3 --usd-per-day 5"
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="Organization slug")
        parser.add_argument("--user", help="The end user id, as requests send it in `user`; omit for the default")
        parser.add_argument("--images-per-minute", metavar="N", help="Images per rolling minute, or 'none'")
        parser.add_argument("--images-per-day", metavar="N", help="Images per UTC day, or 'none'")
        parser.add_argument("--usd-per-day", metavar="X", help="Spend cap in USD per UTC day, or 'none'")
        parser.add_argument("--usd-per-month", metavar="X", help="Spend cap in USD per UTC month, or 'none'")
        parser.add_argument("--usd-total", metavar="X", help="Spend cap in USD in total, or 'none'")
        parser.add_argument("--delete", action="store_true", help="Remove every limit and cap of this end user")
        parser.add_argument(
            "--require-user",
            choices=["on", "off"],
            help="Whether the organization refuses image requests that name no end user",
        )

    def handle(self, *args, org, user, delete, require_user, **options):
        end_user = user if user is not None else ""
        if user == "":
            raise CommandError("--user needs an end user id; omit it to set the default for every end user")
        rates = {
            name: _image_limit(flag, options[name]) for name, flag in RATE_OPTIONS.items() if options[name] is not None
        }
        caps = {period: _cap(name, options[name]) for period, name in CAP_OPTIONS.items() if options[name] is not None}
        if delete and (rates or caps):
            raise CommandError("--delete removes every limit of the end user: give it without limits or caps")
        if not (delete or rates or caps or require_user):
            raise CommandError(
                "Nothing to do: give --images-per-minute, --images-per-day, --usd-per-day, --usd-per-month, "
                "--usd-total, --delete or --require-user"
            )
        owner = cap_owner_label(end_user=end_user)
        try:
            organization = org_get(slug=org)
            with transaction.atomic():
                if require_user is not None:
                    org_require_end_user_set(
                        organization=organization, actor=Actor.command(), required=require_user == "on"
                    )
                if delete:
                    end_user_limits_delete(organization=organization, end_user=end_user, actor=Actor.command())
                elif rates or caps:
                    end_user_limits_save(
                        organization=organization, end_user=end_user, actor=Actor.command(), rates=rates, caps=caps
                    )
        except (AccountError, BillingError) as exc:
            raise CommandError(str(exc)) from None
        if require_user is not None:
            required = "must" if require_user == "on" else "need not"
            self.stdout.write(f"Image requests of {organization.slug} {required} name their end user.")
        if delete:
            self.stdout.write(f"Removed the limits and caps of {owner} in {organization.slug}.")
        elif rates or caps:
            changed = [
                f"{flag.lstrip('-')} {_shown(rates[name])}" for name, flag in RATE_OPTIONS.items() if name in rates
            ]
            changed += [
                f"{name.replace('_', '-')} {_shown(caps[period])}"
                for period, name in CAP_OPTIONS.items()
                if period in caps
            ]
            self.stdout.write(f"Set {', '.join(changed)} for {owner} in {organization.slug}.")


def _shown(value: int | Decimal | None) -> str:
    if value is None:
        return "none"
    return f"${format_usd(value)}" if isinstance(value, Decimal) else str(value)
