"""Billing's operator commands: prices."""

from decimal import Decimal

import pytest
from django.core.management.base import CommandError

from billing.models import PriceConfig
from tests.conftest import run

pytestmark = pytest.mark.django_db


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


def test_set_price_for_edits_is_its_own_price_and_only_for_models_that_edit(defaults):
    generate = PriceConfig.objects.get(model__name="dall-e-2", action="generate", quality="standard", size="256x256")
    assert "$0.03 per edited image" in run("set_price", "dall-e-2", "standard", "256x256", "0.03", "--action", "edit")
    edit = PriceConfig.objects.get(model__name="dall-e-2", action="edit", quality="standard", size="256x256")
    assert edit.unit_price == Decimal("0.03")
    generate.refresh_from_db()
    assert generate.unit_price == Decimal("0.016")
    removed = run("set_price", "dall-e-2", "standard", "256x256", "--action", "edit", "--delete")
    assert "Removed the edit price" in removed
    assert PriceConfig.objects.filter(pk=generate.pk).exists()
    with pytest.raises(CommandError, match="cannot edit"):
        run("set_price", "dall-e-3", "hd", "1024x1024", "0.1", "--action", "edit")
    with pytest.raises(CommandError, match="No edit price is configured"):
        run("set_price", "dall-e-2", "standard", "256x256", "--action", "edit", "--delete")
