from django.core.management.base import BaseCommand, CommandError

from accounts.audit import Actor
from accounts.services import AccountError, api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key by its visible prefix (e.g. igw-AbCd1234). Takes effect on the next request."

    def add_arguments(self, parser):
        parser.add_argument("prefix", help="The key's prefix, as shown when it was created")

    def handle(self, *args, prefix, **options):
        try:
            api_key = api_key_revoke(prefix=prefix.rstrip("…").strip(), actor=Actor.command())
        except AccountError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Revoked API key {api_key.prefix}… of '{api_key.organization.slug}'.")
