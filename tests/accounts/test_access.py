"""Who gets into which page, the list of pages built from the URLconf: a new view is covered the day it is added.

Every route is one of four kinds: an organization's (it takes a `slug`), platform staff's (`staff/...`), the usage
API's (`api/...`, read with an API key), or one of the few in OPEN_ROUTES. The rules of each kind are checked on
every route of that kind, each URL keyword filled from EXAMPLES with one of alice's (acme's) objects; a route with
a keyword missing there fails the tests until someone adds an example.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.resolvers import RoutePattern
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import ApiKey, AuditEvent, Membership, Organization, Project, Tier
from accounts.services import api_key_create, project_create
from billing.invoices.selectors import last_closed_month
from billing.invoices.services import invoice_issue
from billing.limits import spend_limit_set
from billing.models import AlertPolicy, BillingDetails, Invoice, PriceConfig, SpendLimit, UsageExport
from billing.periods import day_start
from billing.views.api import GROUPS
from gateway.models import ImageJob
from providers.models import FallbackRoute, ModelSpec, ResponseCachePolicy
from tests.people import line_item

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass(frozen=True)
class Route:
    """One named route of the URLconf, with the keywords of its path (those of the includes above it too)."""

    name: str
    path: str
    kwargs: frozenset[str]

    @property
    def is_org(self) -> bool:
        return "slug" in self.kwargs

    @property
    def is_staff(self) -> bool:
        return self.path.startswith("staff/")

    @property
    def is_api(self) -> bool:
        return self.path.startswith("api/")

    def url(self, examples: dict[str, object], **values: object) -> str:
        missing = self.kwargs - examples.keys() - values.keys()
        if missing:
            pytest.fail(_missing_example(self, missing))
        return reverse(self.name, kwargs={name: values.get(name, examples.get(name)) for name in self.kwargs})


def _missing_example(route: Route, missing) -> str:
    return (
        f"The route '{route.name}' ({route.path}) takes {', '.join(sorted(missing))}, which has no example: "
        f"add one of alice's (acme's) objects to EXAMPLES in {__name__.replace('.', '/')}.py so its access is tested."
    )


def _keywords(pattern) -> set[str]:
    return set(pattern.converters) if isinstance(pattern, RoutePattern) else set(pattern.regex.groupindex)


def _walk(patterns, prefix: str = "", kwargs: frozenset[str] = frozenset(), namespace: str = "") -> Iterator[Route]:
    """Every named route under `patterns`, following includes (and their namespaces, for reverse())."""
    for entry in patterns:
        path = prefix + str(entry.pattern).removeprefix("^").removesuffix("$")
        keywords = kwargs | _keywords(entry.pattern)
        if isinstance(entry, URLResolver):
            # Django's admin keeps its own staff-only sign-in; tests/accounts/test_add_member_and_audit.py uses it.
            if entry.app_name != "admin":
                inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                yield from _walk(entry.url_patterns, path, keywords, inner)
        elif isinstance(entry, URLPattern):
            assert entry.name, f"The route {path} has no name: name it so that it can be reversed and tested"
            yield Route(namespace + entry.name, path, keywords)


ROUTES = list(_walk(get_resolver().url_patterns))
ORG_ROUTES = [route for route in ROUTES if route.is_org]
STAFF_ROUTES = [route for route in ROUTES if route.is_staff]
API_ROUTES = [route for route in ROUTES if route.is_api]

# The routes that are neither an organization's, nor staff's, nor the usage API's, and why that is right.
OPEN_ROUTES = {
    "home": "the signed-in person's own organizations",
    "login": "signing in",
    "logout": "signing out",
    "password-change": "the signed-in person's own password",
    "password-changed": "the signed-in person's own password",
    "password-set": "a signed, single-use link from add_member",
    "healthz": "health, nothing of any organization",
    "metrics": "Prometheus metrics, only with the operator's METRICS_TOKEN (tests/gateway/test_observability.py)",
    "v1-models": "the image models the caller's own API key may use",
    "v1-model": "one of the image models the caller's own API key may use",
    "image-file": "an image behind a signed, expiring URL (tests/gateway/test_signed_urls.py)",
    "v1-image-jobs": "the caller's own API key's jobs, as api/images/jobs answers them (checked with it below)",
    "v1-image-job": "one of the caller's own API key's jobs, as api/images/jobs/{id} answers it (checked below)",
}

# Staff routes answer anyone else 403, except the staff exports, which hide themselves with a 404
# (billing.views.reports; tests/billing/test_exports.py pins it for alice).
STAFF_ROUTES_ANSWERING_404 = {"staff-exports", "staff-export-status", "staff-export-download"}

# URL keywords that name no object of acme's: under charlie's own organization they are his to use.
NOT_ACME_OBJECTS = {"slug", "month", "period"}

# A POST to these only reads (a CSV export streams back): finance may make it.
POSTS_THAT_ONLY_READ = {"org-exports"}
# Finance's own changes: its read-only usage-API keys (tests/accounts/test_usage_keys.py).
FINANCE_CHANGES = {"usage-keys", "usage-key-revoke"}

# Finance issues invoices and credit notes and edits the billing details (billing.views.invoices);
# tests/billing/test_invoices.py checks who may and may not.
POSTS_FINANCE_MAKES = {"org-invoices", "org-invoice-credit-note", "org-billing-details"}


def _acme_spend_cap(p) -> SpendLimit:
    return spend_limit_set(organization=p.acme, key_prefix=None, period="day", amount=Decimal("5"))


def _acme_project(p) -> Project:
    """acme's project, with a day cap (which project-cap-delete removes)."""
    project = project_create(organization=p.acme, name="acme design", actor=Actor.command())
    spend_limit_set(organization=p.acme, key_prefix=None, project=project.name, period="day", amount=Decimal("3"))
    return project


def _acme_export(p) -> UsageExport:
    """A finished export of acme's, with its file, ready to download."""
    now = timezone.now()
    export = UsageExport.objects.create(
        organization=p.acme,
        requested_by=p.alice,
        filters={"from": now.date().isoformat(), "to": now.date().isoformat()},
        status=UsageExport.Status.DONE,
        rows_total=1,
        rows_written=1,
        finished_at=now,
        expires_at=now + timedelta(days=7),
    )
    export.file.save("usage-acme.csv", ContentFile(b"request_id\r\nreq-alice-1\r\n"))
    return export


def _acme_job(p) -> ImageJob:
    """A finished async job of alice's key (its id carries no mark of acme: a 404 may echo the id asked for)."""
    now = timezone.now()
    return ImageJob.objects.create(
        public_id="imgjob_0c0ffee",
        request_id="req-alice-job",
        organization=p.acme,
        api_key=p.alice_key,
        action="generate",
        flavor="openai",
        model="dall-e-2",
        status=ImageJob.Status.SUCCEEDED,
        http_status=200,
        result={"created": 1, "data": [{"url": "https://images.test/req-alice-job.png"}]},
        created_at=now,
        finished_at=now,
        expires_at=now + timedelta(hours=1),
    )


def _acme_invoice(p) -> Invoice:
    """acme's invoice for last month, for one request charged then."""
    month = last_closed_month()
    minutes_ago = (timezone.now() - day_start(month)) // timedelta(minutes=1) - 12 * 60
    line_item(p.acme, p.alice_key, request_id="req-alice-last-month", minutes_ago=minutes_ago)
    return invoice_issue(organization=p.acme, month=month)


# One example of each URL keyword: alice's (acme's) objects, which charlie must never reach.
EXAMPLES: dict[str, Callable[..., object]] = {
    "slug": lambda p: p.acme.slug,
    "key_id": lambda p: p.alice_key.pk,
    "membership_id": lambda p: Membership.objects.get(user=p.alice, organization=p.acme).pk,
    "request_id": lambda p: "req-alice-1",
    "limit_id": lambda p: _acme_spend_cap(p).pk,
    "export_id": lambda p: _acme_export(p).pk,
    "month": lambda p: timezone.now().strftime("%Y-%m"),
    "price_id": lambda p: PriceConfig.objects.get(model__name="dall-e-2", quality="standard", size="256x256").pk,
    "spec_id": lambda p: ModelSpec.objects.get(name="dall-e-2").pk,
    "invoice_id": lambda p: _acme_invoice(p).pk,
    "org_slug": lambda p: p.acme.slug,
    "route_id": lambda p: FallbackRoute.objects.create(name="acme-route", chain=["dall-e-2", "dall-e-3"]).pk,
    "project_id": lambda p: _acme_project(p).pk,
    "period": lambda p: "day",
    "public_id": lambda p: _acme_job(p).public_id,
}


@pytest.fixture
def examples(people) -> dict[str, object]:
    return {name: example(people) for name, example in EXAMPLES.items()}


def change_everything(examples) -> dict[str, str]:
    """One POST body that would change something through every form of the dashboard, were it let through."""
    catalog_entry = f"m{examples['spec_id']}-"
    return {
        "confirmed": "1",
        "name": "renamed by charlie",
        "username": "charlies-friend",
        "role": "member",
        "tier": str(Tier.objects.get(slug="enterprise").pk),
        "images_per_minute": "3",
        "images_per_day": "9",
        "scope": "",
        "period": "month",
        "amount": "1",
        "thresholds": "10",
        "email": "charlie@globex.test",
        "webhook_url": "https://hooks.globex.test/x",
        "from": (timezone.now() - timedelta(days=1)).date().isoformat(),
        "to": timezone.now().date().isoformat(),
        "model": "dall-e-3",
        "quality": "hd",
        "size": "1024x1024",
        "unit_price": "0",
        catalog_entry + "provider": "openai",
        catalog_entry + "sizes": "256x256",
        catalog_entry + "qualities": "standard",
        catalog_entry + "max_n": "2",
        catalog_entry + "max_prompt_length": "10",
        f"s{examples['spec_id']}-successor": "dall-e-3",
        f"s{examples['spec_id']}-successor_enabled": "on",
        "slug": "charlies-org",
        "owner_username": "charlie",
        "reason": "charlie says so",
        "chain": "dall-e-3",
        "is_active": "",
        "enabled": "on",
        "ttl_minutes": "1",
        "price_per_image": "9",
    }


def acme_state(people) -> dict:
    """Everything of acme a request could change, and the platform's people, prices, catalog and audit log."""
    acme = people.acme

    def rows(queryset) -> list[dict]:
        return list(queryset.order_by("pk").values())

    return {
        "organization": rows(Organization.objects.filter(pk=acme.pk)),
        "keys": rows(ApiKey.objects.filter(organization=acme)),
        "memberships": rows(Membership.objects.filter(organization=acme)),
        "projects": rows(Project.objects.filter(organization=acme)),
        "spend limits": rows(SpendLimit.objects.filter(organization=acme)),
        "alert policy": rows(AlertPolicy.objects.filter(organization=acme)),
        "exports": rows(UsageExport.objects.filter(organization=acme)),
        "invoices": rows(Invoice.objects.filter(organization=acme)),
        "billing details": rows(BillingDetails.objects.filter(organization=acme)),
        # Signing in stamps last_login; who exists and what they may do is what must not change.
        "people": list(get_user_model().objects.order_by("pk").values("username", "is_staff", "is_active", "password")),
        "prices": rows(PriceConfig.objects.all()),
        "catalog": rows(ModelSpec.objects.all()),
        "routes": rows(FallbackRoute.objects.all()),
        "cache policy": rows(ResponseCachePolicy.objects.filter(organization=acme)),
        "organizations": Organization.objects.count(),
        "audit events": AuditEvent.objects.count(),
    }


def answers(client, url: str, data: dict) -> dict[str, int]:
    """The status of a GET and of a POST, each without and with `HX-Request`."""
    return {
        "GET": client.get(url).status_code,
        "GET htmx": client.get(url, HTTP_HX_REQUEST="true").status_code,
        "POST": client.post(url, data).status_code,
        "POST htmx": client.post(url, data, HTTP_HX_REQUEST="true").status_code,
    }


def refused(client, url: str, method: str) -> bool:
    """Whether the route refuses `method` outright (405); ask about an organization that does not exist, or as
    someone who is not staff: a method check comes before anything looks at the organization or the person."""
    response = client.get(url) if method == "GET" else client.post(url, {})
    return response.status_code == 405


def org_pages(people, examples, as_user) -> list[str]:
    """acme's URL of every organization route that answers GET."""
    client = as_user(people.charlie)
    return [
        route.url(examples)
        for route in ORG_ROUTES
        if not refused(client, route.url(examples, slug="no-such-org"), "GET")
    ]


def org_posts(people, examples, as_user) -> list[tuple[Route, str]]:
    """(route, acme's URL) of every organization route that answers POST."""
    client = as_user(people.charlie)
    return [
        (route, route.url(examples))
        for route in ORG_ROUTES
        if not refused(client, route.url(examples, slug="no-such-org"), "POST")
    ]


def content(response) -> bytes:
    if response.streaming:
        body = b"".join(response.streaming_content)
        response.close()
        return body
    return response.content


def test_the_urlconf_has_every_kind_of_route():
    """The walk finds what the tests below iterate; an empty list would make them pass without checking anything."""
    names = {route.name for route in ROUTES}
    assert {"overview", "keys", "usage-detail", "org-statement", "org-export-download"} <= names
    assert ORG_ROUTES and STAFF_ROUTES and API_ROUTES


def test_every_route_is_an_organizations_staffs_the_apis_or_open():
    unplaced = [
        f"{r.name} ({r.path})" for r in ROUTES if not (r.is_org or r.is_staff or r.is_api) and r.name not in OPEN_ROUTES
    ]
    assert not unplaced, (
        "These routes take no organization slug and are neither staff/... nor api/...: make them one of those, "
        f"or add them to OPEN_ROUTES in {__name__.replace('.', '/')}.py saying why anyone may reach them: {unplaced}"
    )
    assert set(OPEN_ROUTES) <= {route.name for route in ROUTES}, "OPEN_ROUTES names a route that no longer exists"


def test_every_url_keyword_has_an_example():
    for route in [*ORG_ROUTES, *STAFF_ROUTES, *API_ROUTES]:
        if missing := route.kwargs - EXAMPLES.keys():
            pytest.fail(_missing_example(route, missing))


def test_every_org_page_works_for_the_owner(people, examples, as_user):
    pages = org_pages(people, examples, as_user)
    client = as_user(people.alice)
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert b"globex" not in content(response).lower(), url


def test_every_org_page_and_htmx_fragment_is_404_for_an_outsider(people, examples, as_user):
    """charlie asks for every route of acme: GET and POST, with and without htmx. He gets what an organization
    that does not exist answers: 404, or 405 for a method the route never takes."""
    client = as_user(people.charlie)
    data = change_everything(examples)
    before = acme_state(people)
    wrong = []
    for route in ORG_ROUTES:
        url = route.url(examples)
        seen = answers(client, url, data)
        nowhere = answers(client, route.url(examples, slug="no-such-org"), data)
        if seen != nowhere or set(seen.values()) - {404, 405} or 404 not in seen.values():
            wrong.append(f"{route.name} {url}: {seen}, for an organization that does not exist {nowhere}")
    assert not wrong, "charlie must not tell acme's pages from missing ones:\n" + "\n".join(wrong)
    # Nothing changed in acme.
    assert ApiKey.objects.filter(organization=people.acme, revoked_at__isnull=True).count() == 2
    assert Membership.objects.filter(organization=people.acme).count() == 3
    assert acme_state(people) == before


def test_an_object_of_another_org_is_404_even_through_your_own_org(people, examples, as_user):
    """charlie, owner of globex, cannot reach acme's keys, members, line items, caps or exports by putting their
    ids under globex."""
    client = as_user(people.charlie)
    data = change_everything(examples)
    before = acme_state(people)
    wrong = []
    for route in ORG_ROUTES:
        if not route.kwargs - NOT_ACME_OBJECTS:
            continue
        url = route.url(examples, slug=people.globex.slug)
        seen = answers(client, url, data)
        if set(seen.values()) - {404, 405} or 404 not in seen.values():
            wrong.append(f"{route.name} {url}: {seen}")
    assert not wrong, "acme's objects under globex must be 404 to charlie:\n" + "\n".join(wrong)
    people.alice_key.refresh_from_db()
    assert people.alice_key.revoked_at is None
    assert acme_state(people) == before


def test_finance_reads_everything_but_changes_nothing(people, examples, as_user):
    pages = org_pages(people, examples, as_user)
    posts = [(route, url) for route, url in org_posts(people, examples, as_user) if route.name not in FINANCE_CHANGES]
    client = as_user(people.fiona)
    for url in pages:
        assert client.get(url).status_code == 200, url
    data = change_everything(examples)
    before = acme_state(people)
    for route, url in posts:
        if route.name in POSTS_FINANCE_MAKES:
            continue
        response = client.post(url, data)
        assert response.status_code == (200 if route.name in POSTS_THAT_ONLY_READ else 403), url
        content(response)
    assert ApiKey.objects.filter(organization=people.acme, revoked_at__isnull=True).count() == 2
    assert acme_state(people) == before


def test_member_cannot_change_members_limits_or_tier_or_see_the_audit_log(people, as_user):
    client = as_user(people.bob)
    slug = people.acme.slug
    assert client.get(reverse("audit", args=[slug])).status_code == 403
    alice_membership = Membership.objects.get(user=people.alice, organization=people.acme)
    assert client.post(reverse("members", args=[slug]), {"username": "x", "role": "owner"}).status_code == 403
    assert client.post(reverse("member-role", args=[slug, alice_membership.pk]), {"role": "member"}).status_code == 403
    assert (
        client.post(reverse("limits-key", args=[slug, people.bob_key.pk]), {"images_per_day": "9"}).status_code == 403
    )
    assert client.post(reverse("limits-tier", args=[slug]), {"tier": people.acme.tier_id}).status_code == 403


def test_owner_cannot_change_the_tier_only_staff_can(people, as_user):
    response = as_user(people.alice).post(reverse("limits-tier", args=["acme"]), {"tier": people.acme.tier_id})
    assert response.status_code == 403


@pytest.mark.parametrize("route", STAFF_ROUTES, ids=[route.name for route in STAFF_ROUTES])
def test_staff_pages_are_403_for_non_staff_and_work_for_staff(people, examples, as_user, route):
    url = route.url(examples)
    expected = 404 if route.name in STAFF_ROUTES_ANSWERING_404 else 403
    client = as_user(people.alice)
    if refused(client, url, "GET"):
        assert client.post(url, {}).status_code == expected, url
    else:
        assert client.get(url).status_code == expected, url
        response = as_user(people.stella).get(url)
        assert response.status_code == 200, url
        content(response)


def test_staff_routes_are_closed_to_everyone_else(people, examples, as_user):
    data = change_everything(examples)
    before = acme_state(people)
    wrong = []
    for person in (people.alice, people.bob, people.fiona, people.charlie):
        client = as_user(person)
        for route in STAFF_ROUTES:
            url = route.url(examples)
            expected = 404 if route.name in STAFF_ROUTES_ANSWERING_404 else 403
            seen = answers(client, url, data)
            if set(seen.values()) - {expected, 405} or expected not in seen.values():
                wrong.append(f"{person.username}: {route.name} {url}: {seen}, expected {expected}")
    assert not wrong, "staff routes must refuse everyone who is not staff:\n" + "\n".join(wrong)
    assert acme_state(people) == before


def test_staff_sees_any_org(people, examples, as_user):
    pages = org_pages(people, examples, as_user)
    client = as_user(people.stella)
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        content(response)


def test_signed_out_visitors_are_sent_to_the_login_page(people, examples, client):
    urls = [route.url(examples) for route in [*ORG_ROUTES, *STAFF_ROUTES]] + [reverse("home")]
    for url in urls:
        for response in (client.get(url), client.post(url, {})):
            assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url


def test_a_globex_key_never_sees_acme_through_the_usage_api(people, examples, client):
    """Every API route, asked with globex's keys (its whole organization's and a key's own) and every parameter
    that could point elsewhere, answers with nothing of acme; the same question from acme finds acme's usage."""
    # What the provider charged us for one of acme's requests, and the margin: amounts no globex request has.
    line_item(
        people.acme,
        people.alice_key,
        request_id="req-alice-margin",
        cost=Decimal("0.05"),
        provider_cost=Decimal("0.037731"),
        tokens={"text_input": 97531, "image_output": 86420},
    )
    today = timezone.now().date()
    window = {"from": (today - timedelta(days=1)).isoformat(), "to": today.isoformat()}
    queries = [
        window,
        {**window, "key": people.alice_key.prefix},
        {**window, "organization": "acme", "org": "acme", "slug": "acme", "organization_id": str(people.acme.pk)},
        *({**window, "group_by": group} for group in GROUPS),
    ]
    globex_keys = [
        api_key_create(organization=people.globex, name="globex books", usage_scope="organization").plaintext,
        api_key_create(organization=people.globex, name="globex app").plaintext,
    ]
    # Whole words only: the API docs page carries a random CSRF token, in which "acme" can occur by chance.
    marks = (
        "acme", "req-alice", "req-bob", "user-42", people.alice_key.prefix, people.bob_key.prefix,
        "0.037731", "0.012269", "97531", "86420",
    )  # fmt: skip
    acme_marks = re.compile(
        b"(?<![a-z0-9])(" + b"|".join(re.escape(mark.lower().encode()) for mark in marks) + b")(?![a-z0-9])"
    )
    wrong = []
    for route in API_ROUTES:
        # A route naming one of acme's objects (a job) is 404 to globex; a list or a report is globex's own.
        expected = 404 if route.kwargs - NOT_ACME_OBJECTS else 200
        for key in globex_keys:
            for query in queries:
                response = client.get(route.url(examples), query, HTTP_AUTHORIZATION=f"Bearer {key}")
                body = content(response)
                if response.status_code != expected or acme_marks.search(body.lower()):
                    wrong.append(f"{route.name} {query}: {response.status_code} {body[:200]!r}")
    assert not wrong, "a globex key saw something of acme (or was refused):\n" + "\n".join(wrong)

    acme_key = api_key_create(organization=people.acme, name="acme books", usage_scope="organization").plaintext
    seen_by_acme = client.get(reverse("api-usage"), window, HTTP_AUTHORIZATION=f"Bearer {acme_key}")
    assert b"req-alice-1" in seen_by_acme.content, "the question could not have seen acme's usage at all"
    for mark in (b"0.037731", b"0.012269", b"97531"):
        assert mark in seen_by_acme.content, f"the question could not have seen acme's {mark!r} at all"
    # The job globex was refused is acme's, and acme's own key reads it.
    job_route = next(route for route in API_ROUTES if "public_id" in route.kwargs)
    acme_job = client.get(job_route.url(examples), HTTP_AUTHORIZATION=f"Bearer {acme_key}")
    assert acme_job.status_code == 200 and b"req-alice-job" in acme_job.content
