from django.contrib import admin
from django.urls import include, path

from gateway import views
from gateway.core.errors import Flavor

urlpatterns = [
    path("v1/models", views.list_models, name="v1-models"),
    path("v1/models/<path:model>", views.retrieve_model, name="v1-model"),
    path("v1/images/files/<path:name>", views.image_file, name="image-file"),
    path("v1/images/jobs", views.image_jobs, {"flavor": Flavor.OPENAI}, name="v1-image-jobs"),
    path("v1/images/jobs/<str:public_id>", views.image_job, {"flavor": Flavor.OPENAI}, name="v1-image-job"),
    path("api/images/jobs", views.image_jobs, {"flavor": Flavor.FLAT}, name="image-jobs"),
    path("api/images/jobs/<str:public_id>", views.image_job, {"flavor": Flavor.FLAT}, name="image-job"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.prometheus_metrics, name="metrics"),
    path("admin/", admin.site.urls),
    # The dashboard's person and organization pages, then billing's pages and the usage API.
    path("", include("accounts.urls")),
    path("", include("billing.urls")),
]
