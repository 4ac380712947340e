from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("evaluations.api.urls")),
    # The API's OpenAPI schema (YAML; ?format=json for JSON) and its docs page (evaluations/api/openapi.py).
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", TemplateView.as_view(template_name="evaluations/api_docs.html"), name="api-docs"),
    path("", include("evaluations.urls")),
]

handler400 = "evaluations.runs.views.bad_request"
# Their pages read the session and the user: with the database down they answer 503, not 500.
handler403 = "evaluations.unavailable.permission_denied"
handler404 = "evaluations.unavailable.page_not_found"
