from django.urls import path

from billing import views

urlpatterns = [
    path("orgs/<slug:slug>/", views.overview, name="overview"),
    path("orgs/<slug:slug>/usage/", views.usage, name="usage"),
    path("orgs/<slug:slug>/usage/<str:request_id>/", views.usage_detail, name="usage-detail"),
    path("orgs/<slug:slug>/limits/", views.limits, name="limits"),
    path("orgs/<slug:slug>/limits/tier/", views.limits_tier, name="limits-tier"),
    path("orgs/<slug:slug>/limits/keys/<int:key_id>/", views.limits_key, name="limits-key"),
    path("orgs/<slug:slug>/audit/", views.audit, name="audit"),
    path("staff/usage/", views.staff_usage, name="staff-usage"),
    path("staff/audit/", views.staff_audit, name="staff-audit"),
    path("staff/pricing/", views.pricing, name="pricing"),
    path("staff/pricing/set/", views.pricing_set, name="pricing-set"),
    path("staff/pricing/<int:price_id>/delete/", views.pricing_delete, name="pricing-delete"),
    path("staff/models/", views.catalog, name="catalog"),
    path("staff/models/<int:spec_id>/", views.catalog_update, name="catalog-update"),
]
