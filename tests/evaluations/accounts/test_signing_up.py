"""Self-registration: off unless CRUCIBLE_ALLOW_SIGNUP; when on, /signup/ makes a researcher
(audited), logged in at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from evaluations.accounts import audit
from evaluations.models import AuditEvent, Role

User = get_user_model()
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def signup_open(settings) -> None:
    settings.CRUCIBLE_ALLOW_SIGNUP = True


def form(username: str = "newcomer", password: str = "a long and fine passphrase", **fields) -> dict:
    return {
        "username": username,
        "email": f"{username}@example.invalid",
        "password1": password,
        "password2": password,
    } | fields


def test_it_is_off_by_default_and_nothing_links_to_it(anonymous_client) -> None:
    assert anonymous_client.get("/signup/").status_code == 404
    assert anonymous_client.post("/signup/", form()).status_code == 404
    assert "/signup/" not in anonymous_client.get("/login/").content.decode()
    assert not User.objects.exists()


def test_the_setting_comes_from_the_environment() -> None:
    def allowed(value: str | None) -> str:
        env = {k: v for k, v in os.environ.items() if k != "CRUCIBLE_ALLOW_SIGNUP"}
        if value is not None:
            env["CRUCIBLE_ALLOW_SIGNUP"] = value
        code = "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'crucible_site.settings'); "
        code += "from django.conf import settings; print(settings.CRUCIBLE_ALLOW_SIGNUP)"
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
        return result.stdout.strip() or result.stderr.strip().splitlines()[-1]

    assert allowed(None) == "False"
    assert allowed("true") == "True"
    assert "CRUCIBLE_ALLOW_SIGNUP must be true or false" in allowed("perhaps")


def test_when_open_the_login_page_links_to_it(signup_open, anonymous_client) -> None:
    page = anonymous_client.get("/login/").content.decode()

    assert 'href="/signup/"' in page


def test_signing_up_makes_a_logged_in_researcher_and_is_audited(signup_open, anonymous_client) -> None:
    response = anonymous_client.post("/signup/", form())

    assert response.status_code == 302 and response["Location"] == "/runs/"
    user = User.objects.get(username="newcomer")
    assert user.profile.role == Role.RESEARCHER and user.profile.team is None
    assert not user.is_staff and not user.is_superuser and user.is_active
    assert user.has_perm("evaluations.submit") and not user.has_perm("evaluations.administer")
    assert anonymous_client.get("/runs/").status_code == 200  # logged in
    event = AuditEvent.objects.get(action=audit.USER_CREATE)
    assert event.actor == user and event.target == "user:newcomer"
    assert event.data == {"role": "researcher", "team": None, "via": "signup", "can_log_in": True}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"password2": "something else entirely"}, "didn’t match"),
        ({"password1": "short", "password2": "short"}, "too short"),
        ({"email": "not an address"}, "valid email"),
        ({"username": ""}, "required"),
    ],
)
def test_bad_input_is_shown_on_the_form_and_makes_nobody(signup_open, anonymous_client, fields, message) -> None:
    response = anonymous_client.post("/signup/", form(**fields))

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not User.objects.exists()
    assert not AuditEvent.objects.filter(action=audit.USER_CREATE).exists()


def test_a_taken_username_is_refused(signup_open, anonymous_client, make_user) -> None:
    make_user("newcomer")

    response = anonymous_client.post("/signup/", form())

    assert response.status_code == 400
    assert "already exists" in response.content.decode()


def test_a_username_taken_by_a_sign_up_at_the_same_moment_is_a_form_error(
    signup_open, anonymous_client, monkeypatch
) -> None:
    from evaluations.accounts.views import SignupForm

    validate = SignupForm._post_clean  # the form's last check, the uniqueness one included

    def validate_then_lose_the_race(self):
        validate(self)
        # The other sign-up's insert, after this form found the name free and before it saves.
        User.objects.create(username=self.cleaned_data["username"], email="first@example.invalid")

    monkeypatch.setattr(SignupForm, "_post_clean", validate_then_lose_the_race)

    response = anonymous_client.post("/signup/", form())

    assert response.status_code == 400
    assert "A user with that username already exists." in response.content.decode()
    assert User.objects.get(username="newcomer").email == "first@example.invalid"  # the first one's
    assert not AuditEvent.objects.filter(action=audit.USER_CREATE).exists()
    assert "_auth_user_id" not in anonymous_client.session


def test_someone_logged_in_is_sent_to_their_runs(signup_open, client) -> None:
    assert client.get("/signup/")["Location"] == "/runs/"
