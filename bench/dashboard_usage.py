"""Usage page at one million line items: page 1, a deep keyset page and filtered pages, timed end to end.

Loads the rows with one INSERT … SELECT generate_series (about half a minute), then renders the
dashboard's usage view through Django's test client, signed in as the owner, and prints the median
of several runs per case: first without rollups, then after building the daily rollups of every
loaded day that has settled, as beat would (about half a minute more). Run against a scratch
PostgreSQL database, never production:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/imagegate_bench .venv/bin/python bench/dashboard_usage.py
"""

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import Membership, Organization  # noqa: E402
from accounts.services import api_key_create, org_create  # noqa: E402
from billing.models import DailyUsageRollup, UsageLineItem, UsageRollupDay  # noqa: E402
from billing.periods import day_start, today_utc  # noqa: E402
from billing.usage.filter import PageCursor  # noqa: E402
from billing.usage.rollups import SETTLE_MARGIN, rollup_rebuild_range  # noqa: E402
from billing.views.usage import USAGE_PAGE_SIZE  # noqa: E402
from gateway.seed import seed_defaults  # noqa: E402

ORG = "bench"

LOAD_SQL = """
INSERT INTO billing_usagelineitem
    (request_id, created_at, organization_id, api_key_id, end_user, provider, model, size, quality, n,
     unit_price, cost, currency, status, error_code, http_status, latency_ms, details, provider_cost, tokens)
SELECT 'req-bench-' || g,
       now() - (g * interval '7 seconds'),
       %(org)s,
       (%(keys)s)[1 + g %% 3],
       'user-' || (g %% 5000),
       (ARRAY['openai','bfl','stability'])[1 + g %% 3],
       (ARRAY['dall-e-3','flux-dev','stable-diffusion-3','dall-e-2'])[1 + g %% 4],
       '1024x1024', 'standard', 1,
       0.04, CASE WHEN g %% 20 = 0 THEN 0 ELSE 0.04 END, 'USD',
       CASE WHEN g %% 20 = 0 THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN g %% 20 = 0 THEN 'upstream_error' ELSE '' END,
       CASE WHEN g %% 20 = 0 THEN 502 ELSE 200 END,
       800 + g %% 900, '{}'::jsonb, CASE WHEN g %% 20 = 0 THEN 0 ELSE 0.032 END, '{}'::jsonb
FROM generate_series(1, %(rows)s) AS g
"""


def load(rows: int) -> Organization:
    call_command("migrate", verbosity=0)
    seed_defaults(admin_password="bench-admin-password")
    organization = Organization.objects.filter(slug=ORG).first()
    if organization is None:
        organization = org_create(slug=ORG, name="Bench", tier_slug="enterprise")
    present = UsageLineItem.objects.filter(organization=organization).count()
    if present >= rows:
        print(f"{present} line items already loaded")
        return organization
    UsageLineItem.objects.filter(organization=organization).delete()
    keys = [api_key_create(organization=organization, name=f"bench {i}").api_key.pk for i in range(3)]
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(LOAD_SQL, {"org": organization.pk, "keys": keys, "rows": rows})
        cursor.execute("ANALYZE billing_usagelineitem")
    print(f"loaded {rows} line items in {time.monotonic() - started:.1f} s")
    return organization


def rollups_build(organization: Organization) -> None:
    """The rollups of every loaded day that has settled (final: built SETTLE_MARGIN after the day ended)."""
    now = timezone.now()
    today = today_utc(now)
    last = today - timedelta(days=1 if now >= day_start(today) + SETTLE_MARGIN else 2)
    first = UsageLineItem.objects.filter(organization=organization).earliest("created_at").created_at.date()
    started = time.monotonic()
    # Every organization's, as beat builds them: staff's all-organizations page needs each one's day final.
    rows = rollup_rebuild_range(first=first, last=last)
    print(f"built {rows} rollup rows for {first} to {last} in {time.monotonic() - started:.1f} s")


def rollups_drop() -> None:
    DailyUsageRollup.objects.all().delete()
    UsageRollupDay.objects.all().delete()


def timed(client: Client, url: str, params: dict, runs: int) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url, params)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
        if "page" in response.context:
            assert len(response.context["page"].items) == USAGE_PAGE_SIZE
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--reuse", action="store_true", help="keep the rows a previous run loaded")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to a scratch PostgreSQL database")
    organization = Organization.objects.filter(slug=ORG).first() if args.reuse else None
    organization = organization or load(args.rows)
    owner, _ = get_user_model().objects.get_or_create(username="bench-owner", defaults={"is_staff": True})
    Membership.objects.get_or_create(user=owner, organization=organization, defaults={"role": "owner"})
    # Lets the client answer as "testserver" and keep response.context (a small, conservative overhead).
    setup_test_environment()
    client = Client()
    client.force_login(owner)
    url = reverse("usage", args=[ORG])
    # The cursor of the last item of page 500, as the "Older" link of page 500 would carry it.
    deep = UsageLineItem.objects.filter(organization=organization).order_by("-created_at", "-id")
    deep_cursor = PageCursor.at(deep[500 * USAGE_PAGE_SIZE - 1]).encode()
    key_prefix = organization.api_keys.first().prefix
    cases = [
        ("page 1", url, {}),
        ("page 501 (keyset)", url, {"cursor": deep_cursor}),
        ("model=flux-dev", url, {"model": "flux-dev"}),
        ("status=failed", url, {"status": "failed"}),
        ("end_user=user-42", url, {"end_user": "user-42"}),
        ("key prefix", url, {"key": key_prefix}),
        ("status=failed, page 501", url, {"status": "failed", "cursor": deep_cursor}),
        ("staff, all orgs, page 1", reverse("staff-usage"), {}),
        ("staff, all orgs, page 501", reverse("staff-usage"), {"cursor": deep_cursor}),
        # The other pages that sum the organization's spend.
        ("overview (30-day chart)", reverse("overview", args=[ORG]), {}),
        ("overview, 90 days by key", reverse("overview", args=[ORG]), {"range": "90d", "group": "key"}),
        ("keys (spend per key)", reverse("keys", args=[ORG]), {}),
        ("limits", reverse("limits", args=[ORG]), {}),
    ]
    rollups_drop()
    without = [timed(client, case_url, params, args.runs) for _, case_url, params in cases]
    rollups_build(organization)
    with_rollups = [timed(client, case_url, params, args.runs) for _, case_url, params in cases]
    print(f"median ms over {args.runs} runs")
    print(f"{'case':32} {'without rollups':>16} {'with rollups':>13}")
    for (name, _, _), before, after in zip(cases, without, with_rollups, strict=True):
        print(f"{name:32} {before:16.1f} {after:13.1f}")


if __name__ == "__main__":
    main()
