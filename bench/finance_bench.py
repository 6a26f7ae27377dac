"""Finance benchmark: one million line items, then the CSV export, the statement and the usage API.

Run against a throwaway PostgreSQL database (it creates the organization `bench` and its line items):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/imagegate_finance REDIS_URL=redis://127.0.0.1:6379/4 \
        .venv/bin/python bench/finance_bench.py --rows 1000000

Loading is done once by PostgreSQL itself (INSERT ... SELECT generate_series); rerunning reuses the rows.
"""

import argparse
import os
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from accounts.models import Organization  # noqa: E402
from accounts.services import api_key_create, org_create  # noqa: E402
from billing.models import DailyUsageRollup, UsageLineItem, UsageRollupDay  # noqa: E402
from billing.usage.rollups import rollup_rebuild_range  # noqa: E402
from billing.usage.statements import statement_build  # noqa: E402
from gateway.seed import seed_defaults  # noqa: E402

MONTH_SECONDS = 31 * 24 * 3600
LOAD_SQL = """
INSERT INTO billing_usagelineitem (request_id, created_at, organization_id, api_key_id, end_user, provider, model,
    size, quality, n, unit_price, cost, currency, status, error_code, http_status, latency_ms, details)
SELECT 'req-bench-' || g,
       timestamptz '2026-03-01 00:00:00+00' + make_interval(secs => g * %(spread)s),
       %(org)s,
       CASE WHEN g %% 2 = 0 THEN %(key_a)s ELSE %(key_b)s END,
       'user-' || (g %% 500),
       'openai',
       (ARRAY['dall-e-3', 'dall-e-2', 'gpt-image-1'])[1 + g %% 3],
       (ARRAY['1024x1024', '512x512'])[1 + g %% 2],
       (ARRAY['standard', 'hd'])[1 + (g / 7) %% 2],
       1 + g %% 4,
       0.040000,
       CASE WHEN g %% 50 = 0 THEN 0 ELSE 0.040000 * (1 + g %% 4) END,
       'USD',
       CASE WHEN g %% 50 = 0 THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN g %% 50 = 0 THEN 'upstream_error' ELSE '' END,
       CASE WHEN g %% 50 = 0 THEN 502 ELSE 200 END,
       g %% 3000,
       '{}'::jsonb
FROM generate_series(1, %(rows)s) AS g
"""


def timed(label: str, fn):
    start = time.perf_counter()
    result = fn()
    print(f"{label}: {time.perf_counter() - start:.2f} s", flush=True)
    return result


def load(rows: int) -> tuple[Organization, str]:
    call_command("migrate", verbosity=0)
    seed_defaults()
    organization = Organization.objects.filter(slug="bench").first() or org_create(slug="bench", tier_slug="pro")
    reader = api_key_create(organization=organization, name="bench reader", usage_scope="organization")
    existing = UsageLineItem.objects.filter(organization=organization).count()
    if existing != rows:
        UsageLineItem.objects.filter(organization=organization).delete()
        key_a = api_key_create(organization=organization, name="bench a").api_key.pk
        key_b = api_key_create(organization=organization, name="bench b").api_key.pk
        params = {"spread": (MONTH_SECONDS - 1) / rows, "org": organization.pk, "key_a": key_a, "key_b": key_b}

        def insert():
            with connection.cursor() as cursor:
                cursor.execute(LOAD_SQL, {**params, "rows": rows})
                cursor.execute("ANALYZE billing_usagelineitem")

        timed(f"load {rows:,} line items", insert)
    return organization, reader.plaintext


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--output", default="/tmp/finance-bench-export.csv")
    args = parser.parse_args()
    organization, api_key = load(args.rows)

    command = [sys.executable, str(ROOT / "manage.py"), "export_usage", "--org", "bench"]
    command += ["--from", "2026-03-01", "--to", "2026-03-31", "--output", args.output]
    timed("export_usage CSV (subprocess)", lambda: subprocess.run(command, check=True))
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    size_mb = os.path.getsize(args.output) / 1024 / 1024
    print(f"export peak RSS: {peak_mb:.0f} MB, file {size_mb:.0f} MB", flush=True)

    march = date(2026, 3, 1)
    # Start from no rollups, so the first statement reads the line items.
    DailyUsageRollup.objects.filter(organization=organization).delete()
    UsageRollupDay.objects.filter(organization=organization).delete()
    statement = timed("statement from line items", lambda: statement_build(organization=organization, month=march))
    timed("rollup rebuild of the month", lambda: rollup_rebuild_range(first=march, last=date(2026, 3, 31)))
    rolled = timed("statement from rollups", lambda: statement_build(organization=organization, month=march))
    assert rolled.total == statement.total, (rolled.total, statement.total)
    print(f"statement total {statement.total.amount} USD over {statement.total.requests:,} requests", flush=True)

    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key}", HTTP_HOST="localhost")
    page = timed("GET /api/usage (first page of 100)", lambda: client.get("/api/usage?from=2026-03-01&to=2026-03-31"))
    cursor = page.json()["next"]
    timed("GET /api/usage (next page)", lambda: client.get(cursor))
    for group in ("day", "model", "key", "end_user"):
        url = f"/api/usage/summary?from=2026-03-01&to=2026-03-31&group_by={group}"
        response = timed(f"GET /api/usage/summary group_by={group}", lambda url=url: client.get(url))
        assert response.status_code == 200


if __name__ == "__main__":
    main()
