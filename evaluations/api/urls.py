from django.urls import path

from evaluations.api import views

urlpatterns = [
    path("submissions/", views.SubmissionCreateApi.as_view(), name="api-submission-create"),
    path("runs/", views.RunListApi.as_view(), name="api-run-list"),
    path("runs/<int:run_id>/", views.RunDetailApi.as_view(), name="api-run-detail"),
    path("runs/<int:run_id>/cancel/", views.RunCancelApi.as_view(), name="api-run-cancel"),
    path("runs/<int:run_id>/logs/", views.RunLogsApi.as_view(), name="api-run-logs"),
    path("runs/<int:run_id>/metrics/", views.RunMetricsApi.as_view(), name="api-run-metrics"),
    path("submissions/<int:submission_id>/", views.SubmissionDetailApi.as_view(), name="api-submission-detail"),
    path("submissions/<int:submission_id>/runs/", views.SubmissionRerunApi.as_view(), name="api-submission-rerun"),
]
