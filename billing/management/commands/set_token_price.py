from django.core.management.base import BaseCommand, CommandError

from accounts.audit import Actor
from billing.services import TOKEN_RATE_FIELDS, BillingError, token_price_delete, token_price_set
from gateway.core.money import format_usd, parse_usd


class Command(BaseCommand):
    help = (
        "Price a model per token instead of per image (USD per 1M tokens), or return it to its per-image grid "
        "with --delete. Requests hold an upper bound before the call and are charged what the provider's usage "
        "says. Example: set_token_price gpt-image-2 --text-input 5 --image-input 8 --image-output 30 "
        "--cached-text-input 1.25 --cached-image-input 2"
    )

    def add_arguments(self, parser):
        parser.add_argument("model")
        for name in TOKEN_RATE_FIELDS:
            optional = name.startswith("cached") or name == "text_output"
            note = {
                "cached_text_input": " (default: the text input rate)",
                "cached_image_input": " (default: the image input rate)",
                "text_output": " (default: the image output rate)",
            }.get(name, "")
            parser.add_argument(
                f"--{name.replace('_', '-')}",
                dest=name,
                metavar="USD",
                help=f"USD per 1M {name.replace('_', ' ')} tokens{note}" + ("" if optional else " (required)"),
            )
        parser.add_argument("--delete", action="store_true", help="Return the model to its per-image price grid")

    def handle(self, *args, model, delete, **options):
        given = {name: options[name] for name in TOKEN_RATE_FIELDS if options.get(name) is not None}
        try:
            if delete:
                if given:
                    raise CommandError("--delete takes no rates")
                token_price_delete(model=model, actor=Actor.command())
                self.stdout.write(f"{model} is priced per image again, by its price grid.")
                return
            rates = {}
            for name, text in given.items():
                try:
                    rates[name] = parse_usd(text)
                except ValueError as exc:
                    raise CommandError(f"--{name.replace('_', '-')}: {exc}") from None
            price = token_price_set(model=model, rates=rates, actor=Actor.command())
        except BillingError as exc:
            raise CommandError(str(exc)) from None
        shown = ", ".join(
            f"{name.replace('_', ' ')} ${format_usd(getattr(price, name))}"
            for name in TOKEN_RATE_FIELDS
            if getattr(price, name) is not None
        )
        self.stdout.write(f"{model} is now priced per 1M tokens: {shown}.")
