from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import ApiKey
from accounts.services import AccountError, api_key_create, org_get, project_get
from providers.models import ModelSpec


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of days") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1 day")
    return value


class Command(BaseCommand):
    help = "Create an API key for an organization. The key is printed once, alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="Organization slug")
        parser.add_argument("--name", default="", help="A name to recognise the key by")
        parser.add_argument("--expires-days", type=_positive_int, help="Expire the key after N days")
        parser.add_argument("--models", default="", help="Comma-separated models the key may use (default: all)")
        parser.add_argument(
            "--usage-scope",
            choices=ApiKey.UsageScope.values,
            default=ApiKey.UsageScope.OWN,
            help="Usage the key may read from /api/usage: its own requests (default) or the whole organization",
        )
        parser.add_argument("--project", default="", help="Put the key in this project of the organization")

    def handle(self, *args, org, name, expires_days, models, usage_scope, project, **options):
        allowed = [model.strip() for model in models.split(",") if model.strip()]
        known = set(ModelSpec.objects.filter(supports_images=True).values_list("name", flat=True))
        unknown = sorted(set(allowed) - known)
        if unknown:
            raise CommandError(f"Unknown image model(s): {', '.join(unknown)}. Known: {', '.join(sorted(known))}")
        try:
            organization = org_get(slug=org)
            chosen_project = project_get(organization=organization, name=project) if project.strip() else None
        except AccountError as exc:
            raise CommandError(str(exc)) from None
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        created = api_key_create(
            organization=organization,
            name=name,
            expires_at=expires_at,
            allowed_models=allowed,
            usage_scope=usage_scope,
            project=chosen_project,
            actor=Actor.command(),
        )
        key = created.api_key
        self.stdout.write(
            f"Created API key {key.prefix}… for '{organization.slug}'"
            + (f", expires {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else "")
            + (f", models {', '.join(key.allowed_models)}" if key.allowed_models else "")
            + (f", in project '{chosen_project.name}'" if chosen_project else "")
            + (", reads the whole organization's usage" if key.usage_scope == ApiKey.UsageScope.ORGANIZATION else "")
            + ". Store it now; it cannot be shown again:"
        )
        self.stdout.write(created.plaintext)
