"""Who may see and change what in an organization, for every dashboard and finance view.

Views fetch the organization through `org_access_get`, which answers 404 to
anyone who is not a member (or platform staff), so an outsider can never tell
another organization's objects from missing ones.
"""

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import Http404, HttpRequest

from accounts.models import ApiKey, Membership, Organization

MANAGER_ROLES = {Membership.Role.OWNER, Membership.Role.ADMIN}
FINANCE_ROLES = MANAGER_ROLES | {Membership.Role.FINANCE}


@dataclass(frozen=True)
class OrgAccess:
    organization: Organization
    role: str
    is_staff: bool = False

    @property
    def can_manage(self) -> bool:
        """Keys of everyone, limits, members, settings."""
        return self.is_staff or self.role in MANAGER_ROLES

    @property
    def can_read_finance(self) -> bool:
        """The whole organization's usage, spend, reports and exports."""
        return self.is_staff or self.role in FINANCE_ROLES

    @property
    def own_usage_only(self) -> bool:
        """Members see only their own keys and the usage made with them."""
        return not self.can_read_finance


def organizations_for(user) -> list[Organization]:
    if user.is_staff:
        return list(Organization.objects.select_related("tier").order_by("slug"))
    return [
        m.organization for m in user.memberships.select_related("organization__tier").order_by("organization__slug")
    ]


def dashboard_user(request: HttpRequest) -> User:
    """The signed-in user of a dashboard view; an anonymous caller gets the same 404 as an outsider."""
    user = request.user
    if not user.is_authenticated:
        raise Http404("No such organization")
    return user


def org_access_get(user, slug: str) -> OrgAccess:
    """The caller's access to organization `slug`, or Http404 when they have none."""
    if not user.is_authenticated:
        raise Http404("No such organization")
    membership = (
        Membership.objects.select_related("organization__tier").filter(user=user, organization__slug=slug).first()
    )
    if membership is not None:
        return OrgAccess(membership.organization, membership.role, is_staff=user.is_staff)
    if user.is_staff:
        organization = Organization.objects.select_related("tier").filter(slug=slug).first()
        if organization is not None:
            return OrgAccess(organization, Membership.Role.OWNER, is_staff=True)
    raise Http404("No such organization")


def image_keys_visible(access: OrgAccess, user: User) -> QuerySet[ApiKey]:
    """Image keys (revoked ones included): members see the ones they created; everyone else with access sees all
    of the organization's. Usage-API keys have their own page."""
    keys = ApiKey.objects.filter(organization=access.organization, kind=ApiKey.Kind.IMAGES)
    return keys.filter(created_by=user) if access.own_usage_only else keys
