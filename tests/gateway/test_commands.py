"""The project's commands: seed_defaults, and a --help for every operator command of every app."""

import subprocess
import sys
from decimal import Decimal

import pytest
from django.core.management import get_commands

from accounts.models import Organization
from billing.models import PriceConfig, TokenPrice
from billing.prices import DEFAULT_EDIT_PRICES, DEFAULT_PRICES, DEFAULT_TOKEN_PRICES
from providers.catalog import DEFAULT_MODELS
from providers.models import ModelSpec
from tests.conftest import run

pytestmark = pytest.mark.django_db

APPS = ("gateway", "accounts", "billing", "providers")


def test_seed_defaults_is_idempotent_and_keeps_admin_edits(defaults):
    assert ModelSpec.objects.count() == len(DEFAULT_MODELS)
    assert PriceConfig.objects.filter(action="generate").count() == len(DEFAULT_PRICES)
    assert PriceConfig.objects.filter(action="edit").count() == len(DEFAULT_EDIT_PRICES) > 0
    assert TokenPrice.objects.count() == len(DEFAULT_TOKEN_PRICES) > 0
    PriceConfig.objects.filter(model__name="dall-e-3", quality="hd", size="1024x1024").update(unit_price="0.5")
    output = run("seed_defaults")
    assert "Created 0 tiers, 0 models, 0 prices, 0 organizations." in output
    assert PriceConfig.objects.get(model__name="dall-e-3", quality="hd", size="1024x1024").unit_price == Decimal("0.5")
    assert Organization.objects.get(slug="demo").tier.slug == "free"


def test_seeded_prices_match_the_public_list(defaults):
    def price(model, quality, size, action="generate"):
        return PriceConfig.objects.get(model__name=model, action=action, quality=quality, size=size).unit_price

    assert price("dall-e-2", "standard", "256x256") == Decimal("0.016")
    assert price("dall-e-3", "hd", "1792x1024") == Decimal("0.12")
    assert price("gpt-image-1", "high", "1536x1024") == Decimal("0.25")
    assert price("flux-pro", "standard", "1024x1024") == Decimal("0.055")
    assert price("sdxl-turbo", "standard", "1024x1024") == Decimal("0.01")
    # FLUX.2 image-to-image as BFL lists it for 1 MP; a larger output adds its megapixels as for a generation.
    flux2_1mp_edits = {"klein-4b": "0.015", "klein-9b": "0.017", "pro": "0.045", "max": "0.10", "flex": "0.10"}
    for name, usd in flux2_1mp_edits.items():
        assert price(f"flux-2-{name}", "standard", "1mp", action="edit") == Decimal(usd)
    assert price("flux-2-pro", "standard", "2mp", action="edit") == Decimal("0.06")
    assert price("flux-2-pro", "standard", "2mp") == Decimal("0.045")
    dalle3 = ModelSpec.objects.get(name="dall-e-3")
    assert (dalle3.max_n, dalle3.max_prompt_length, dalle3.styles) == (1, 4000, ["vivid", "natural"])
    assert not ModelSpec.objects.get(name="gpt-4o").supports_images


@pytest.mark.parametrize("command", sorted(name for name, app in get_commands().items() if app in APPS))
def test_every_command_has_help(command):
    result = subprocess.run(
        [sys.executable, "manage.py", command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "usage:" in result.stdout
