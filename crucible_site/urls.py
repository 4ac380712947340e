from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("evaluations.api.urls")),
    path("", include("evaluations.urls")),
]

handler400 = "evaluations.runs.views.bad_request"
