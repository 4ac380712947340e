from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("evaluations.api.urls")),
    path("", include("evaluations.urls")),
]

handler400 = "evaluations.runs.views.bad_request"
# Their pages read the session and the user: with the database down they answer 503, not 500.
handler403 = "evaluations.unavailable.permission_denied"
handler404 = "evaluations.unavailable.page_not_found"
