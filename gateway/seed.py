"""Loading the default data: tiers, catalog, prices, the demo organization and an admin.

Only what is missing is created, so running it again never undoes an admin's edits.
"""

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from accounts.models import Organization, Tier
from accounts.tiers import DEFAULT_TIERS
from billing.models import PriceConfig, TokenPrice
from billing.prices import DEFAULT_EDIT_PRICES, DEFAULT_PRICES, DEFAULT_TOKEN_PRICES
from providers.catalog import DEFAULT_MODELS
from providers.models import ModelSpec

ADMIN_USERNAME = "admin"
DEMO_ORG_SLUG = "demo"


@dataclass
class SeedReport:
    tiers: int = 0
    models: int = 0
    prices: int = 0
    organizations: int = 0
    admin_password: str | None = None  # set only when the admin was created now


def admin_password_file():
    return settings.VAR_DIR / "admin_password"


@transaction.atomic
def seed_defaults(*, admin_password: str | None = None) -> SeedReport:
    report = SeedReport()
    for tier in DEFAULT_TIERS:
        _, created = Tier.objects.get_or_create(slug=tier["slug"], defaults=tier)
        report.tiers += created
    specs = {}
    for model in DEFAULT_MODELS:
        spec, created = ModelSpec.objects.get_or_create(name=model["name"], defaults=model)
        specs[spec.name] = spec
        report.models += created
    for action, rows in ((PriceConfig.Action.GENERATE, DEFAULT_PRICES), (PriceConfig.Action.EDIT, DEFAULT_EDIT_PRICES)):
        for model_name, quality, size, unit_price in rows:
            _, created = PriceConfig.objects.get_or_create(
                model=specs[model_name], action=action, quality=quality, size=size, defaults={"unit_price": unit_price}
            )
            report.prices += created
    for model_name, rates in DEFAULT_TOKEN_PRICES.items():
        _, created = TokenPrice.objects.get_or_create(model=specs[model_name], defaults=rates)
        report.prices += created
    _, created = Organization.objects.get_or_create(
        slug=DEMO_ORG_SLUG, defaults={"name": "Demo", "tier": Tier.objects.get(slug="free")}
    )
    report.organizations += created
    user_model = get_user_model()
    if not user_model.objects.filter(username=ADMIN_USERNAME).exists():
        password = admin_password or secrets.token_urlsafe(12)
        user_model.objects.create_superuser(ADMIN_USERNAME, email="", password=password)
        report.admin_password = password
    return report
