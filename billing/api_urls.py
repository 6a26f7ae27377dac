from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing import api

urlpatterns = [
    path("usage", api.UsageList.as_view(), name="api-usage"),
    path("usage/summary", api.UsageSummary.as_view(), name="api-usage-summary"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
