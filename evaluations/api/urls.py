from django.urls import path, re_path

from evaluations.api import batch_views, views
from evaluations.webhooks.views import WebhookSecretApi

urlpatterns = [
    path("submissions/", views.SubmissionCreateApi.as_view(), name="api-submission-create"),
    path("runs/", views.RunListApi.as_view(), name="api-run-list"),
    path("runs/<int:run_id>/", views.RunDetailApi.as_view(), name="api-run-detail"),
    path("runs/<int:run_id>/cancel/", views.RunCancelApi.as_view(), name="api-run-cancel"),
    path("runs/<int:run_id>/logs/", views.RunLogsApi.as_view(), name="api-run-logs"),
    path("runs/<int:run_id>/metrics/", views.RunMetricsApi.as_view(), name="api-run-metrics"),
    path("submissions/<int:submission_id>/", views.SubmissionDetailApi.as_view(), name="api-submission-detail"),
    path("submissions/<int:submission_id>/runs/", views.SubmissionRerunApi.as_view(), name="api-submission-rerun"),
    path("batches/", batch_views.BatchCreateApi.as_view(), name="api-batch-list"),
    path("batches/<int:batch_id>/", batch_views.BatchDetailApi.as_view(), name="api-batch-detail"),
    path("batches/<int:batch_id>/cancel/", batch_views.BatchCancelApi.as_view(), name="api-batch-cancel"),
    path(
        "batches/<int:batch_id>/rerun-failed/", batch_views.BatchRerunFailedApi.as_view(), name="api-batch-rerun-failed"
    ),
    path("batches/<int:batch_id>/results/", batch_views.BatchResultsJsonApi.as_view(), name="api-batch-results-json"),
    path("batches/<int:batch_id>/results/csv/", batch_views.BatchResultsCsvApi.as_view(), name="api-batch-results-csv"),
    path("webhook-secret/", WebhookSecretApi.as_view(), name="api-webhook-secret"),
    # Any other path ending in a slash (e.g. /runs/abc/): a JSON 404, not the site's HTML page.
    # (Without the slash, CommonMiddleware first redirects to it.)
    re_path(r"^(?:[\s\S]*/)?$", views.endpoint_not_found),
]
