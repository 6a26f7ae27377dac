"""What every dashboard view shares: full page or htmx fragment, role checks, confirmation steps.

One view serves both the full page and, for htmx requests, just the panel it
swaps (netbox's `htmx_partial`). Changes that need a confirmation answer first
with a confirmation panel that re-posts the same fields plus `confirmed=1`;
it works the same with and without JavaScript.
"""

import json
from typing import cast

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django_htmx.middleware import HtmxDetails

from accounts.access import OrgAccess, organizations_for

CONFIRM_FIELD = "confirmed"


class HtmxHttpRequest(HttpRequest):
    """A request that went through django-htmx's HtmxMiddleware, which sets `request.htmx`."""

    htmx: HtmxDetails


def htmx_details(request: HttpRequest) -> HtmxDetails:
    # The middleware runs on every request, but HttpRequest's type does not declare the attribute it adds.
    return cast(HtmxHttpRequest, request).htmx


def htmx_partial(request: HttpRequest) -> bool:
    htmx = htmx_details(request)
    return bool(htmx) and not htmx.boosted


def render_panel(request: HttpRequest, template: str, context: dict, *, status: int = 200) -> HttpResponse:
    """`template` is a panel under partials/; a full request gets it wrapped in the page layout."""
    context = {**context, "panel_template": template}
    if htmx_partial(request):
        return render(request, template, context, status=status)
    context.setdefault("organizations", organizations_for(request.user))
    return render(request, "dashboard/page.html", context, status=status)


def require_manage(access: OrgAccess) -> None:
    if not access.can_manage:
        raise PermissionDenied("Only owners and admins can change this")


def require_finance(access: OrgAccess) -> None:
    if not access.can_read_finance:
        raise PermissionDenied("Only owners, admins and finance can see this")


def require_staff(request: HttpRequest) -> None:
    if not request.user.is_staff:
        raise PermissionDenied("Platform staff only")


def confirmed(request: HttpRequest) -> bool:
    return request.POST.get(CONFIRM_FIELD) == "1"


def render_confirmation(
    request: HttpRequest,
    *,
    title: str,
    changes: list[tuple[str, str, str]],
    cancel_url: str,
    context: dict,
    warning: str = "",
) -> HttpResponse:
    """Ask before a change: the same POST again, with `confirmed=1`. `changes` are (what, before, after)."""
    fields = [
        (name, value) for name, values in request.POST.lists() if name != "csrfmiddlewaretoken" for value in values
    ]
    return render_panel(
        request,
        "dashboard/partials/confirm.html",
        {
            **context,
            "confirm_title": title,
            "confirm_changes": changes,
            "confirm_warning": warning,
            "confirm_fields": fields,
            "confirm_action": request.get_full_path(),
            "cancel_url": cancel_url,
        },
    )


def shown(value) -> str:
    """A value as a confirmation's before → after shows it: yes/no, a chain as a → b, else its text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return " → ".join(str(item) for item in value)
    return str(value)


def after_change(request: HttpRequest, url: str) -> HttpResponse:
    """After a successful change: htmx loads the page's fresh panel (and URL), a plain form is redirected."""
    if htmx_details(request):
        response = HttpResponse(status=204)
        response["HX-Location"] = json.dumps({"path": url, "target": "#panel", "select": "#panel", "swap": "outerHTML"})
        return response
    return redirect(url)
