from django.db import migrations, models

# The seeded tiers' caps (accounts/tiers.py); a tier an admin made keeps the field's default.
CAPS = {"free": 20, "pro": 100, "enterprise": 500}


def caps_seed(apps, schema_editor):
    Tier = apps.get_model("accounts", "Tier")
    for slug, cap in CAPS.items():
        Tier.objects.filter(slug=slug).update(max_concurrent_requests=cap)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0003_projects_end_user_limits"),
    ]

    operations = [
        migrations.AddField(
            model_name="tier",
            name="max_concurrent_requests",
            field=models.PositiveIntegerField(default=20),
        ),
        migrations.AddField(
            model_name="organization",
            name="custom_max_concurrent_requests",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(caps_seed, migrations.RunPython.noop),
    ]
