"""Operator commands: what they do, their --help, clear errors and non-zero exits."""

import subprocess
import sys
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import ApiKey, Organization
from accounts.services import hash_api_key
from billing.models import PriceConfig
from providers.models import ModelSpec

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def defaults(db):
    run("seed_defaults")


def test_seed_defaults_is_idempotent_and_keeps_admin_edits(defaults):
    assert ModelSpec.objects.count() >= 11 and PriceConfig.objects.count() == 40
    PriceConfig.objects.filter(model__name="dall-e-3", quality="hd", size="1024x1024").update(unit_price="0.5")
    output = run("seed_defaults")
    assert "Created 0 tiers, 0 models, 0 prices, 0 organizations." in output
    assert PriceConfig.objects.get(model__name="dall-e-3", quality="hd", size="1024x1024").unit_price == Decimal("0.5")
    assert Organization.objects.get(slug="demo").tier.slug == "free"


def test_seeded_prices_match_the_public_list(defaults):
    def price(model, quality, size):
        return PriceConfig.objects.get(model__name=model, quality=quality, size=size).unit_price

    assert price("dall-e-2", "standard", "256x256") == Decimal("0.016")
    assert price("dall-e-3", "hd", "1792x1024") == Decimal("0.12")
    assert price("gpt-image-1", "high", "1536x1024") == Decimal("0.25")
    assert price("flux-pro", "standard", "1024x1024") == Decimal("0.055")
    assert price("sdxl-turbo", "standard", "1024x1024") == Decimal("0.01")
    dalle3 = ModelSpec.objects.get(name="dall-e-3")
    assert (dalle3.max_n, dalle3.max_prompt_length, dalle3.styles) == (1, 4000, ["vivid", "natural"])
    assert not ModelSpec.objects.get(name="gpt-4o").supports_images


def test_create_org_and_errors(defaults):
    assert "Created organization 'acme'" in run("create_org", "acme", "--name", "Acme Inc", "--tier", "pro")
    assert Organization.objects.get(slug="acme").tier.slug == "pro"
    with pytest.raises(CommandError, match="already exists"):
        run("create_org", "acme")
    with pytest.raises(CommandError, match="Unknown tier 'gold'"):
        run("create_org", "other", "--tier", "gold")
    with pytest.raises(CommandError, match="not a valid slug"):
        run("create_org", "Not A Slug")


def test_create_api_key_prints_key_alone_on_last_line(defaults):
    run("create_org", "acme")
    output = run("create_api_key", "--org", "acme", "--name", "ci", "--expires-days", "30", "--models", "dall-e-3")
    plaintext = output.strip().splitlines()[-1]
    key = ApiKey.objects.get(prefix=plaintext[:12])
    assert key.key_hash == hash_api_key(plaintext)
    assert key.name == "ci" and key.allowed_models == ["dall-e-3"] and key.expires_at is not None
    with pytest.raises(CommandError, match="Unknown image model"):
        run("create_api_key", "--org", "acme", "--models", "dall-e-9")
    with pytest.raises(CommandError, match="Unknown organization 'nope'"):
        run("create_api_key", "--org", "nope")


def test_revoke_api_key(defaults):
    run("create_org", "acme")
    plaintext = run("create_api_key", "--org", "acme").strip().splitlines()[-1]
    prefix = ApiKey.objects.get().prefix
    assert "Revoked" in run("revoke_api_key", prefix)
    assert ApiKey.objects.get().revoked_at is not None
    with pytest.raises(CommandError, match="No API key with prefix"):
        run("revoke_api_key", "igw-unknown1")
    assert plaintext.startswith(prefix)


def test_set_price_create_change_delete_and_errors(defaults):
    assert "$0.09 per image" in run("set_price", "dall-e-3", "hd", "1024x1024", "0.09")
    assert PriceConfig.objects.get(model__name="dall-e-3", quality="hd", size="1024x1024").unit_price == Decimal("0.09")
    run("set_price", "dall-e-3", "hd", "1024x1024", "--delete")
    assert not PriceConfig.objects.filter(model__name="dall-e-3", quality="hd", size="1024x1024").exists()
    for args, message in [
        (("dall-e-3", "hd", "1024x1024", "abc"), "not an amount"),
        (("dall-e-3", "hd", "1024x1024", "-1"), "non-negative"),
        (("dall-e-3", "hd", "1024x1024", "0.0000001"), "decimal places"),
        (("dall-e-9", "hd", "1024x1024", "1"), "Unknown model"),
        (("dall-e-3", "ultra", "1024x1024", "1"), "no quality 'ultra'"),
        (("dall-e-3", "hd", "5x5", "1"), "no size '5x5'"),
        (("dall-e-3", "hd", "1024x1024"), "either a USD price or --delete"),
        (("dall-e-3", "hd", "1024x1024", "--delete"), "No price is configured"),
    ]:
        with pytest.raises(CommandError, match=message):
            run("set_price", *args)


@pytest.mark.parametrize("command", ["create_org", "create_api_key", "revoke_api_key", "set_price", "seed_defaults"])
def test_every_command_has_help(command):
    result = subprocess.run(
        [sys.executable, "manage.py", command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "usage:" in result.stdout


def test_bad_arguments_exit_non_zero_with_a_clear_message():
    result = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", "--org", "x", "--expires-days", "soon"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "not a whole number of days" in result.stderr
