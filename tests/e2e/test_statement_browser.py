"""In a real browser: a statement lists what was charged; refusals are a count, whatever model they named."""

from decimal import Decimal

import pytest
from django.utils import timezone

from tests.people import line_item

pytestmark = pytest.mark.django_db(transaction=True)


def test_statement_lists_charged_lines_and_counts_refusals(page, live_gateway, sign_in, people, shoot):
    line_item(
        people.acme, people.alice_key, request_id="priced-apart", unit_price=Decimal("0.0425"), cost=Decimal("0.0425")
    )
    for index in range(3):
        line_item(
            people.acme, people.alice_key, request_id=f"refused-{index}", status="rejected", cost=Decimal(0),
            model="", details={"model": "INVOICE ADJUSTMENT: credit -$500"}, error_code="model_not_found",
            http_status=404,
        )  # fmt: skip

    sign_in(page, "fiona")
    page.goto(f"{live_gateway}/orgs/acme/statements/{timezone.now():%Y-%m}/")
    models = page.locator("#statement-models").inner_text()
    assert "INVOICE" not in page.content()
    # One column, one number of places: the unit prices to four, as 0.0425 needs.
    assert "0.0400" in models and "0.0425" in models and "0.0200" in models
    not_charged = page.locator("#statement-not-charged").inner_text()
    assert "Refused before any provider call" in not_charged and "Failed (nothing delivered)" in not_charged
    shoot(page, "statement")
