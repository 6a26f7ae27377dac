"""Bumping the catalog revision when the catalog, a price or a route changes.

Changes made with QuerySet.update() or raw SQL send no signal; the gateway's
catalog snapshot also expires on its own after a short time for that reason.
"""

import secrets

from django.db.models.signals import post_delete, post_save


def catalog_revision_bump(**kwargs) -> None:
    from billing.models import CatalogRevision

    # A fresh random token rather than +1: a recreated row can never repeat a revision
    # that some process still holds a snapshot of.
    CatalogRevision.objects.update_or_create(pk=1, defaults={"revision": secrets.randbits(62)})


def connect() -> None:
    for sender in ("providers.ModelSpec", "billing.PriceConfig", "billing.TokenPrice", "providers.FallbackRoute"):
        post_save.connect(catalog_revision_bump, sender=sender, dispatch_uid=f"catalog-revision-save-{sender}")
        post_delete.connect(catalog_revision_bump, sender=sender, dispatch_uid=f"catalog-revision-delete-{sender}")
