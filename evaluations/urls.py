from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from evaluations import accounts, ops, profile, views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="run-list", permanent=False)),
    path("login/", auth_views.LoginView.as_view(template_name="registration/login.html"), name="login"),
    path("logout/", accounts.LogoutView.as_view(), name="logout"),
    path("runs/", views.run_list, name="run-list"),
    path("runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<int:run_id>/rerun/", views.run_rerun, name="run-rerun"),
    path("submit/", views.submission_new, name="submission-new"),
    path("submissions/<int:submission_id>/share/", views.submission_share, name="submission-share"),
    path("ops/", ops.ops, name="ops"),
    path("signup/", accounts.signup, name="signup"),
    # An invitation (a link made in the user admin): the invited user sets their password.
    path("set-password/<uidb64>/<token>/", accounts.PasswordSetView.as_view(), name="password-set"),
    path(
        "set-password/done/",
        auth_views.PasswordResetCompleteView.as_view(template_name="registration/password_set_done.html"),
        name="password-set-done",
    ),
    path("usage/", views.usage, name="usage"),
    path("profile/", profile.profile, name="profile"),
    path("profile/tokens/", profile.token_create, name="token-create"),
    path("profile/tokens/<int:token_id>/revoke/", profile.token_revoke, name="token-revoke"),
]
