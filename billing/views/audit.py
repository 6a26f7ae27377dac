"""The audit log pages: an organization's events (finance roles) and every event (staff)."""

from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from accounts.access import org_access_get
from accounts.dashboard import render_panel, require_finance, require_staff
from accounts.models import AuditEvent

AUDIT_PAGE_SIZE = 50


def _audit_response(request: HttpRequest, events: QuerySet[AuditEvent], context: dict) -> HttpResponse:
    action = request.GET.get("action", "").strip()
    source = request.GET.get("source", "").strip()
    actor = request.GET.get("actor", "").strip()
    before = request.GET.get("before", "")
    if action:
        events = events.filter(action__startswith=action)
    if source:
        events = events.filter(source=source)
    if actor:
        events = events.filter(actor_label=actor)
    if before.isdigit():
        events = events.filter(pk__lt=int(before))
    rows = list(events.select_related("organization").order_by("-id")[: AUDIT_PAGE_SIZE + 1])
    query = request.GET.copy()
    query.pop("before", None)
    context = {
        **context,
        "events": rows[:AUDIT_PAGE_SIZE],
        "next_before": rows[AUDIT_PAGE_SIZE - 1].pk if len(rows) > AUDIT_PAGE_SIZE else None,
        "filters": {"action": action, "source": source, "actor": actor},
        "sources": AuditEvent.Source.choices,
        "query": query.urlencode(),
    }
    return render_panel(request, "billing/partials/audit.html", context)


@login_required
@require_GET
def audit(request: HttpRequest, slug: str) -> HttpResponse:
    access = org_access_get(request.user, slug)
    require_finance(access)
    events = AuditEvent.objects.filter(organization=access.organization)
    return _audit_response(request, events, {"access": access, "audit_url": reverse("audit", kwargs={"slug": slug})})


@login_required
@require_GET
def staff_audit(request: HttpRequest) -> HttpResponse:
    """Every event, platform-wide changes (prices, catalog, tiers) included."""
    require_staff(request)
    return _audit_response(request, AuditEvent.objects.all(), {"staff_view": True, "audit_url": reverse("staff-audit")})
