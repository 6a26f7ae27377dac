"""Who is calling: the API key presented, with its organization and tier, found by one statement and checked here.

Every door that takes an API key authenticates through this module: the image endpoints
(whose phase one widens the statement with what it needs besides, so a call still costs
one round trip: gateway.pipeline.context), GET /v1/models and the usage API. Only a key's
hash and its short prefix are stored; the prefix finds the row, the hash is compared in
constant time, and a revoked or expired key is refused like an unknown one. A key that cannot be
one of ours (marker, length, characters, checksum: accounts.services) is refused without a query,
and a client address that keeps presenting refused keys is throttled (accounts.throttle). A live key of a
suspended organization, or a read-only usage key at an image door, is refused with a 403 that
says why (caller_refusal), from the same row: no second query.
"""

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db.models import Field
from django.utils import timezone

from accounts.models import ApiKey, Organization, Project, Tier
from accounts.services import api_key_prefix, api_key_well_formed, hash_api_key
from accounts.throttle import auth_failure_record, auth_refusal
from gateway.core.db import HotStatements, concrete_field
from gateway.core.errors import GatewayError

Quote = Callable[[str], str]

KEY_COLUMNS = (
    "id",
    "prefix",
    "key_hash",
    "allowed_models",
    "images_per_minute",
    "images_per_day",
    "usage_scope",
    "expires_at",
    "revoked_at",
    "last_used_at",
    "kind",
)
ORGANIZATION_COLUMNS = (
    "id",
    "slug",
    "custom_images_per_minute",
    "custom_images_per_day",
    "suspended_at",
    "require_end_user",
    "custom_max_concurrent_requests",
)
TIER_COLUMNS = ("name", "images_per_minute", "images_per_day", "max_concurrent_requests")
# The key's project, when it has one (a LEFT JOIN: all of them NULL otherwise).
PROJECT_COLUMNS = ("id", "name", "images_per_minute", "images_per_day")
# How many columns of a caller statement's row are the caller's; a widened statement's own follow.
CALLER_WIDTH = len(KEY_COLUMNS) + len(ORGANIZATION_COLUMNS) + len(TIER_COLUMNS) + len(PROJECT_COLUMNS)


@dataclass(frozen=True)
class Caller:
    """Who is calling, as far as the gateway needs to know, detached from the ORM."""

    api_key_id: int
    api_key_prefix: str
    allowed_models: tuple[str, ...]
    organization_id: int
    organization_slug: str
    tier_name: str
    images_per_minute: int
    images_per_day: int
    key_images_per_minute: int | None = None
    key_images_per_day: int | None = None
    # Which usage the key may read from the usage API: its own requests, or the whole organization's.
    usage_scope: str = ApiKey.UsageScope.OWN
    # Whether a spend cap applies to this organization or key: without one, no reservation is made.
    has_spend_limits: bool = True
    # An image key, or a read-only key for the usage API.
    key_kind: str = ApiKey.Kind.IMAGES
    organization_suspended: bool = False
    # Whether every image request must name its end user (`user` or `safety_identifier`).
    requires_end_user: bool = False
    # The key's project (cost center): its usage is recorded, limited and capped with the project's.
    project_id: int | None = None
    project_name: str = ""
    project_images_per_minute: int | None = None
    project_images_per_day: int | None = None
    # Image requests of the organization in flight at once (its override, else its tier's); 0: no cap.
    max_concurrent_requests: int = 0

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models


def _columns(quote: Quote, alias: str, model, names: Sequence[str]) -> list[str]:
    return [f"{alias}.{quote(concrete_field(model, name).column)}" for name in names]


def caller_statement(quote: Quote, *, columns: Sequence[str] = (), joins: Sequence[str] = ()) -> str:
    """The SELECT of the key (alias k) by its prefix, with its organization (o) and tier (t).

    `columns` and `joins` widen it with what a caller needs besides, as SQL over those aliases.
    """

    def table(model) -> str:
        return quote(model._meta.db_table)

    selected = [
        *_columns(quote, "k", ApiKey, KEY_COLUMNS),
        *_columns(quote, "o", Organization, ORGANIZATION_COLUMNS),
        *_columns(quote, "t", Tier, TIER_COLUMNS),
        *_columns(quote, "pj", Project, PROJECT_COLUMNS),
        *columns,
    ]
    # Identifiers come from model metadata and are quoted; the key prefix is a parameter.
    return " ".join(
        [
            f"SELECT {', '.join(selected)} FROM {table(ApiKey)} k",  # noqa: S608
            f"JOIN {table(Organization)} o ON o.{quote('id')} = k.{quote('organization_id')}",
            f"JOIN {table(Tier)} t ON t.{quote('id')} = o.{quote('tier_id')}",
            f"LEFT JOIN {table(Project)} pj ON pj.{quote('id')} = k.{quote('project_id')}",
            *joins,
            f"WHERE k.{quote('prefix')} = %s",
        ]
    )


@cache
def caller_fields() -> tuple[Field, ...]:
    """The caller's columns as model fields, whose converters turn the raw row into Python values."""
    return (
        *(concrete_field(ApiKey, name) for name in KEY_COLUMNS),
        *(concrete_field(Organization, name) for name in ORGANIZATION_COLUMNS),
        *(concrete_field(Tier, name) for name in TIER_COLUMNS),
        *(concrete_field(Project, name) for name in PROJECT_COLUMNS),
    )


def lookup_prefix(plaintext: str) -> str | None:
    """The prefix to look a presented key up by, or None when it cannot be one of ours (checked without a query)."""
    if not api_key_well_formed(plaintext):
        return None
    return api_key_prefix(plaintext)


@dataclass(frozen=True)
class Authenticated:
    caller: Caller
    # Whether the key's last-used time is due a write (see caller_touch).
    touch_due: bool


def caller_check(plaintext: str, row: Sequence) -> Authenticated | None:
    """The caller behind a caller statement's row, when `plaintext` is its live key; else None."""
    key = dict(zip(KEY_COLUMNS, row[: len(KEY_COLUMNS)], strict=True))
    rest = row[len(KEY_COLUMNS) : CALLER_WIDTH]
    org = dict(zip(ORGANIZATION_COLUMNS, rest[: len(ORGANIZATION_COLUMNS)], strict=True))
    rest = rest[len(ORGANIZATION_COLUMNS) :]
    tier = dict(zip(TIER_COLUMNS, rest[: len(TIER_COLUMNS)], strict=True))
    project = dict(zip(PROJECT_COLUMNS, rest[len(TIER_COLUMNS) :], strict=True))
    now = timezone.now()
    if not hmac.compare_digest(key["key_hash"], hash_api_key(plaintext)):
        return None
    if key["revoked_at"] is not None or (key["expires_at"] is not None and key["expires_at"] <= now):
        return None
    caller = Caller(
        api_key_id=key["id"],
        api_key_prefix=key["prefix"],
        allowed_models=tuple(key["allowed_models"] or ()),
        organization_id=org["id"],
        organization_slug=org["slug"],
        tier_name=tier["name"],
        images_per_minute=org["custom_images_per_minute"] or tier["images_per_minute"],
        images_per_day=org["custom_images_per_day"] or tier["images_per_day"],
        key_images_per_minute=key["images_per_minute"],
        key_images_per_day=key["images_per_day"],
        usage_scope=key["usage_scope"],
        key_kind=key["kind"],
        organization_suspended=org["suspended_at"] is not None,
        requires_end_user=bool(org["require_end_user"]),
        project_id=project["id"],
        project_name=project["name"] or "",
        project_images_per_minute=project["images_per_minute"],
        project_images_per_day=project["images_per_day"],
        max_concurrent_requests=org["custom_max_concurrent_requests"] or tier["max_concurrent_requests"],
    )
    return Authenticated(caller, touch_due=_touch_due(last_used_at=key["last_used_at"], now=now))


class Door:
    """Which kind of endpoint a key is presented to: a usage key may read usage and nothing else."""

    IMAGES = "images"
    USAGE = "usage"


def caller_refusal(caller: Caller, *, door: str) -> GatewayError | None:
    """Why a live key is still refused at `door` (a suspended organization, a usage key on the images), or None.

    A 403 rather than a 401: the key is genuine, and retrying it cannot help.
    """
    if caller.organization_suspended:
        return GatewayError(
            403,
            "organization_suspended",
            f"The organization '{caller.organization_slug}' is suspended: its API keys are refused. "
            "Contact the platform's support to reactivate it.",
        )
    if door == Door.IMAGES and caller.key_kind == ApiKey.Kind.USAGE:
        return GatewayError(
            403,
            "usage_key_not_allowed",
            "This is a read-only usage key: it only reads the usage API (/api/usage). "
            "Use an image key for image requests.",
        )
    return None


def _touch_due(*, last_used_at: datetime | None, now: datetime) -> bool:
    # Writing on every request would turn each call into a row update on a hot row;
    # a coarse resolution is all a "last used" column needs.
    resolution = timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
    return last_used_at is None or now - last_used_at >= resolution


def caller_authenticate(plaintext: str | None, *, client: str) -> Caller | None:
    """The caller behind a presented key, or None (missing, malformed, unknown, revoked or expired); on this thread.

    `client` is the request's address: one that has failed too often lately is refused (GatewayError 429)
    before any query, and each key refused here counts against it (accounts.throttle).
    """
    refusal = auth_refusal(client)
    if refusal is not None:
        raise refusal
    prefix = lookup_prefix(plaintext or "")
    found = None
    if prefix is not None:
        rows = HotStatements.select("caller", caller_statement, caller_fields(), [prefix])
        found = caller_check(plaintext or "", rows[0]) if rows else None
    if found is None:
        if plaintext:
            auth_failure_record(client)
        return None
    if found.touch_due:
        HotStatements.update(ApiKey, found.caller.api_key_id, {"last_used_at": timezone.now()}, where={})
    return found.caller


async def caller_touch(caller: Caller) -> None:
    """Record that the caller's key was used (when caller_check says it is due)."""
    await HotStatements.aupdate(ApiKey, caller.api_key_id, {"last_used_at": timezone.now()}, where={})
