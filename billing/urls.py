from django.urls import path

from billing import limits_views, views

urlpatterns = [
    path("orgs/<slug:slug>/", views.overview, name="overview"),
    path("orgs/<slug:slug>/usage/", views.usage, name="usage"),
    path("orgs/<slug:slug>/usage/<str:request_id>/", views.usage_detail, name="usage-detail"),
    path("orgs/<slug:slug>/limits/", limits_views.limits, name="limits"),
    path("orgs/<slug:slug>/limits/tier/", limits_views.limits_tier, name="limits-tier"),
    path("orgs/<slug:slug>/limits/keys/<int:key_id>/", limits_views.limits_key, name="limits-key"),
    path("orgs/<slug:slug>/limits/spend/", limits_views.limits_spend, name="limits-spend"),
    path(
        "orgs/<slug:slug>/limits/spend/<int:limit_id>/delete/",
        limits_views.limits_spend_delete,
        name="limits-spend-delete",
    ),
    path("orgs/<slug:slug>/limits/alerts/", limits_views.limits_alerts, name="limits-alerts"),
    path("orgs/<slug:slug>/alerts/", limits_views.alerts, name="alerts"),
    path("orgs/<slug:slug>/audit/", views.audit, name="audit"),
    path("staff/usage/", views.staff_usage, name="staff-usage"),
    path("staff/audit/", views.staff_audit, name="staff-audit"),
    path("staff/pricing/", views.pricing, name="pricing"),
    path("staff/pricing/set/", views.pricing_set, name="pricing-set"),
    path("staff/pricing/<int:price_id>/delete/", views.pricing_delete, name="pricing-delete"),
    path("staff/models/", views.catalog, name="catalog"),
    path("staff/models/<int:spec_id>/", views.catalog_update, name="catalog-update"),
]
