"""In a real browser: set a spend cap, see the next SDK request over it refused, and the alert on the Alerts page."""

import openai
import pytest

from accounts.models import AuditEvent
from billing.models import SpendAlert, SpendLimit, UsageLineItem
from tests.governance import small_image_price

pytestmark = pytest.mark.django_db(transaction=True)

SMALL = {"model": "dall-e-2", "size": "256x256", "response_format": "b64_json"}


def test_spend_cap_set_in_the_browser_is_enforced_and_alerts(page, live_gateway, sign_in, people, make_key, shoot):
    small_image_price("0.04")
    # A new cap counts what was already spent in its period; start acme's day from nothing so the figures read simply.
    UsageLineItem.objects.filter(organization=people.acme).delete()
    key = make_key(people.acme, name="capped key", created_by=people.alice).plaintext
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=key, max_retries=0, timeout=30)

    sign_in(page, "alice")
    page.goto(f"{live_gateway}/orgs/acme/limits/")
    page.fill("#id_amount", "1,5")
    page.click("button:has-text('Save cap')")
    page.wait_for_selector("#id_amount-error")
    assert "is not an amount in USD" in page.locator("#id_amount-error").inner_text()

    page.select_option("#id_scope", "")
    page.select_option("#id_period", "day")
    page.fill("#id_amount", "0.10")
    page.click("button:has-text('Save cap')")
    page.wait_for_selector(".flash")
    assert "The day cap on organization 'acme' is $0.10." in page.locator(".flash").inner_text()
    limit = SpendLimit.objects.get(organization=people.acme)
    assert page.locator(f"#spend-limit-{limit.pk} input[name=amount]").input_value() == "0.10"

    # Two images at $0.04 fit under $0.10 and cross 80 %; the third would pass the cap.
    for _ in range(2):
        assert client.images.generate(prompt="a small square", **SMALL).data[0].b64_json
    with pytest.raises(openai.RateLimitError) as refused:
        client.images.generate(prompt="one too many", **SMALL)
    assert refused.value.code == "insufficient_quota"
    assert "daily cap of $0.10 on organization 'acme' has $0.02 left" in refused.value.message

    page.reload()
    assert "$0.08 / $0.10" in page.locator(f"#cap-{limit.pk}").inner_text()
    shoot(page, "limits-caps")

    page.click("nav >> text=Alerts")
    page.wait_for_url(f"{live_gateway}/orgs/acme/alerts/")
    alert = SpendAlert.objects.get(spend_limit=limit)
    row = page.locator(f"#alert-{alert.pk}")
    assert "80%" in row.inner_text() and "$0.08" in row.inner_text() and "$0.10" in row.inner_text()
    shoot(page, "alerts")

    page.click("nav >> text=Overview")
    page.wait_for_selector("#cap-bars")
    assert "$0.08 / $0.10" in page.locator("#cap-bars").inner_text()
    shoot(page, "overview-caps")

    # Raising the cap applies to the very next request.
    page.goto(f"{live_gateway}/orgs/acme/limits/")
    page.locator(f"#spend-limit-{limit.pk} input[name=amount]").fill("0.20")
    page.locator(f"#spend-limit-{limit.pk} button:has-text('Save')").click()
    page.wait_for_selector(".flash")
    assert client.images.generate(prompt="after raising the cap", **SMALL).data[0].b64_json
    assert list(
        AuditEvent.objects.filter(action__startswith="spend_limit.").order_by("pk").values_list("action", flat=True)
    ) == [
        "spend_limit.create",
        "spend_limit.update",
    ]

    page.fill("#id_thresholds", "50, 90")
    page.fill("#id_webhook_url", "https://hooks.acme.test/imagegate")
    page.click("button:has-text('Save alert settings')")
    page.wait_for_selector("text=Webhook signing secret")
    shoot(page, "limits-alert-policy")


def test_finance_pages_in_the_dashboard_layout(page, live_gateway, sign_in, people, shoot):
    sign_in(page, "fiona")
    page.goto(f"{live_gateway}/orgs/acme/")
    page.click("nav >> text=Exports")
    page.wait_for_url(f"{live_gateway}/orgs/acme/exports/")
    assert page.locator("nav a[aria-current=page]").inner_text() == "Exports"
    shoot(page, "exports")
    page.click("nav >> text=Statements")
    page.wait_for_url(f"{live_gateway}/orgs/acme/statements/")
    page.locator("#panel table a", has_text="view").first.click()
    page.wait_for_selector("#statement-caps")
    assert page.locator("nav a[aria-current=page]").inner_text() == "Statements"
    shoot(page, "statement")
