from django.core.management.base import BaseCommand, CommandError

from accounts.audit import Actor
from billing.models import PriceConfig
from billing.services import BillingError, price_delete, price_set
from gateway.core.money import format_usd, parse_usd
from providers.base import EDIT, GENERATE


class Command(BaseCommand):
    help = (
        "Set the price per image for a (model, quality, size) combination, or remove it with --delete. "
        "With --action edit, the price per edited image (an edit without one costs the generate price). "
        "Applies to new requests only. Example: set_price dall-e-3 hd 1024x1024 0.08"
    )

    def add_arguments(self, parser):
        parser.add_argument("model")
        parser.add_argument("quality")
        parser.add_argument("size")
        parser.add_argument("usd", nargs="?", help="Price per image in USD, e.g. 0.04")
        parser.add_argument(
            "--action",
            choices=PriceConfig.Action.values,
            default=GENERATE,
            help="Price generated images (the default) or edited images",
        )
        parser.add_argument("--delete", action="store_true", help="Remove the price config")

    def handle(self, *args, model, quality, size, usd, action, delete, **options):
        if delete == (usd is not None):
            raise CommandError("Give either a USD price or --delete, not both and not neither")
        edit = " edit" if action == EDIT else ""
        try:
            if delete:
                price_delete(model=model, quality=quality, size=size, action=action, actor=Actor.command())
                self.stdout.write(f"Removed the{edit} price for {model} ({quality}, {size}).")
                return
            try:
                amount = parse_usd(usd)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            config = price_set(
                model=model, quality=quality, size=size, unit_price=amount, action=action, actor=Actor.command()
            )
        except BillingError as exc:
            raise CommandError(str(exc)) from None
        unit = "per edited image" if action == EDIT else "per image"
        self.stdout.write(f"{model} ({quality}, {size}) now costs ${format_usd(config.unit_price)} {unit}.")
