"""Spend caps and the alert policy on the Limits page, the Alerts page, cap bars, and the audited commands."""

import re
from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent
from billing.limits import spend_limit_set
from billing.models import AlertPolicy, SpendAlert, SpendCounter, SpendLimit
from tests.people import line_item

pytestmark = pytest.mark.django_db(transaction=True)


def org_cap(organization, period="day", amount="5.00", key_prefix=None) -> SpendLimit:
    return spend_limit_set(organization=organization, key_prefix=key_prefix, period=period, amount=Decimal(amount))


def fired(limit: SpendLimit, *, threshold=80, spent="4.00", **fields) -> SpendAlert:
    return SpendAlert.objects.create(
        organization=limit.organization,
        spend_limit=limit,
        period_start=timezone.now().date(),
        threshold=threshold,
        spent=Decimal(spent),
        cap=limit.amount,
        **fields,
    )


def test_owner_creates_edits_and_removes_an_org_cap_each_audited(people, as_user):
    client = as_user(people.alice)
    url = reverse("limits-spend", args=["acme"])
    created = client.post(url, {"scope": "", "period": "month", "amount": "25"}, HTTP_HX_REQUEST="true")
    assert created.status_code == 204 and created["HX-Location"]
    limit = SpendLimit.objects.get(organization=people.acme, api_key=None)
    assert (limit.period, limit.amount) == ("month", Decimal("25"))
    html = client.get(reverse("limits", args=["acme"])).content.decode()
    assert f'id="spend-limit-{limit.pk}"' in html and 'value="25.00"' in html

    edited = {"limit_id": limit.pk, "scope": "", "period": "month", "amount": "30.5"}
    assert client.post(url, edited).status_code == 302
    limit.refresh_from_db()
    assert limit.amount == Decimal("30.5")

    delete_url = reverse("limits-spend-delete", args=["acme", limit.pk])
    ask = client.post(delete_url)
    assert b"Remove the month spend cap on organization" in ask.content and SpendLimit.objects.filter(pk=limit.pk)
    assert client.post(delete_url, {"confirmed": "1"}).status_code == 302
    assert not SpendLimit.objects.filter(pk=limit.pk).exists()

    events = list(AuditEvent.objects.filter(action__startswith="spend_limit.").order_by("pk"))
    assert [(e.action, e.source, e.actor, e.organization) for e in events] == [
        ("spend_limit.create", "dashboard", people.alice, people.acme),
        ("spend_limit.update", "dashboard", people.alice, people.acme),
        ("spend_limit.delete", "dashboard", people.alice, people.acme),
    ]
    assert (events[1].before["amount"], events[1].after["amount"]) == ("25.000000", "30.500000")
    assert events[2].before["period"] == "month" and events[2].after is None


def test_key_cap_takes_a_key_of_this_organization_only(people, as_user):
    client = as_user(people.alice)
    url = reverse("limits-spend", args=["acme"])
    assert client.post(url, {"scope": people.bob_key.prefix, "period": "day", "amount": "1"}).status_code == 302
    assert SpendLimit.objects.get(api_key=people.bob_key).amount == Decimal("1")
    foreign = client.post(url, {"scope": people.globex_key.prefix, "period": "day", "amount": "1"})
    assert foreign.status_code == 422 and b'id="id_scope-error"' in foreign.content
    assert b"Select a valid choice" in foreign.content
    assert not SpendLimit.objects.filter(api_key=people.globex_key).exists()


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("-1", "must be a non-negative amount in USD"),
        ("ten dollars", "is not an amount in USD (for example 0.04)"),
        ("0.0000001", "has more than 6 decimal places"),
        ("", "This field is required."),
    ],
)
def test_bad_cap_amount_is_shown_next_to_the_field(people, as_user, amount, message):
    response = as_user(people.alice).post(reverse("limits-spend", args=["acme"]), {"period": "day", "amount": amount})
    html = response.content.decode()
    assert response.status_code == 422 and not SpendLimit.objects.exists()
    error = html[html.index('id="id_amount-error"') :]
    assert message in error[: error.index("</p>")].replace("&#x27;", "'")


def test_bad_amount_on_an_existing_row_is_shown_in_that_row(people, as_user):
    limit = org_cap(people.acme)
    data = {"limit_id": limit.pk, "scope": "", "period": "day", "amount": "abc"}
    response = as_user(people.alice).post(reverse("limits-spend", args=["acme"]), data)
    html = response.content.decode()
    row = html[html.index(f'id="spend-limit-{limit.pk}"') :]
    assert response.status_code == 422 and "is not an amount in USD" in row[: row.index("</tr>")]
    limit.refresh_from_db()
    assert limit.amount == Decimal("5.00")


def test_alert_policy_is_validated_saved_with_a_secret_and_audited_without_it(people, as_user):
    client = as_user(people.alice)
    url = reverse("limits-alerts", args=["acme"])
    bad = client.post(url, {"thresholds": "50, 80, 150", "webhook_url": "not a url"})
    assert bad.status_code == 422
    assert b'id="id_thresholds-error"' in bad.content and b"from 1 to 100, not: 150" in bad.content
    assert b'id="id_webhook_url-error"' in bad.content and not AlertPolicy.objects.exists()

    data = {"thresholds": "80%, 50,80", "email": "billing@acme.test", "webhook_url": "https://hooks.acme.test/x"}
    assert client.post(url, data, HTTP_HX_REQUEST="true").status_code == 204
    policy = AlertPolicy.objects.get(organization=people.acme)
    assert policy.thresholds == [50, 80] and policy.email == "billing@acme.test"
    assert policy.webhook_secret.startswith("whsec_")
    event = AuditEvent.objects.get(action="alert_policy.create")
    assert event.after["webhook_url"] == "https://hooks.acme.test/x" and "webhook_secret" not in event.after
    page = client.get(reverse("limits", args=["acme"])).content.decode()
    assert policy.webhook_secret in page and "Alerts fire now at 50%, 80% of each cap" in page

    client.post(url, {"thresholds": "", "email": "", "webhook_url": "https://hooks.acme.test/x"})
    policy.refresh_from_db()
    assert policy.thresholds == [] and AuditEvent.objects.get(action="alert_policy.update").after == {
        "email": "",
        "thresholds": [],
    }
    assert policy.webhook_secret == AlertPolicy.objects.get().webhook_secret, "the secret is kept"


@pytest.mark.parametrize(
    ("webhook_url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://127.0.0.1:6379/", "127.0.0.1 is a loopback address"),
        ("https://10.0.0.7/hook", "10.0.0.7 is a private address"),
        ("https://[fc00::1]/hook", "fc00::1 is a private address"),
        ("https://localhost/hook", "localhost resolves to"),
    ],
)
def test_an_alert_webhook_to_an_internal_address_is_refused_saying_why(people, as_user, webhook_url, why):
    response = as_user(people.alice).post(reverse("limits-alerts", args=["acme"]), {"webhook_url": webhook_url})
    assert response.status_code == 422
    assert b'id="id_webhook_url-error"' in response.content and why in response.content.decode()
    assert not AlertPolicy.objects.exists()


def test_an_operator_allowed_network_may_receive_alert_webhooks(people, as_user, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    client = as_user(people.alice)
    url = reverse("limits-alerts", args=["acme"])
    assert client.post(url, {"webhook_url": "https://10.0.0.7/hook"}, HTTP_HX_REQUEST="true").status_code == 204
    assert client.post(url, {"webhook_url": "https://192.168.0.7/hook"}).status_code == 422


def limit_posts(p, limit):
    return [
        (reverse("limits-spend", args=["acme"]), {"scope": "", "period": "day", "amount": "1"}),
        (reverse("limits-spend-delete", args=["acme", limit.pk]), {"confirmed": "1"}),
        (reverse("limits-alerts", args=["acme"]), {"thresholds": "10"}),
    ]


def test_finance_and_members_read_caps_but_cannot_change_them(people, as_user):
    limit = org_cap(people.acme)
    for person in (people.fiona, people.bob):
        client = as_user(person)
        page = client.get(reverse("limits", args=["acme"])).content.decode()
        assert "Owners and admins change spend caps." in page and "$5.00" in page
        assert 'action="/orgs/acme/limits/spend/"' not in page
        for url, data in limit_posts(people, limit):
            assert client.post(url, data).status_code == 403, (person, url)
    limit.refresh_from_db()
    assert limit.amount == Decimal("5.00") and not AlertPolicy.objects.exists()


def test_a_member_sees_only_their_own_keys_and_key_caps_on_the_limits_page(people, as_user):
    org_cap(people.acme, amount="5.00")
    org_cap(people.acme, amount="7.00", key_prefix=people.alice_key.prefix)
    org_cap(people.acme, amount="3.00", key_prefix=people.bob_key.prefix)
    bob_page = as_user(people.bob).get(reverse("limits", args=["acme"])).content.decode()
    assert people.bob_key.prefix in bob_page and "bob laptop" in bob_page and "$3.00" in bob_page
    assert people.alice_key.prefix not in bob_page and "alice backend" not in bob_page and "$7.00" not in bob_page
    # The organization's own cap applies to the member's requests too, so they see it.
    assert "$5.00" in bob_page
    # Finance, like the managers, sees every key and every cap.
    fiona_page = as_user(people.fiona).get(reverse("limits", args=["acme"])).content.decode()
    assert people.alice_key.prefix in fiona_page and "$7.00" in fiona_page and people.bob_key.prefix in fiona_page


def test_outsider_gets_404_for_every_limit_and_alert_endpoint(people, as_user):
    limit = org_cap(people.acme)
    fired(limit)
    client = as_user(people.charlie)
    assert client.get(reverse("alerts", args=["acme"])).status_code == 404
    assert client.get(reverse("alerts", args=["acme"]), HTTP_HX_REQUEST="true").status_code == 404
    for url, data in limit_posts(people, limit):
        assert client.post(url, data).status_code == 404, url
        assert client.post(url, data, HTTP_HX_REQUEST="true").status_code == 404, url
    # acme's cap through charlie's own organization: still 404, and nothing of acme in his pages (whole words: a
    # random CSRF token may hold the letters).
    assert client.post(reverse("limits-spend-delete", args=["globex", limit.pk]), {"confirmed": "1"}).status_code == 404
    assert SpendLimit.objects.filter(pk=limit.pk).exists()
    assert not re.search(rb"\bacme\b", client.get(reverse("alerts", args=["globex"])).content.lower())
    assert not re.search(rb"\bacme\b", client.get(reverse("limits", args=["globex"])).content.lower())


def test_alerts_page_shows_delivery_status_to_finance_only(people, as_user):
    limit = org_cap(people.acme)
    AlertPolicy.objects.create(organization=people.acme, webhook_url="https://hooks.acme.test/x")
    now = timezone.now()
    fired(
        limit,
        threshold=80,
        spent="4.00",
        emailed_at=now,
        webhook_attempts=3,
        webhook_last_error="The webhook answered 503",
    )
    fired(limit, threshold=100, spent="5.00", emailed_at=now, webhook_delivered_at=now, webhook_attempts=1)
    globex_limit = org_cap(people.globex, amount="9.00")
    fired(globex_limit, threshold=80, spent="7.20")

    response = as_user(people.fiona).get(reverse("alerts", args=["acme"]))
    assert response.status_code == 200
    html = response.content.decode()
    assert [a.threshold for a in response.context["alerts"]] == [100, 80]
    assert "not delivered" in html and "3 attempts" in html and "The webhook answered 503" in html
    assert "delivered" in html and "1 attempt" in html and "$4.00" in html and "$7.20" not in html
    assert as_user(people.bob).get(reverse("alerts", args=["acme"])).status_code == 403
    nav = as_user(people.alice).get(reverse("overview", args=["acme"])).content.decode()
    assert all(f'href="/orgs/acme/{page}/"' in nav for page in ("alerts", "exports", "statements"))
    member_nav = as_user(people.bob).get(reverse("overview", args=["acme"])).content.decode()
    assert 'href="/orgs/acme/alerts/"' not in member_nav and 'href="/orgs/acme/exports/"' not in member_nav


def test_overview_shows_each_cap_against_its_current_period(people, as_user):
    day = org_cap(people.acme, period="day", amount="2.00")
    month = org_cap(people.acme, period="month", amount="10.00")
    bob_cap = org_cap(people.acme, period="total", amount="1.00", key_prefix=people.bob_key.prefix)
    today = timezone.now().date()
    SpendCounter.objects.create(spend_limit=day, period_start=today, spent=Decimal("1.70"))
    SpendCounter.objects.create(spend_limit=day, period_start=date(2000, 1, 1), spent=Decimal("2.00"))
    SpendCounter.objects.create(spend_limit=month, period_start=today.replace(day=1), spent=Decimal("2.50"))
    response = as_user(people.alice).get(reverse("overview", args=["acme"]))
    bars = {bar.limit.pk: bar for bar in response.context["cap_bars"]}
    assert (bars[day.pk].spent, bars[day.pk].percent, bars[day.pk].left) == (Decimal("1.70"), 85, Decimal("0.30"))
    assert (bars[month.pk].spent, bars[month.pk].percent) == (Decimal("2.50"), 25)
    # No counter yet: what the key has spent so far (the cast's $0.02), which the next request is checked against.
    assert (bars[bob_cap.pk].spent, bars[bob_cap.pk].resets_at) == (Decimal("0.02"), None)
    html = response.content.decode()
    assert "$1.70 / $2.00" in html and "bar-high" in html and "never resets" in html
    # A member sees the caps of their own keys only: the organization's spend is for finance roles.
    member = as_user(people.bob).get(reverse("overview", args=["acme"])).context["cap_bars"]
    assert [bar.limit.pk for bar in member] == [bob_cap.pk]


def test_set_spend_limit_and_set_tier_commands_are_audited(people):
    quiet = {"stdout": open("/dev/null", "w")}
    call_command("set_spend_limit", "--org", "acme", "--period", "day", "--usd", "3", **quiet)
    call_command("set_spend_limit", "--org", "acme", "--period", "day", "--usd", "4", **quiet)
    call_command(
        "set_spend_limit", "--org", "acme", "--key", people.bob_key.prefix, "--period", "month", "--usd", "1", **quiet
    )
    call_command("set_spend_limit", "--org", "acme", "--period", "day", "--delete", **quiet)
    call_command("set_tier", "--org", "acme", "--tier", "enterprise", "--images-per-day", "500", **quiet)
    events = AuditEvent.objects.filter(organization=people.acme, source="command").order_by("pk")
    assert [(e.action, e.actor_label) for e in events] == [
        ("spend_limit.create", "command"),
        ("spend_limit.update", "command"),
        ("spend_limit.create", "command"),
        ("spend_limit.delete", "command"),
        ("organization.tier", "command"),
    ]
    assert events[1].after["amount"] == "4.000000" and events[2].after["api_key"] == people.bob_key.pk


def test_usage_detail_shows_fallback_attempts_and_cache_hits(people, as_user):
    attempts = [
        {
            "model": "dall-e-3",
            "provider": "openai",
            "unit_price": "0.04",
            "outcome": "failed",
            "error_code": "upstream_unavailable",
            "upstream_status": 503,
            "error": "OpenAI answered 503",
        },
        {"model": "flux-dev", "provider": "bfl", "unit_price": "0.025", "outcome": "succeeded", "images": 1},
    ]
    line_item(people.acme, people.alice_key, request_id="req-fallback", details={"attempts": attempts, "api": "openai"})
    line_item(
        people.acme,
        people.alice_key,
        request_id="req-cached",
        details={"cached": True, "cache_source_request_id": "req-fallback"},
    )
    client = as_user(people.alice)
    html = client.get(reverse("usage-detail", args=["acme", "req-fallback"])).content.decode()
    table = html[html.index('id="attempts"') :]
    for text in (
        "dall-e-3",
        "openai",
        "$0.04",
        "503",
        "upstream_unavailable",
        "OpenAI answered 503",
        "flux-dev",
        "bfl",
    ):
        assert text in table, text
    assert "cache hit" not in html
    cached = client.get(reverse("usage-detail", args=["acme", "req-cached"])).content.decode()
    assert "cache hit" in cached and 'href="/orgs/acme/usage/req-fallback/"' in cached


def test_limits_page_shows_the_cap_on_requests_in_flight(people, as_user):
    client = as_user(people.alice)
    html = client.get(reverse("limits", args=["acme"])).content.decode()
    assert "<dt>Requests in flight at once</dt><dd>100</dd>" in html  # Pro's
    call_command("set_tier", "--org", "acme", "--tier", "pro", "--max-concurrent-requests", "35", stdout=StringIO())
    html = client.get(reverse("limits", args=["acme"])).content.decode()
    assert '<dt>Requests in flight at once</dt><dd>35 <span class="badge">custom</span></dd>' in html
