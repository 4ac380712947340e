"""Page routes, by domain (the API's are in evaluations/api/urls.py, websockets' in live/routing.py)."""

from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from evaluations.accounts import profile
from evaluations.accounts import views as accounts
from evaluations.admin import ops
from evaluations.batches import views as batches
from evaluations.monitoring import health_views
from evaluations.monitoring.metrics_views import metrics_view
from evaluations.runs import views as runs
from evaluations.webhooks import views as webhooks

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="run-list", permanent=False)),
    # runs
    path("runs/", runs.run_list, name="run-list"),
    path("runs/<int:run_id>/", runs.run_detail, name="run-detail"),
    path("runs/<int:run_id>/output/", runs.run_output_download, name="run-output"),
    path("runs/<int:run_id>/files/<path:path>", runs.run_file, name="run-file"),
    path("runs/compare/", runs.run_compare, name="run-compare"),
    path("runs/<int:run_id>/cancel/", runs.run_cancel_view, name="run-cancel"),
    path("runs/<int:run_id>/rerun/", runs.run_rerun_view, name="run-rerun"),
    path("submit/", runs.submission_new, name="submission-new"),
    path("submissions/<int:submission_id>/share/", runs.submission_share, name="submission-share"),
    # batches
    path("batches/", batches.batch_list, name="batch-list"),
    path("batches/new/", batches.batch_new, name="batch-new"),
    path("batches/<int:batch_id>/", batches.batch_detail, name="batch-detail"),
    path("batches/<int:batch_id>/cancel/", batches.batch_cancel_view, name="batch-cancel"),
    path("batches/<int:batch_id>/rerun-failed/", batches.batch_rerun_view, name="batch-rerun-failed"),
    # accounts
    path("login/", auth_views.LoginView.as_view(template_name="registration/login.html"), name="login"),
    path("logout/", accounts.LogoutView.as_view(), name="logout"),
    path("signup/", accounts.signup, name="signup"),
    # An invitation (a link made in the user admin): the invited user sets their password.
    path("set-password/<uidb64>/<token>/", accounts.PasswordSetView.as_view(), name="password-set"),
    path(
        "set-password/done/",
        auth_views.PasswordResetCompleteView.as_view(template_name="registration/password_set_done.html"),
        name="password-set-done",
    ),
    path("usage/", accounts.usage, name="usage"),
    path("profile/", profile.profile, name="profile"),
    path("profile/webhook/", webhooks.webhook_settings_view, name="webhook-settings"),
    path("profile/webhook/secret/", webhooks.webhook_secret_view, name="webhook-secret"),
    path("profile/tokens/", profile.token_create_view, name="token-create"),
    path("profile/tokens/<int:token_id>/created/", profile.token_created_view, name="token-created"),
    path("profile/tokens/<int:token_id>/revoke/", profile.token_revoke_view, name="token-revoke"),
    # operations
    path("ops/", ops.ops, name="ops"),
    # Prometheus scrapes (admins' tokens, allowed addresses; docs/monitoring.md)
    path("metrics", metrics_view, name="metrics"),
    # monitoring: liveness and readiness probes (no login)
    path("healthz", health_views.healthz, name="healthz"),
    path("readyz", health_views.readyz, name="readyz"),
]
