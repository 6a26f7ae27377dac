"""In a real browser: a cap set below what was already spent shows exhausted at once, and its alerts fire."""

from decimal import Decimal

import pytest

from billing.models import SpendAlert, SpendLimit
from tests.people import line_item

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_cap_below_the_spend_is_exhausted_on_limits_and_overview_and_alerts(
    page, live_gateway, sign_in, people, shoot
):
    # The cast spent $0.06 today; $0.24 more makes $0.30 before any cap exists.
    line_item(people.acme, people.alice_key, request_id="spent-before-the-cap", cost=Decimal("0.24"))

    sign_in(page, "alice")
    page.goto(f"{live_gateway}/orgs/acme/limits/")
    page.select_option("#id_scope", "")
    page.select_option("#id_period", "day")
    page.fill("#id_amount", "0.20")
    page.click("button:has-text('Save cap')")
    page.wait_for_selector(".flash")
    limit = SpendLimit.objects.get(organization=people.acme)
    bar = page.locator(f"#cap-{limit.pk}").inner_text()
    assert "$0.30 / $0.20" in bar and "100% used" in bar and "$0.00 left" in bar
    assert page.locator(f"#cap-{limit.pk} .bar-full").count() == 1
    shoot(page, "limits-cap-below-spent")

    page.click("nav >> text=Overview")
    page.wait_for_selector("#cap-bars")
    overview = page.locator(f"#cap-bars #cap-{limit.pk}").inner_text()
    assert "$0.30 / $0.20" in overview and "100% used" in overview and "$0.00 left" in overview

    page.click("nav >> text=Alerts")
    page.wait_for_url(f"{live_gateway}/orgs/acme/alerts/")
    alerts = list(SpendAlert.objects.filter(spend_limit=limit).order_by("threshold"))
    assert [(alert.threshold, alert.spent, alert.cap) for alert in alerts] == [
        (80, Decimal("0.30"), Decimal("0.20")),
        (100, Decimal("0.30"), Decimal("0.20")),
    ]
    for alert in alerts:
        row = page.locator(f"#alert-{alert.pk}").inner_text()
        assert f"{alert.threshold}%" in row and "$0.30" in row and "$0.20" in row
    shoot(page, "alerts-cap-below-spent")

    # Saving the same cap again records nothing more: once per cap, period and threshold.
    page.goto(f"{live_gateway}/orgs/acme/limits/")
    page.locator(f"#spend-limit-{limit.pk} input[name=amount]").fill("0.25")
    page.locator(f"#spend-limit-{limit.pk} button:has-text('Save')").click()
    page.wait_for_selector(".flash")
    assert SpendAlert.objects.filter(spend_limit=limit).count() == 2
