"""Billing's data: acme and globex of the cast, both on the pro tier, their keys, and a March 2026 of line items.

The organizations and people are the cast's (tests/people.py). The ledger below is
the only usage: the cast's few minutes of usage are removed, so month totals are exact.
"""

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounts.models import Organization, Tier
from accounts.services import api_key_create
from billing.models import UsageLineItem
from tests.people import line_item_record

_request_ids = itertools.count(1)


@pytest.fixture
def orgs(people) -> dict[str, Organization]:
    """acme and globex, both on the pro tier, with no usage yet."""
    Organization.objects.filter(pk=people.globex.pk).update(tier=Tier.objects.get(slug="pro"))
    people.globex.refresh_from_db()
    UsageLineItem.objects.all().delete()
    return {"acme": people.acme, "globex": people.globex}


@pytest.fixture
def keys(orgs) -> dict:
    return {
        "acme": api_key_create(organization=orgs["acme"], name="backend"),
        "acme_other": api_key_create(organization=orgs["acme"], name="=cmd|' /C calc'!A0"),
        "acme_admin": api_key_create(organization=orgs["acme"], name="finance", usage_scope="organization"),
        "globex": api_key_create(organization=orgs["globex"], name="globex backend", usage_scope="organization"),
    }


@pytest.fixture
def add_item() -> Callable[..., UsageLineItem]:
    """Record one line item through the billing service, as the pipeline does."""

    def add(
        organization: Organization,
        api_key,
        when: datetime,
        *,
        status: str = UsageLineItem.Status.SUCCEEDED,
        model: str = "dall-e-3",
        size: str = "1024x1024",
        quality: str = "standard",
        n: int = 1,
        unit_price: str = "0.04",
        end_user: str = "",
        error_code: str = "",
        details: dict | None = None,
        provider_cost: str = "0",
        tokens: dict | None = None,
    ) -> UsageLineItem:
        price = Decimal(unit_price)
        cost = price * n if status == UsageLineItem.Status.SUCCEEDED else Decimal(0)
        pk = line_item_record(
            request_id=f"req-test-{next(_request_ids):06d}",
            created_at=when,
            organization_id=organization.pk,
            api_key_id=api_key.api_key.pk if api_key else None,
            status=status,
            model=model,
            provider="openai",
            size=size,
            quality=quality,
            n=n,
            end_user=end_user,
            unit_price=price,
            cost=cost,
            error_code=error_code,
            latency_ms=1234,
            provider_cost=Decimal(provider_cost),
            tokens=tokens,
            details=details,
        )
        return UsageLineItem.objects.get(pk=pk)

    return add


@pytest.fixture
def ledger(orgs, keys, add_item) -> list[UsageLineItem]:
    """A March 2026 of acme (three days, two keys, two models, a failure) and one globex item.

    What the provider charged us for acme's March: 0.226668 of the 0.254002 charged, a margin of 0.027334
    (one line at a loss of 0.000001).
    """
    acme, globex = orgs["acme"], orgs["globex"]
    return [
        add_item(acme, keys["acme"], datetime(2026, 3, 1, 9, 0, tzinfo=UTC), end_user="u-1", provider_cost="0.032"),
        add_item(
            acme,
            keys["acme"],
            datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC),
            n=3,
            unit_price="0.018",
            model="dall-e-2",
            size="512x512",
            quality="",
            end_user="u-2",
            provider_cost="0.048",
        ),  # fmt: skip
        add_item(
            acme,
            keys["acme_other"],
            datetime(2026, 3, 2, 0, 0, tzinfo=UTC),
            quality="hd",
            unit_price="0.08",
            end_user="@SUM(A1)",
            details={"cached": True},
            provider_cost="0.080001",
        ),  # fmt: skip
        add_item(
            acme,
            keys["acme_other"],
            datetime(2026, 3, 15, 12, 0, tzinfo=UTC),
            status="failed",
            error_code="upstream_error",
            end_user="u-1",
        ),  # fmt: skip
        add_item(
            acme,
            keys["acme"],
            datetime(2026, 3, 31, 23, 0, tzinfo=UTC),
            n=2,
            unit_price="0.040001",
            end_user="u-1",
            provider_cost="0.066667",
        ),  # fmt: skip
        add_item(acme, keys["acme"], datetime(2026, 4, 1, 0, 0, tzinfo=UTC), end_user="u-1", provider_cost="0.03"),
        add_item(
            globex,
            keys["globex"],
            datetime(2026, 3, 10, 8, 0, tzinfo=UTC),
            end_user="globex-secret-user",
            provider_cost="0.031337",
        ),
    ]
