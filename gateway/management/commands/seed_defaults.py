from django.core.management.base import BaseCommand

from gateway.core.env import env_str
from gateway.seed import ADMIN_USERNAME, admin_password_file, seed_defaults


class Command(BaseCommand):
    help = (
        "Load the default tiers, model catalog, price list, the 'demo' organization and an 'admin' user. "
        "Creates only what is missing, so it is safe to run again."
    )

    def handle(self, *args, **options):
        report = seed_defaults(admin_password=env_str("ADMIN_PASSWORD") or None)
        self.stdout.write(
            f"Created {report.tiers} tiers, {report.models} models, {report.prices} prices, "
            f"{report.organizations} organizations."
        )
        if report.admin_password:
            path = admin_password_file()
            path.write_text(report.admin_password)
            path.chmod(0o600)
            self.stdout.write(f"Created superuser '{ADMIN_USERNAME}' (password saved to {path}).")
