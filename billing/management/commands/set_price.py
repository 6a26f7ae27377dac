from django.core.management.base import BaseCommand, CommandError

from accounts.audit import Actor
from billing.services import BillingError, price_delete, price_set
from gateway.core.money import format_usd, parse_usd


class Command(BaseCommand):
    help = (
        "Set the price per image for a (model, quality, size) combination, or remove it with --delete. "
        "Applies to new requests only. Example: set_price dall-e-3 hd 1024x1024 0.08"
    )

    def add_arguments(self, parser):
        parser.add_argument("model")
        parser.add_argument("quality")
        parser.add_argument("size")
        parser.add_argument("usd", nargs="?", help="Price per image in USD, e.g. 0.04")
        parser.add_argument("--delete", action="store_true", help="Remove the price config")

    def handle(self, *args, model, quality, size, usd, delete, **options):
        if delete == (usd is not None):
            raise CommandError("Give either a USD price or --delete, not both and not neither")
        try:
            if delete:
                price_delete(model=model, quality=quality, size=size, actor=Actor.command())
                self.stdout.write(f"Removed the price for {model} ({quality}, {size}).")
                return
            try:
                amount = parse_usd(usd)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            config = price_set(model=model, quality=quality, size=size, unit_price=amount, actor=Actor.command())
        except BillingError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{model} ({quality}, {size}) now costs ${format_usd(config.unit_price)} per image.")
