from django.contrib import admin
from django.urls import include, path

from gateway import views

urlpatterns = [
    path("v1/models", views.list_models, name="v1-models"),
    path("v1/models/<path:model>", views.retrieve_model, name="v1-model"),
    path("v1/images/files/<path:name>", views.image_file, name="image-file"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # The dashboard's person and organization pages, then billing's pages and the usage API.
    path("", include("accounts.urls")),
    path("", include("billing.urls")),
]
