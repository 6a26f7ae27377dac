from django.core.management.base import BaseCommand, CommandError

from accounts.audit import Actor
from accounts.services import AccountError, org_get, project_create


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


class Command(BaseCommand):
    help = (
        "Create a project (a cost center) of an organization. Put keys in it with create_api_key --project, "
        "cap its spend with set_spend_limit --project."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The project's name, unique in the organization (at most 100 characters)")
        parser.add_argument("--org", required=True, help="Organization slug")
        parser.add_argument(
            "--images-per-minute", type=_positive_int, help="Images per rolling minute for all its keys together"
        )
        parser.add_argument("--images-per-day", type=_positive_int, help="Images per UTC day for all its keys together")

    def handle(self, *args, name, org, images_per_minute, images_per_day, **options):
        try:
            project = project_create(
                organization=org_get(slug=org),
                name=name,
                images_per_minute=images_per_minute,
                images_per_day=images_per_day,
                actor=Actor.command(),
            )
        except AccountError as exc:
            raise CommandError(str(exc)) from None
        limits = [
            f"{value} images per {period}"
            for value, period in ((project.images_per_minute, "minute"), (project.images_per_day, "day"))
            if value
        ]
        self.stdout.write(
            f"Created project '{project.name}' of '{org}'" + (f", {' and '.join(limits)}" if limits else "") + "."
        )
