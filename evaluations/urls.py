from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from evaluations import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="run-list", permanent=False)),
    path("login/", auth_views.LoginView.as_view(template_name="registration/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("runs/", views.run_list, name="run-list"),
    path("runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<int:run_id>/rerun/", views.run_rerun, name="run-rerun"),
    path("submit/", views.submission_new, name="submission-new"),
]
