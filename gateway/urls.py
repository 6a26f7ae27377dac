from django.contrib import admin
from django.urls import include, path

from gateway import views

urlpatterns = [
    path("v1/models", views.list_models, name="v1-models"),
    path("v1/images/files/<path:name>", views.image_file, name="image-file"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # Finance: usage API (+ OpenAPI schema and docs), exports and statements.
    path("api/", include("billing.api_urls")),
    path("", include("billing.reports_urls")),
    # The dashboard: person/org pages, then usage, pricing, limits and audit.
    path("", include("accounts.urls")),
    path("", include("billing.urls")),
]
