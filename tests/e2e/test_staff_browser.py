"""In a real browser, as platform staff: create an organization and suspend one (its key is refused at once), edit a
fallback route (the next SDK call to its name uses the new chain), and a legacy successor (it serves the old name)."""

import openai
import pytest

from accounts.models import Membership, Organization
from providers.models import FallbackRoute, ModelSpec
from tests.governance import small_image_price

pytestmark = pytest.mark.django_db(transaction=True)


def _confirm(page) -> None:
    page.click("#panel button:has-text('Confirm')")
    page.wait_for_selector(".flash")


def _model_used(client: openai.OpenAI, model: str, **params) -> str:
    raw = client.images.with_raw_response.generate(
        model=model, prompt="a lighthouse", response_format="b64_json", **params
    )
    return raw.http_response.json()["perf"]["model_used"]


def test_staff_create_an_organization_and_suspend_one(page, live_gateway, sign_in, people, make_key, shoot):
    small_image_price("0.04")
    key = make_key(people.acme, name="soon suspended").plaintext
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=key, max_retries=2, timeout=30)
    small = {"model": "dall-e-2", "size": "256x256", "response_format": "b64_json"}
    assert client.images.generate(prompt="before", **small).data[0].b64_json

    sign_in(page, "stella")
    page.goto(f"{live_gateway}/staff/organizations/")
    page.fill("#id_slug", "initech")
    page.fill("#id_name", "Initech")
    page.select_option("#id_tier", "pro")
    page.fill("#id_owner_email", "peter@initech.test")
    page.click("button:has-text('Create organization')")
    page.wait_for_selector("#confirm-title")
    assert "Create the organization initech?" in page.locator("#confirm-title").inner_text()
    _confirm(page)
    assert "/accounts/set-password/" in page.locator(".flash").inner_text()
    assert "Initech" in page.locator("#org-initech").inner_text()
    initech = Organization.objects.get(slug="initech")
    assert Membership.objects.get(organization=initech).role == Membership.Role.OWNER
    shoot(page, "staff-organizations")

    page.fill("#org-acme input[name=reason]", "card declined")
    page.click("#org-acme button:has-text('Suspend')")
    page.wait_for_selector("#confirm-title")
    shoot(page, "staff-organization-suspend-confirm")
    _confirm(page)
    assert "suspended" in page.locator("#org-acme").inner_text()

    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.images.generate(prompt="after", **small)
    assert refused.value.code == "organization_suspended"


def test_staff_edit_a_fallback_route_and_the_next_call_uses_the_new_chain(
    page, live_gateway, sign_in, people, make_key, shoot
):
    route = FallbackRoute.objects.create(name="e2e-fast", chain=["sdxl-turbo"], description="cheapest first")
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=make_key(people.acme).plaintext, max_retries=0)
    assert _model_used(client, "e2e-fast", size="1024x1024") == "sdxl-turbo"

    sign_in(page, "stella")
    page.goto(f"{live_gateway}/staff/routes/")
    page.click(f"#route-{route.name} >> text=Edit")
    page.wait_for_selector("#route-edit")
    page.fill("#id_chain", "flux-dev, no-such-model")
    page.click("button:has-text('Save route')")
    page.wait_for_selector("#id_chain-error")
    assert "no-such-model" in page.locator("#id_chain-error").inner_text()
    page.fill("#id_chain", "flux-dev, sdxl-turbo")
    page.click("button:has-text('Save route')")
    page.wait_for_selector("#confirm-title")
    _confirm(page)
    assert "flux-dev → sdxl-turbo" in page.locator(f"#route-{route.name}").inner_text()
    shoot(page, "staff-routes")

    assert _model_used(client, "e2e-fast", size="1024x1024") == "flux-dev"


def test_staff_edit_a_legacy_successor_and_it_serves_the_retired_name(
    page, live_gateway, sign_in, people, make_key, shoot
):
    small_image_price("0.04")
    spec = ModelSpec.objects.get(name="dall-e-2")
    client = openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=make_key(people.acme).plaintext, max_retries=0)
    assert _model_used(client, "dall-e-2", size="256x256") == spec.successor

    sign_in(page, "stella")
    page.goto(f"{live_gateway}/staff/models/")
    row = page.locator("#legacy-dall-e-2")
    row.locator("input[name$=successor]").fill("flux-dev")
    row.locator("button:has-text('Save')").click()
    page.wait_for_selector("#confirm-title")
    assert "Change the successor of dall-e-2?" in page.locator("#confirm-title").inner_text()
    _confirm(page)
    assert page.locator("#legacy-dall-e-2 input[name$=successor]").input_value() == "flux-dev"
    shoot(page, "staff-legacy-successors")

    assert _model_used(client, "dall-e-2", size="256x256") == "flux-dev"


def test_staff_providers_page(page, live_gateway, sign_in, people, shoot):
    sign_in(page, "stella")
    page.goto(f"{live_gateway}/staff/providers/")
    assert "closed" in page.locator("#provider-openai").inner_text()
    shoot(page, "staff-providers")
    page.goto(f"{live_gateway}/orgs/acme/cache/")
    assert "Price per cached image" in page.locator("#cache-policy").inner_text()
    shoot(page, "cache-policy")
