from django.core.management.base import BaseCommand, CommandError

from accounts.audit import Actor
from accounts.models import Membership
from accounts.services import AccountError, member_add, org_get
from gateway.core.env import local_base_url


class Command(BaseCommand):
    help = (
        "Add a person to an organization with a role. A new person is created with an unusable password "
        "and a one-time link to choose one is printed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="Organization slug")
        parser.add_argument("--username", required=True, help="An existing username, or the new person's")
        parser.add_argument("--email", default="", help="Email address of a new person")
        parser.add_argument("--role", required=True, choices=Membership.Role.values, help="The role in the org")
        parser.add_argument(
            "--base-url",
            help="Where the dashboard is served, for the set-password link (default: PUBLIC_BASE_URL, else "
            "http://127.0.0.1:$PORT, the address `make run` serves on)",
        )

    def handle(self, *args, org, username, email, role, base_url, **options):
        try:
            added = member_add(
                organization=org_get(slug=org), actor=Actor.command(), username=username, email=email, role=role
            )
        except AccountError as exc:
            raise CommandError(str(exc)) from None
        user = added.membership.user
        self.stdout.write(f"Added {user.username} to '{org}' as {role}.")
        if added.set_password_path:
            self.stdout.write("New user; send them this one-time link to choose a password:")
            self.stdout.write((base_url or local_base_url()).rstrip("/") + added.set_password_path)
