"""Existing installs learn what changed upstream by November 2026 (new installs get it from seed_defaults).

Names retired or retiring upstream are marked so, with the successor that serves them; Imagen moves to
the `google` provider (its `:predict` endpoint is gone); models that had no list rates get them, so
their line items record what the provider charged. Rows an operator already changed are left alone.
"""

import datetime

from django.db import migrations

LIFECYCLE = {
    "dall-e-2": ("retired", datetime.date(2026, 5, 12), "gpt-image-2.5-sunburst"),
    "dall-e-3": ("retired", datetime.date(2026, 5, 12), "gpt-image-2.5-sunburst"),
    "gpt-image-1": ("retired", datetime.date(2026, 10, 23), "gpt-image-2.5-sunburst"),
    "gpt-image-1.5": ("deprecated", datetime.date(2026, 12, 1), "gpt-image-2.6-sunburst"),
    "gpt-image-1-mini": ("deprecated", datetime.date(2026, 12, 1), "gpt-image-2.6-sunburst"),
    "imagen-3": ("retired", datetime.date(2026, 8, 17), "gemini-3.1-flash-image"),
    "ideogram-2": ("deprecated", None, "ideogram-4-5"),
}
LIST_RATES = {
    "dall-e-2": {"basis": "image", "prices": {"256x256": "0.016", "512x512": "0.018", "1024x1024": "0.02"}},
    "dall-e-3": {
        "basis": "image",
        "prices": {"standard 1024x1024": "0.04", "standard": "0.08", "hd 1024x1024": "0.08", "hd": "0.12"},
    },
    "imagen-3": {"basis": "image", "prices": {"*": "0.04"}},
    "flux-pro": {"basis": "image", "prices": {"*": "0.05"}},
    "flux-1.1-pro": {"basis": "image", "prices": {"*": "0.04"}},
    "flux-dev": {"basis": "image", "prices": {"*": "0.025"}},
    "ideogram-2": {"basis": "image", "prices": {"*": "0.08"}},
    "stable-diffusion-3": {"basis": "image", "prices": {"*": "0.035"}},
}


def catalog_update(apps, schema_editor):
    ModelSpec = apps.get_model("providers", "ModelSpec")
    ModelSpec.objects.filter(provider="imagen").update(provider="google")
    for name, (status, shutdown, successor) in LIFECYCLE.items():
        ModelSpec.objects.filter(name=name, status="live", successor="").update(
            status=status, shutdown_date=shutdown, successor=successor
        )
    for name, rates in LIST_RATES.items():
        ModelSpec.objects.filter(name=name, list_rates={}).update(list_rates=rates)


class Migration(migrations.Migration):
    dependencies = [("providers", "0002_model_lifecycle_sizes_rates")]

    operations = [migrations.RunPython(catalog_update, migrations.RunPython.noop)]
