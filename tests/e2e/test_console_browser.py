"""The console in a real browser: the chart's pickers, usage totals and presets, finance's usage-API key,
and every dashboard page at 375 px wide."""

from decimal import Decimal

import httpx
import pytest

from accounts.models import ApiKey
from tests.people import line_item

pytestmark = pytest.mark.django_db(transaction=True)

DAY_MINUTES = 24 * 60
PHONE = {"width": 375, "height": 812}


def url_has(page, text: str) -> None:
    """Wait until htmx has pushed a URL with `text` in its query and finished swapping and settling the page."""
    page.wait_for_function("text => location.search.includes(text)", arg=text)
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")


def some_weeks_of_usage(people) -> None:
    """A few weeks of spend across models, keys and end users, so the chart has something to stack."""
    models = [("dall-e-3", Decimal("0.04")), ("dall-e-2", Decimal("0.02")), ("gpt-image-1", Decimal("0.07"))]
    for day in range(1, 40):
        for index, (model, price) in enumerate(models):
            if (day + index) % 3 == 0:
                continue
            key = people.alice_key if index != 1 else people.bob_key
            n = 1 + (day * (index + 1)) % 4
            line_item(
                people.acme,
                key,
                request_id=f"req-d{day:02d}-{index}",
                minutes_ago=day * DAY_MINUTES + index,
                model=model,
                n=n,
                unit_price=price,
                cost=price * n,
                provider_cost=price * n * Decimal("0.8"),
                end_user=f"user-{(day + index) % 5}",
            )


def test_chart_pickers_and_usage_totals(page, live_gateway, sign_in, people, shoot):
    some_weeks_of_usage(people)
    sign_in(page, "alice")
    page.goto(f"{live_gateway}/orgs/acme/")
    chart = page.locator("#spend-chart")
    assert "Daily spend by model" in chart.locator("h2").inner_text()
    assert chart.locator("svg .axis-y text").first.text_content() == "$0.00"
    assert chart.locator("svg .axis-x text").count() >= 4
    shoot(page, "overview-chart")

    # htmx: changing a picker swaps the panel and keeps the URL in step.
    chart.locator(".presets a", has_text="90 days").click()
    url_has(page, "range=90d")
    page.select_option("#id_group", "key")
    url_has(page, "group=key")
    assert "Daily spend by api key" in chart.locator("h2").inner_text()
    assert chart.locator(".legend li").count() == 2
    shoot(page, "overview-chart-by-key")

    page.click("nav >> text=Usage")
    page.click(".presets >> text=7 days")
    url_has(page, "date_from=")
    requests_in_a_week = int(page.locator("#usage-totals dt:has-text('Requests') + dd").inner_text())
    rows_shown = page.locator("#usage-table tbody tr").count()
    assert requests_in_a_week > 0 and rows_shown == min(requests_in_a_week, 50)
    assert page.locator("#usage-totals", has_text="Margin").count() == 1
    shoot(page, "usage-totals")

    page.goto(f"{live_gateway}/orgs/acme/keys/")
    assert page.locator("thead th", has_text="Spend this month").count() == 1
    shoot(page, "keys-spend")


def test_finance_creates_a_usage_key_and_reads_the_summary_with_it(page, live_gateway, sign_in, people, shoot):
    sign_in(page, "fiona")
    page.goto(f"{live_gateway}/orgs/acme/")
    page.click("nav >> text=Usage API keys")
    page.fill("#id_name", "books")
    page.fill("#id_expires_days", "90")
    page.click("button:has-text('Create usage API key')")
    page.wait_for_selector("#new-key-value")
    plaintext = page.locator("#new-key-value").input_value()
    page.click(".copy-row button")
    assert page.evaluate("navigator.clipboard.readText()") == plaintext
    shoot(page, "usage-keys")

    headers = {"Authorization": f"Bearer {plaintext}"}
    summary = httpx.get(f"{live_gateway}/api/usage/summary", params={"group_by": "key"}, headers=headers)
    assert summary.status_code == 200
    body = summary.json()
    # The organization's figures: alice's key and bob's.
    assert body["total"]["amount"] == "0.06"
    assert len(body["results"]) == 2

    api_key = ApiKey.objects.get(name="books", kind=ApiKey.Kind.USAGE)
    page.locator(f"#usage-key-{api_key.pk} button", has_text="Revoke").click()
    page.wait_for_selector("text=Revoke key")
    page.click("button:has-text('Confirm')")
    page.wait_for_selector(f"#usage-key-{api_key.pk} >> text=revoked")
    after = httpx.get(f"{live_gateway}/api/usage/summary", headers=headers)
    assert after.status_code == 401


def test_dashboard_pages_fit_a_375px_screen(browser, live_gateway, people, shoot):
    some_weeks_of_usage(people)
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live_gateway}/accounts/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "correct-horse-battery-staple")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    for path in (
        *("", "usage/", "keys/", "limits/", "usage-keys/", "members/", "alerts/", "exports/", "audit/"),
        *("statements/", "invoices/", "billing-details/", "cache/"),
    ):
        page.goto(f"{live_gateway}/orgs/acme/{path}")
        overflow = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert overflow[0] <= overflow[1], (path, overflow)
        if path in ("", "keys/"):
            shoot(page, f"{path.strip('/') or 'overview'}-375")

    # The keys table scrolls inside its card: its last column (the actions) can be reached and used.
    page.goto(f"{live_gateway}/orgs/acme/keys/")
    revoke = page.locator(f"#key-{people.bob_key.pk} button", has_text="Revoke")
    revoke.scroll_into_view_if_needed()
    box = revoke.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    revoke.click()
    page.wait_for_selector("text=Revoke key")
    context.close()
