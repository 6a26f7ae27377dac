"""The dashboard in a real browser: sign in, filter and page usage, price a request, create/use/revoke a key."""

import re
from datetime import timedelta
from decimal import Decimal

import openai
import pytest
from django.db.models import Sum
from django.utils import timezone

from accounts.models import ApiKey
from billing.models import UsageLineItem
from billing.periods import day_start, today_utc
from tests.people import line_item

pytestmark = pytest.mark.django_db(transaction=True)


def sdk(base_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=30)


def test_sign_in_filter_and_page_through_usage(page, live_gateway, sign_in, people, shoot):
    for index in range(60):
        line_item(people.acme, people.alice_key, request_id=f"req-page-{index:03d}", minutes_ago=10 + index)
    page.goto(f"{live_gateway}/orgs/acme/")
    assert "/accounts/login/" in page.url
    sign_in(page, "alice")
    page.goto(f"{live_gateway}/orgs/acme/")
    assert page.locator("h1").inner_text() == "Overview"
    # Spend today (UTC): the cast's and these items, less those an early-morning run puts in yesterday.
    midnight = day_start(today_utc(timezone.now()))
    today = UsageLineItem.objects.filter(organization=people.acme, created_at__gte=midnight).aggregate(
        spend=Sum("cost")
    )
    assert page.locator(".stat .figure").first.inner_text() == f"${today['spend'] or 0:.2f}"
    assert today["spend"] == Decimal("2.46") or timezone.now() - midnight < timedelta(minutes=75)
    shoot(page, "overview")

    page.click("nav >> text=Usage")
    rows = page.locator("#usage-table tbody tr")
    assert rows.count() == 50
    first_page = rows.first.inner_text()
    page.click("text=Older »")
    page.wait_for_url(re.compile(r"cursor="))
    assert rows.count() == 13 and rows.first.inner_text() != first_page
    page.click("text=« Newest")
    page.wait_for_url(re.compile(r"/usage/\?$|/usage/$"))

    # A filter swaps only the table (htmx) and lands in the URL.
    page.select_option("#id_status", "failed")
    page.wait_for_url(re.compile(r"status=failed"))
    page.wait_for_function("document.querySelectorAll('#usage-table tbody tr').length === 1")
    assert "req-alice-err"[:16] in rows.first.inner_text()
    shoot(page, "usage")
    page.reload()
    assert rows.count() == 1 and page.locator("#id_status").input_value() == "failed"

    rows.first.locator("a").click()
    page.wait_for_url(re.compile(r"/usage/req-alice-err/"))
    assert "upstream_error" in page.content()
    shoot(page, "usage-detail")

    page.click("text=Sign out")
    page.wait_for_url(re.compile(r"/accounts/login/"))
    shoot(page, "login")


def test_new_price_applies_to_the_next_request(page, live_gateway, sign_in, people, make_key, shoot):
    sign_in(page, "stella")
    page.goto(f"{live_gateway}/staff/pricing/")
    row = page.locator("#pricing-dall-e-3 tr", has_text="hd").filter(has_text="1792x1024")
    row.locator("input[name=unit_price]").fill("0.123")
    row.locator("button", has_text="Save").click()
    page.wait_for_selector("text=Change the price of dall-e-3 (hd, 1792x1024)?")
    shoot(page, "pricing-confirm")
    page.click("button:has-text('Confirm')")
    page.wait_for_selector(".flash")
    assert "costs $0.123" in page.locator(".flash").inner_text()
    shoot(page, "pricing")

    key = make_key(people.acme, name="price check").plaintext
    response = sdk(live_gateway, key).images.with_raw_response.generate(
        model="dall-e-3", prompt="a lighthouse", size="1792x1024", quality="hd"
    )
    assert response.http_request.url.path == "/v1/images/generations"
    perf = response.http_response.json()["perf"]
    assert perf["cost_usd"] == "0.123"
    assert UsageLineItem.objects.get(request_id=perf["request_id"]).unit_price == Decimal("0.123")

    page.goto(f"{live_gateway}/staff/models/")
    shoot(page, "models")
    page.goto(f"{live_gateway}/staff/usage/")
    shoot(page, "staff-usage")


def test_create_use_and_revoke_a_key(page, live_gateway, sign_in, people, shoot):
    sign_in(page, "alice")
    page.goto(f"{live_gateway}/orgs/acme/keys/")
    page.fill("#id_name", "browser key")
    page.check("input[name=allowed_models][value=dall-e-2]")
    page.click("button:has-text('Create key')")
    page.wait_for_selector("#new-key-value")
    plaintext = page.locator("#new-key-value").input_value()
    assert plaintext.startswith("igw_")
    page.click(".copy-row button")
    assert page.evaluate("navigator.clipboard.readText()") == plaintext
    shoot(page, "keys")

    client = sdk(live_gateway, plaintext)
    image = client.images.generate(model="dall-e-2", prompt="a red square", size="256x256")
    assert image.data[0].url
    with pytest.raises(openai.PermissionDeniedError):
        client.images.generate(model="dall-e-3", prompt="not allowed for this key")

    api_key = ApiKey.objects.get(name="browser key")
    page.reload()
    page.locator(f"#key-{api_key.pk} button", has_text="Revoke").click()
    page.wait_for_selector("text=Revoke key")
    page.click("button:has-text('Confirm')")
    page.wait_for_selector(f"#key-{api_key.pk} >> text=revoked")
    with pytest.raises(openai.AuthenticationError):
        client.images.generate(model="dall-e-2", prompt="after revocation", size="256x256")


def test_screens_of_members_limits_and_audit(page, live_gateway, sign_in, people, shoot):
    sign_in(page, "alice")
    page.goto(f"{live_gateway}/orgs/acme/members/")
    page.fill("#id_email", "dana@example.com")
    page.select_option("#id_role", "finance")
    page.click("button:has-text('Add member')")
    page.wait_for_selector("#invite-link")
    shoot(page, "members")
    page.goto(f"{live_gateway}/orgs/acme/limits/")
    page.locator(f"#key-limits-{people.bob_key.pk} input[name=images_per_day]").fill("25")
    page.locator(f"#key-limits-{people.bob_key.pk} button").click()
    page.wait_for_selector(".flash")
    assert page.locator(f"#key-limits-{people.bob_key.pk} input[name=images_per_day]").input_value() == "25"
    shoot(page, "limits")
    page.goto(f"{live_gateway}/orgs/acme/audit/")
    assert page.locator("td", has_text="member.add").count() == 1
    shoot(page, "audit")


def test_pages_work_without_javascript(browser, live_gateway, people):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{live_gateway}/accounts/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "correct-horse-battery-staple")
    page.click("button[type=submit]")
    page.goto(f"{live_gateway}/orgs/acme/usage/")
    page.fill("#id_model", "dall-e-2")
    page.click("button:has-text('Filter')")
    assert "model=dall-e-2" in page.url
    assert page.locator("#usage-table tbody tr").count() == 1
    page.click("nav >> text=API keys")
    page.fill("#id_name", "no-js key")
    page.click("button:has-text('Create key')")
    assert page.locator("#new-key-value").input_value().startswith("igw_")
    context.close()
