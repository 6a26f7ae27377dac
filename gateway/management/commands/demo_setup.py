from django.core.management import call_command
from django.core.management.base import BaseCommand

from accounts.audit import Actor
from accounts.models import ApiKey
from accounts.services import api_key_create, api_key_revoke, org_get
from gateway.core.env import local_base_url, served_base_url_file
from gateway.seed import ADMIN_USERNAME, DEMO_ORG_SLUG, admin_password_file

DEMO_KEY_NAME = "make run"


class Command(BaseCommand):
    help = (
        "What `make run` does before serving: seed the defaults, print the admin login and a new demo API key "
        "(the demo keys of earlier runs are revoked)."
    )

    def handle(self, *args, **options):
        call_command("seed_defaults", stdout=self.stdout)
        demo = org_get(slug=DEMO_ORG_SLUG)
        # One demo key valid at a time: each run's key replaces the last one's.
        earlier = ApiKey.objects.filter(organization=demo, name=DEMO_KEY_NAME, revoked_at__isnull=True)
        revoked = [
            api_key_revoke(prefix=prefix, organization=demo, actor=Actor.command()).prefix
            for prefix in earlier.order_by("pk").values_list("prefix", flat=True)
        ]
        created = api_key_create(organization=demo, name=DEMO_KEY_NAME)
        base = local_base_url()
        served_base_url_file().write_text(base + "\n")
        path = admin_password_file()
        password = path.read_text().strip() if path.exists() else "(set earlier; not stored)"
        self.stdout.write(
            "\n"
            f"  Gateway:      {base}/v1/images/generations\n"
            f"  Dashboard:    {base}/  user '{ADMIN_USERNAME}'  password {password}\n"
            f"  Admin login:  {base}/admin/  user '{ADMIN_USERNAME}'  password {password}\n"
            f"  Demo API key: {created.plaintext}\n"
        )
        if revoked:
            self.stdout.write(f"  Revoked the demo keys of earlier runs: {', '.join(revoked)}\n")
        self.stdout.write(
            "\n"
            f"  curl {base}/v1/images/generations -H 'Authorization: Bearer {created.plaintext}' "
            "-H 'Content-Type: application/json' -d '{\"prompt\": \"a lighthouse at dawn\"}'\n"
            f"  curl {base}/v1/images/edits -H 'Authorization: Bearer {created.plaintext}' "
            "-F model=gpt-image-2 -F prompt='add a red kite' -F image=@photo.png\n"
        )
