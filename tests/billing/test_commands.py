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
