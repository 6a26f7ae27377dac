from django.core.management import call_command
from django.core.management.base import BaseCommand

from accounts.services import api_key_create, org_get
from gateway.core.env import env_int
from gateway.seed import ADMIN_USERNAME, DEMO_ORG_SLUG, admin_password_file


class Command(BaseCommand):
    help = "What `make run` does before serving: seed the defaults, print the admin login and a new demo API key."

    def handle(self, *args, **options):
        call_command("seed_defaults", stdout=self.stdout)
        created = api_key_create(organization=org_get(slug=DEMO_ORG_SLUG), name="make run")
        port = env_int("PORT", 8000)
        path = admin_password_file()
        password = path.read_text().strip() if path.exists() else "(set earlier; not stored)"
        self.stdout.write(
            "\n"
            f"  Gateway:      http://127.0.0.1:{port}/v1/images/generations\n"
            f"  Dashboard:    http://127.0.0.1:{port}/  user '{ADMIN_USERNAME}'  password {password}\n"
            f"  Admin login:  http://127.0.0.1:{port}/admin/  user '{ADMIN_USERNAME}'  password {password}\n"
            f"  Demo API key: {created.plaintext}\n"
            "\n"
            f"  curl http://127.0.0.1:{port}/v1/images/generations -H 'Authorization: Bearer {created.plaintext}' "
            "-H 'Content-Type: application/json' -d '{\"prompt\": \"a lighthouse at dawn\"}'\n"
            f"  curl http://127.0.0.1:{port}/v1/images/edits -H 'Authorization: Bearer {created.plaintext}' "
            "-F model=gpt-image-2 -F prompt='add a red kite' -F image=@photo.png\n"
        )
