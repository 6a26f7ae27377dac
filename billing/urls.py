"""Every billing route: dashboard pages (usage, limits, cache, audit, staff), exports and statements, the usage API."""

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import path, re_path, reverse_lazy
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from billing.views import api, audit, cache, invoices, limits, pricing, projects, reports, staff, usage

urlpatterns = [
    # Usage API (+ OpenAPI schema and docs).
    path("api/usage", api.UsageList.as_view(), name="api-usage"),
    path("api/usage/summary", api.UsageSummary.as_view(), name="api-usage-summary"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view loads its start-up script as a file: the Content-Security-Policy allows no inline script.
    # Its page keeps one inline <style> (three layout rules of drf-spectacular's template): allowed on this page only.
    path(
        "api/docs/",
        csp_update({"style-src": [UNSAFE_INLINE]})(
            # url_self: the script's URL without the page's query string, which the page would otherwise echo.
            SpectacularSwaggerSplitView.as_view(url_name="api-schema", url_self=reverse_lazy("api-docs"))
        ),
        name="api-docs",
    ),
    # Usage, an organization's and every one for staff.
    path("orgs/<slug:slug>/", usage.overview, name="overview"),
    path("orgs/<slug:slug>/usage/", usage.usage, name="usage"),
    path("orgs/<slug:slug>/usage/<str:request_id>/", usage.usage_detail, name="usage-detail"),
    path("staff/usage/", usage.staff_usage, name="staff-usage"),
    # Limits and alerts.
    path("orgs/<slug:slug>/limits/", limits.limits, name="limits"),
    path("orgs/<slug:slug>/limits/tier/", limits.limits_tier, name="limits-tier"),
    path("orgs/<slug:slug>/limits/keys/<int:key_id>/", limits.limits_key, name="limits-key"),
    path("orgs/<slug:slug>/limits/spend/", limits.limits_spend, name="limits-spend"),
    path(
        "orgs/<slug:slug>/limits/spend/<int:limit_id>/delete/", limits.limits_spend_delete, name="limits-spend-delete"
    ),
    path("orgs/<slug:slug>/limits/alerts/", limits.limits_alerts, name="limits-alerts"),
    path("orgs/<slug:slug>/limits/end-users/", limits.limits_end_user, name="limits-end-user"),
    path("orgs/<slug:slug>/limits/end-users/delete/", limits.limits_end_user_delete, name="limits-end-user-delete"),
    path("orgs/<slug:slug>/limits/end-users/require/", limits.limits_require_end_user, name="limits-require-end-user"),
    path("orgs/<slug:slug>/alerts/", limits.alerts, name="alerts"),
    # Projects (cost centers) and their caps.
    path("orgs/<slug:slug>/projects/", projects.projects, name="projects"),
    path("orgs/<slug:slug>/projects/<int:project_id>/", projects.project_edit, name="project-edit"),
    path("orgs/<slug:slug>/projects/<int:project_id>/caps/", projects.project_cap, name="project-cap"),
    path(
        "orgs/<slug:slug>/projects/<int:project_id>/caps/<str:period>/delete/",
        projects.project_cap_delete,
        name="project-cap-delete",
    ),
    # Exports and statements.
    path("orgs/<slug:slug>/exports/", reports.org_exports, name="org-exports"),
    path("orgs/<slug:slug>/exports/<int:export_id>/status", reports.org_export_status, name="org-export-status"),
    path("orgs/<slug:slug>/exports/<int:export_id>/download", reports.org_export_download, name="org-export-download"),
    path("orgs/<slug:slug>/statements/", reports.org_statements, name="org-statements"),
    re_path(r"^orgs/(?P<slug>[-\w]+)/statements/(?P<month>\d{4}-\d{2})/$", reports.org_statement, name="org-statement"),
    re_path(
        r"^orgs/(?P<slug>[-\w]+)/statements/(?P<month>\d{4}-\d{2})\.csv$",
        reports.org_statement_csv,
        name="org-statement-csv",
    ),
    path("staff/exports/", reports.staff_exports, name="staff-exports"),
    path("staff/exports/<int:export_id>/status", reports.staff_export_status, name="staff-export-status"),
    path("staff/exports/<int:export_id>/download", reports.staff_export_download, name="staff-export-download"),
    # Invoices and credit notes, billing details, the issuer.
    path("orgs/<slug:slug>/invoices/", invoices.invoices, name="org-invoices"),
    path("orgs/<slug:slug>/invoices/<int:invoice_id>/", invoices.invoice, name="org-invoice"),
    path("orgs/<slug:slug>/invoices/<int:invoice_id>/pdf", invoices.invoice_pdf, name="org-invoice-pdf"),
    path(
        "orgs/<slug:slug>/invoices/<int:invoice_id>/credit-note/",
        invoices.invoice_credit_note,
        name="org-invoice-credit-note",
    ),
    path("orgs/<slug:slug>/billing-details/", invoices.billing_details, name="org-billing-details"),
    path("staff/invoicing/", invoices.staff_invoicing, name="staff-invoicing"),
    # Audit log.
    path("orgs/<slug:slug>/audit/", audit.audit, name="audit"),
    path("staff/audit/", audit.staff_audit, name="staff-audit"),
    # Staff: pricing and the model catalog.
    path("staff/pricing/", pricing.pricing, name="pricing"),
    path("staff/pricing/set/", pricing.pricing_set, name="pricing-set"),
    path("staff/pricing/<int:price_id>/delete/", pricing.pricing_delete, name="pricing-delete"),
    path("staff/models/", pricing.catalog, name="catalog"),
    path("staff/models/<int:spec_id>/", pricing.catalog_update, name="catalog-update"),
    path("staff/models/<int:spec_id>/successor/", pricing.successor_update, name="successor-update"),
    # Staff: organizations, fallback routes, providers.
    path("staff/organizations/", staff.organizations, name="staff-organizations"),
    path("staff/organizations/create/", staff.organization_create, name="staff-organization-create"),
    # `org_slug`, not `slug`: a staff page about an organization, not one of the organization's own pages.
    path(
        "staff/organizations/<slug:org_slug>/suspension/",
        staff.organization_suspension,
        name="staff-organization-suspension",
    ),
    path("staff/routes/", staff.routes, name="staff-routes"),
    path("staff/routes/create/", staff.route_create, name="staff-route-create"),
    path("staff/routes/<int:route_id>/", staff.route_edit, name="staff-route-edit"),
    path("staff/routes/<int:route_id>/delete/", staff.route_delete, name="staff-route-delete"),
    path("staff/providers/", staff.providers, name="staff-providers"),
    # An organization's response cache.
    path("orgs/<slug:slug>/cache/", cache.cache_policy, name="cache-policy"),
]
