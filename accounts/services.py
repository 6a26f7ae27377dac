"""Business rules for organizations and API keys."""

import hashlib
import hmac
import re
import secrets
import string
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.audit import Actor, audit_record, audit_snapshot, audited_update
from accounts.models import ApiKey, AuditEvent, EndUserLimit, Membership, Organization, Project, Tier

# A key is "igw_", 32 random base62 characters and a checksum: 6 base62 characters of the CRC32 of the random
# part (GitHub's token format). A mistyped or made-up key fails the checksum and is refused without a database
# query; only a key that could be ours is looked up.
API_KEY_MARKER = "igw_"
# Keys minted before the checksum: "igw-" and 43 URL-safe base64 characters (secrets.token_urlsafe(32)). They
# still work; a malformed one is refused by its shape, but a well-formed one costs a lookup.
LEGACY_API_KEY_MARKER = "igw-"
BASE62 = string.digits + string.ascii_letters
API_KEY_SECRET_CHARS = 32
API_KEY_CHECKSUM_CHARS = 6
_API_KEY = re.compile(f"{API_KEY_MARKER}([{BASE62}]{{{API_KEY_SECRET_CHARS}}})([{BASE62}]{{{API_KEY_CHECKSUM_CHARS}}})")
_LEGACY_API_KEY = re.compile(f"{LEGACY_API_KEY_MARKER}[A-Za-z0-9_-]{{43}}")
ENTERPRISE_TIER = "enterprise"
# Characters of the secret part shown as the key's prefix (after the marker, of the same length for both kinds).
PREFIX_SECRET_CHARS = 8


class AccountError(ValueError):
    """A request to change accounts that cannot be honoured; the message says why."""


def hash_api_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def api_key_prefix(plaintext: str) -> str:
    return plaintext[: len(API_KEY_MARKER) + PREFIX_SECRET_CHARS]


def _api_key_checksum(secret: str) -> str:
    """The CRC32 of the key's random part in base62, padded to API_KEY_CHECKSUM_CHARS (62**6 > 2**32)."""
    value = zlib.crc32(secret.encode())
    digits = []
    for _ in range(API_KEY_CHECKSUM_CHARS):
        value, digit = divmod(value, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def api_key_well_formed(plaintext: str) -> bool:
    """Whether `plaintext` could be one of our keys (marker, length, characters and checksum); no query."""
    found = _API_KEY.fullmatch(plaintext)
    if found is not None:
        return hmac.compare_digest(found.group(2), _api_key_checksum(found.group(1)))
    return _LEGACY_API_KEY.fullmatch(plaintext) is not None


def _api_key_new() -> str:
    secret = "".join(secrets.choice(BASE62) for _ in range(API_KEY_SECRET_CHARS))
    return API_KEY_MARKER + secret + _api_key_checksum(secret)


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    plaintext: str


def org_create(*, slug: str, name: str = "", tier_slug: str = "free", actor: Actor | None = None) -> Organization:
    if Organization.objects.filter(slug=slug).exists():
        raise AccountError(f"Organization '{slug}' already exists")
    tier = tier_get(slug=tier_slug)
    with transaction.atomic():
        organization = Organization.objects.create(slug=slug, name=name or slug, tier=tier)
        if actor is not None:
            audit_record(
                actor=actor,
                action="organization.create",
                instance=organization,
                organization=organization,
                after=audit_snapshot(organization),
            )
    return organization


def tier_get(*, slug: str) -> Tier:
    try:
        return Tier.objects.get(slug=slug)
    except Tier.DoesNotExist:
        known = ", ".join(Tier.objects.values_list("slug", flat=True)) or "none (run seed_defaults)"
        raise AccountError(f"Unknown tier '{slug}'. Known tiers: {known}") from None


def org_get(*, slug: str) -> Organization:
    try:
        return Organization.objects.select_related("tier").get(slug=slug)
    except Organization.DoesNotExist:
        raise AccountError(f"Unknown organization '{slug}'") from None


def api_key_create(
    *,
    organization: Organization,
    name: str = "",
    expires_at: datetime | None = None,
    allowed_models: list[str] | None = None,
    images_per_minute: int | None = None,
    images_per_day: int | None = None,
    created_by=None,
    usage_scope: str = ApiKey.UsageScope.OWN,
    kind: str = ApiKey.Kind.IMAGES,
    project: Project | None = None,
    actor: Actor | None = None,
) -> CreatedApiKey:
    """Mint a key; the plaintext is returned once and never stored."""
    _same_organization(project, organization)
    if usage_scope not in ApiKey.UsageScope.values:
        raise AccountError(f"Unknown usage scope '{usage_scope}'. Allowed: {', '.join(ApiKey.UsageScope.values)}")
    if kind not in ApiKey.Kind.values:
        raise AccountError(f"Unknown key kind '{kind}'. Allowed: {', '.join(ApiKey.Kind.values)}")
    with transaction.atomic():
        while True:
            plaintext = _api_key_new()
            prefix = api_key_prefix(plaintext)
            if not ApiKey.objects.filter(prefix=prefix).exists():
                break
        api_key = ApiKey.objects.create(
            organization=organization,
            name=name,
            prefix=prefix,
            key_hash=hash_api_key(plaintext),
            allowed_models=sorted(set(allowed_models or [])),
            expires_at=expires_at,
            images_per_minute=images_per_minute,
            images_per_day=images_per_day,
            created_by=created_by,
            usage_scope=usage_scope,
            kind=kind,
            project=project,
        )
        if actor is not None:
            audit_record(
                actor=actor,
                action="api_key.create",
                instance=api_key,
                organization=organization,
                after=audit_snapshot(api_key),
            )
    return CreatedApiKey(api_key=api_key, plaintext=plaintext)


def api_key_revoke(*, prefix: str, organization: Organization | None = None, actor: Actor | None = None) -> ApiKey:
    keys = ApiKey.objects.select_related("organization").filter(prefix=prefix)
    if organization is not None:
        keys = keys.filter(organization=organization)
    api_key = keys.first()
    if api_key is None:
        raise AccountError(f"No API key with prefix '{prefix}'")
    if api_key.revoked_at is None:
        changes = {"revoked_at": timezone.now()}
        if actor is None:
            api_key.revoked_at = changes["revoked_at"]
            api_key.save(update_fields=["revoked_at"])
        else:
            audited_update(
                actor=actor,
                action="api_key.revoke",
                instance=api_key,
                changes=changes,
                organization=api_key.organization,
            )
    return api_key


def api_key_update(
    *,
    api_key: ApiKey,
    actor: Actor,
    name: str,
    expires_at: datetime | None,
    allowed_models: list[str],
    images_per_minute: int | None,
    images_per_day: int | None,
) -> ApiKey:
    """Change a key's name, expiry, models and per-key image limits; effective on its next request."""
    changes = {
        "name": name,
        "expires_at": expires_at,
        "allowed_models": sorted(set(allowed_models)),
        "images_per_minute": images_per_minute,
        "images_per_day": images_per_day,
    }
    audited_update(
        actor=actor, action="api_key.update", instance=api_key, changes=changes, organization=api_key.organization
    )
    return api_key


# --- Projects (cost centers) ---------------------------------------------------------

PROJECT_NAME_MAX = cast(int, Project._meta.get_field("name").max_length)


def _same_organization(project: Project | None, organization: Organization) -> None:
    if project is not None and project.organization_id != organization.pk:
        raise AccountError(f"Project '{project.name}' belongs to another organization")


def _project_name_clean(organization: Organization, name: str, *, exclude: Project | None = None) -> str:
    name = name.strip()
    if not name:
        raise AccountError("Give the project a name")
    if len(name) > PROJECT_NAME_MAX:
        raise AccountError(f"A project name has at most {PROJECT_NAME_MAX} characters, not {len(name)}")
    taken = Project.objects.filter(organization=organization, name=name)
    if exclude is not None:
        taken = taken.exclude(pk=exclude.pk)
    if taken.exists():
        raise AccountError(f"{organization.slug} already has a project named '{name}'")
    return name


def _project_limits_check(images_per_minute: int | None, images_per_day: int | None) -> None:
    if any(value is not None and value < 1 for value in (images_per_minute, images_per_day)):
        raise AccountError("Image limits must be at least 1")
    if images_per_minute and images_per_day and images_per_minute > images_per_day:
        raise AccountError("Images per minute cannot be more than images per day")


def project_create(
    *,
    organization: Organization,
    name: str,
    images_per_minute: int | None = None,
    images_per_day: int | None = None,
    actor: Actor,
) -> Project:
    """A new project of the organization, optionally with its own image limits for all its keys together."""
    name = _project_name_clean(organization, name)
    _project_limits_check(images_per_minute, images_per_day)
    with transaction.atomic():
        project = Project.objects.create(
            organization=organization, name=name, images_per_minute=images_per_minute, images_per_day=images_per_day
        )
        audit_record(
            actor=actor,
            action="project.create",
            instance=project,
            organization=organization,
            after=audit_snapshot(project),
        )
    return project


def project_get(*, organization: Organization, name: str) -> Project:
    try:
        return Project.objects.get(organization=organization, name=name.strip())
    except Project.DoesNotExist:
        known = ", ".join(organization.projects.values_list("name", flat=True)) or "none"
        raise AccountError(f"{organization.slug} has no project named '{name}'. Its projects: {known}") from None


def project_update(
    *,
    project: Project,
    actor: Actor,
    name: str | None = None,
    images_per_minute: int | None,
    images_per_day: int | None,
) -> Project:
    """Rename a project (name None: keep it) and set its image limits (None: no limit of its own)."""
    organization = project.organization
    changes: dict = {"images_per_minute": images_per_minute, "images_per_day": images_per_day}
    if name is not None:
        changes["name"] = _project_name_clean(organization, name, exclude=project)
    _project_limits_check(images_per_minute, images_per_day)
    return audited_update(
        actor=actor, action="project.update", instance=project, changes=changes, organization=organization
    )


def api_key_project_set(*, api_key: ApiKey, project: Project | None, actor: Actor) -> ApiKey:
    """Move a key into a project of its own organization, or out of any (None), from its next request on.

    Its past requests stay with the project they were made in (each line item records its own).
    """
    _same_organization(project, api_key.organization)
    if api_key.project_id == (project.pk if project else None):
        return api_key
    return audited_update(
        actor=actor,
        action="api_key.project",
        instance=api_key,
        changes={"project": project},
        organization=api_key.organization,
    )


@dataclass(frozen=True)
class AddedMember:
    membership: Membership
    # Set only when the person was created now: where they choose their password.
    set_password_path: str | None


def password_set_path(user) -> str:
    """A one-time link (Django's reset token) that lets `user` choose a password."""
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("password-set", kwargs={"uidb64": uidb64, "token": default_token_generator.make_token(user)})


def _sees_every_account(actor: Actor) -> bool:
    """Operators (a shell command, a staff user) already see every account, so naming one reveals nothing to them."""
    return actor.source == AuditEvent.Source.COMMAND or bool(actor.user is not None and actor.user.is_staff)


def member_add(*, organization: Organization, actor: Actor, username: str, email: str = "", role: str) -> AddedMember:
    """Add an existing person by username, or create them with an unusable password and a set-password link.

    An organization's own managers add someone who already has an account only by giving that account's email
    address with its username: otherwise any owner could pull in a stranger from another organization by guessing
    a username and read their email on the members page. A mismatch is refused without saying what the email is.
    """
    if role not in Membership.Role.values:
        raise AccountError(f"Unknown role '{role}'. Roles: {', '.join(Membership.Role.values)}")
    username = username.strip() or email.strip()
    if not username:
        raise AccountError("Give a username or an email address")
    user_model = get_user_model()
    with transaction.atomic():
        user = user_model.objects.filter(username=username).first()
        set_password = None
        if user is None:
            user = user_model.objects.create_user(username=username, email=email.strip())
            set_password = password_set_path(user)
        elif Membership.objects.filter(user=user, organization=organization).exists():
            raise AccountError(f"{username} is already a member of {organization.slug}")
        elif not _sees_every_account(actor) and not (email.strip() and email.strip().lower() == user.email.lower()):
            raise AccountError(
                f"The username {username} is taken. To add a person who already has an account, "
                "give their username and the email address of that account; otherwise choose another username."
            )
        membership = Membership.objects.create(user=user, organization=organization, role=role)
        audit_record(
            actor=actor,
            action="member.add",
            instance=membership,
            organization=organization,
            after=audit_snapshot(membership),
        )
    return AddedMember(membership=membership, set_password_path=set_password)


def _last_owner(membership: Membership) -> bool:
    if membership.role != Membership.Role.OWNER:
        return False
    owners = Membership.objects.filter(organization_id=membership.organization_id, role=Membership.Role.OWNER)
    return owners.count() == 1


def member_role_set(*, membership: Membership, actor: Actor, role: str) -> Membership:
    if role not in Membership.Role.values:
        raise AccountError(f"Unknown role '{role}'. Roles: {', '.join(Membership.Role.values)}")
    if role != Membership.Role.OWNER and _last_owner(membership):
        raise AccountError("The organization needs at least one owner; make someone else owner first")
    audited_update(
        actor=actor,
        action="member.role",
        instance=membership,
        changes={"role": role},
        organization=membership.organization,
    )
    return membership


def member_remove(*, membership: Membership, actor: Actor) -> None:
    if _last_owner(membership):
        raise AccountError("The organization needs at least one owner; make someone else owner first")
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="member.remove",
            instance=membership,
            organization=membership.organization,
            before=audit_snapshot(membership),
        )
        membership.delete()


def org_tier_set(
    *,
    organization: Organization,
    tier_slug: str,
    images_per_minute: int | None = None,
    images_per_day: int | None = None,
    max_concurrent_requests: int | None = None,
    actor: Actor | None = None,
) -> Organization:
    """Move an organization to a tier; only Enterprise carries custom image numbers, and any other tier clears
    them. `max_concurrent_requests` overrides the tier's cap on requests in flight, on any tier (None: the tier's)."""
    tier = tier_get(slug=tier_slug)
    custom = (images_per_minute, images_per_day)
    if tier.slug != ENTERPRISE_TIER and any(value is not None for value in custom):
        raise AccountError(f"Custom image limits are for the Enterprise tier only, not '{tier.slug}'")
    if any(value is not None and value < 1 for value in custom):
        raise AccountError("Image limits must be at least 1")
    if max_concurrent_requests is not None and max_concurrent_requests < 1:
        raise AccountError("The concurrent request cap must be at least 1")
    changes = {
        "tier": tier,
        "custom_images_per_minute": images_per_minute,
        "custom_images_per_day": images_per_day,
        "custom_max_concurrent_requests": max_concurrent_requests,
    }
    return audited_update(
        actor=actor or Actor.command(),
        action="organization.tier",
        instance=organization,
        changes=changes,
        organization=organization,
    )


def org_create_with_owner(
    *, slug: str, name: str, tier_slug: str, actor: Actor, owner_username: str = "", owner_email: str = ""
) -> tuple[Organization, AddedMember | None]:
    """A new organization and, when one is named, its first owner (an existing user or a new one), all or nothing."""
    with transaction.atomic():
        organization = org_create(slug=slug, name=name, tier_slug=tier_slug, actor=actor)
        if not (owner_username.strip() or owner_email.strip()):
            return organization, None
        owner = member_add(
            organization=organization,
            actor=actor,
            username=owner_username,
            email=owner_email,
            role=Membership.Role.OWNER,
        )
    return organization, owner


def org_suspend(*, organization: Organization, actor: Actor, reason: str) -> Organization:
    """Refuse every API key of the organization from its next request on; nothing is deleted."""
    reason = reason.strip()
    if not reason:
        raise AccountError("Say why the organization is suspended: the reason goes into the audit log")
    if organization.is_suspended:
        raise AccountError(f"{organization.slug} is already suspended")
    return _org_suspension_set(organization=organization, actor=actor, suspended_at=timezone.now(), reason=reason)


def org_reactivate(*, organization: Organization, actor: Actor, reason: str) -> Organization:
    """Accept the organization's API keys again (the ones not revoked or expired meanwhile)."""
    if not organization.is_suspended:
        raise AccountError(f"{organization.slug} is not suspended")
    return _org_suspension_set(organization=organization, actor=actor, suspended_at=None, reason=reason.strip())


def _org_suspension_set(
    *, organization: Organization, actor: Actor, suspended_at: datetime | None, reason: str
) -> Organization:
    with transaction.atomic():
        before = audit_snapshot(organization)
        organization.suspended_at = suspended_at
        organization.save(update_fields=["suspended_at"])
        audit_record(
            actor=actor,
            action="organization.suspend" if suspended_at else "organization.reactivate",
            instance=organization,
            organization=organization,
            before=before,
            # The reason is not a field of the organization; the log keeps it beside the change.
            after={**audit_snapshot(organization), "reason": reason},
        )
    return organization


# --- End users (the request's `user`) ---------------------------------------------


def end_user_check(end_user: str) -> str:
    """An end user id as limits are stored under it ("" for the default), or AccountError saying what is wrong."""
    longest = EndUserLimit._meta.get_field("end_user").max_length
    if longest is not None and len(end_user) > longest:
        raise AccountError(f"An end user id is at most {longest} characters, this one has {len(end_user)}")
    return end_user


def end_user_limit_update(
    *, organization: Organization, end_user: str, actor: Actor, changes: dict[str, int | None]
) -> EndUserLimit | None:
    """Change an end user's image limits (`end_user` "": the default for every end user) from the next request on.

    `changes` maps images_per_minute / images_per_day to a number, or to None to lift it; a limit not named
    is kept. With neither left, the row goes: the organization's limits apply again. Returns the row, if any.
    """
    end_user_check(end_user)
    unknown = set(changes) - {"images_per_minute", "images_per_day"}
    if unknown:
        raise AccountError(f"Not an end user limit: {', '.join(sorted(unknown))}")
    if any(value is not None and value < 1 for value in changes.values()):
        raise AccountError("Image limits must be at least 1")
    with transaction.atomic():
        limit = EndUserLimit.objects.select_for_update().filter(organization=organization, end_user=end_user).first()
        if limit is None:
            limit = EndUserLimit(organization=organization, end_user=end_user)
        before = audit_snapshot(limit) if limit.pk else None
        for name, value in changes.items():
            setattr(limit, name, value)
        if limit.images_per_minute is None and limit.images_per_day is None:
            if before is not None:
                audit_record(
                    actor=actor,
                    action="end_user_limit.delete",
                    instance=limit,
                    organization=organization,
                    before=before,
                )
                limit.delete()
            return None
        limit.save()
        audit_record(
            actor=actor,
            action="end_user_limit.update" if before else "end_user_limit.create",
            instance=limit,
            organization=organization,
            before=before,
            after=audit_snapshot(limit),
        )
    return limit


def org_require_end_user_set(*, organization: Organization, actor: Actor, required: bool) -> Organization:
    """Whether every image request must name its end user (`user` or `safety_identifier`); from the next request."""
    return audited_update(
        actor=actor,
        action="organization.require_end_user",
        instance=organization,
        changes={"require_end_user": required},
        organization=organization,
    )
