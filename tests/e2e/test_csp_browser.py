"""The dashboard under its Content-Security-Policy (settings.py): no page trips it, and the copy buttons,
htmx and the API docs still work with no inline script or style."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

OWNER_PAGES = [
    "",
    "usage/",
    "keys/",
    "usage-keys/",
    "members/",
    "limits/",
    "alerts/",
    "projects/",
    "statements/",
    "invoices/",
    "audit/",
    "cache/",
]
STAFF_PAGES = [
    "/staff/usage/",
    "/staff/pricing/",
    "/staff/models/",
    "/staff/organizations/",
    "/staff/providers/",
    "/staff/invoicing/",
    "/api/docs/",
]


def watch_violations(page) -> list[str]:
    """Chromium reports each blocked script, style or eval on the console as a Content Security Policy error."""
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(f"{page.url}: {message.text}") if "Content Security Policy" in message.text else None
        ),
    )
    return violations


def test_no_dashboard_page_trips_the_policy(page, live_gateway, sign_in, people):
    violations = watch_violations(page)
    sign_in(page, "alice")
    for path in OWNER_PAGES:
        page.goto(f"{live_gateway}/orgs/acme/{path}")
        page.wait_for_load_state("networkidle")
    sign_in(page, "stella")
    for path in STAFF_PAGES:
        page.goto(f"{live_gateway}{path}")
        page.wait_for_load_state("networkidle")
    # The last page, the API docs: Swagger UI renders only if its start-up script (a file, not inline) ran.
    page.wait_for_selector("#swagger-ui .info")
    assert not violations, "\n".join(violations)
    # The watch works: an inline script is refused and reported.
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = '1'; document.body.append(s); }")
    page.wait_for_timeout(200)
    assert any("script-src" in violation for violation in violations)
