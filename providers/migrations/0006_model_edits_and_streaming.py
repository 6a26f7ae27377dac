"""Models learn whether they edit images and stream partial images (new installs get it from seed_defaults).

Existing rows of the seeded catalog get what the catalog of this release says; a row an operator already
gave an edit spec is left alone.
"""

from django.db import migrations, models

GPT_IMAGE_EDIT = {"max_images": 16, "mask": True, "parameters": {"input_fidelity": ["high", "low"]}}
STABILITY_EDIT = {"max_images": 1, "mask": False}
GEMINI_EDIT = {"max_images": 14, "mask": False}
EDITS = {
    **{
        name: GPT_IMAGE_EDIT
        for name in (
            "gpt-image-2",
            "gpt-image-2.5-flare",
            "gpt-image-2.5-sunburst",
            "gpt-image-2.6-flare",
            "gpt-image-2.6-sunburst",
            "gpt-image-1.5",
            "gpt-image-1",
        )
    },
    "gpt-image-1-mini": {"max_images": 16, "mask": True},
    "dall-e-2": {"max_images": 1, "mask": True},
    "gemini-3.1-flash-image": GEMINI_EDIT,
    "gemini-3-pro-image": GEMINI_EDIT,
    "flux-2-pro": {"max_images": 8, "mask": False},
    "flux-2-max": {"max_images": 8, "mask": False},
    "flux-2-flex": {"max_images": 8, "mask": False},
    "flux-2-klein-4b": {"max_images": 4, "mask": False},
    "flux-2-klein-9b": {"max_images": 4, "mask": False},
    "flux-kontext-pro": {"max_images": 1, "mask": False},
    **{
        name: STABILITY_EDIT
        for name in ("stable-image-ultra", "sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "stable-diffusion-3")
    },
}
STREAMING = [name for name in EDITS if name.startswith("gpt-image-")]


def edits_and_streaming(apps, schema_editor):
    ModelSpec = apps.get_model("providers", "ModelSpec")
    for name, edit in EDITS.items():
        ModelSpec.objects.filter(name=name, edit={}).update(edit=edit)
    ModelSpec.objects.filter(name__in=STREAMING).update(streams=True)


class Migration(migrations.Migration):
    dependencies = [("providers", "0005_default_response_format")]

    operations = [
        migrations.AddField(
            model_name="modelspec",
            name="edit",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text='Empty: cannot edit. E.g. {"max_images": 16, "mask": true}.',
            ),
        ),
        migrations.AddField(
            model_name="modelspec",
            name="streams",
            field=models.BooleanField(default=False, help_text="Streams partial images (stream: true)."),
        ),
        migrations.RunPython(edits_and_streaming, migrations.RunPython.noop),
    ]
