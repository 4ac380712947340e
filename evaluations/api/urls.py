from django.urls import path

from evaluations.api import views

urlpatterns = [
    path("submissions/", views.SubmissionCreateApi.as_view(), name="api-submission-create"),
    path("runs/", views.RunListApi.as_view(), name="api-run-list"),
    path("runs/<int:run_id>/", views.RunDetailApi.as_view(), name="api-run-detail"),
]
