"""The audit log: logins (and failed ones), logouts, submissions, re-runs, cancels and token changes
are recorded with who, what, when and from where — and never a secret."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from evaluations.accounts import audit, tokens
from evaluations.models import AuditEvent

CLIENT_IP = "203.0.113.7"


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def only(action: str) -> AuditEvent:
    found = events(action)
    assert len(found) == 1, f"{len(found)} {action} events: {found}"
    return found[0]


@pytest.fixture
def browser(user) -> Client:
    """Logged in as `user` from CLIENT_IP."""
    browser = Client(REMOTE_ADDR=CLIENT_IP)
    browser.force_login(user)
    return browser


@pytest.fixture
def api(token) -> APIClient:
    client = APIClient(REMOTE_ADDR=CLIENT_IP)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


# -- logging in and out -------------------------------------------------------------------------------


def test_a_login_is_recorded_with_the_address_it_came_from(user, password) -> None:
    browser = Client(REMOTE_ADDR=CLIENT_IP)

    browser.post("/login/", {"username": user.username, "password": password})

    event = only(audit.LOGIN)
    assert event.actor == user and event.actor_name == "alice"
    assert event.ip == CLIENT_IP
    assert timezone.now() - event.at < timezone.timedelta(seconds=10)


def test_a_failed_login_is_recorded_with_the_username_tried_but_not_the_password(user) -> None:
    Client(REMOTE_ADDR=CLIENT_IP).post("/login/", {"username": "alice", "password": "hunter2-wrong"})

    event = only(audit.LOGIN_FAILED)
    assert event.actor is None
    assert event.data == {"username": "alice"} and event.target == "user:alice"
    assert event.ip == CLIENT_IP
    assert "hunter2" not in str(AuditEvent.objects.values())
    assert not events(audit.LOGIN)


def test_a_logout_is_recorded(browser, user) -> None:
    browser.post("/logout/")

    assert only(audit.LOGOUT).actor == user


def test_a_login_to_the_admin_is_recorded(make_user, password) -> None:
    make_user("root", is_superuser=True, is_staff=True)

    Client().post("/admin/login/?next=/admin/", {"username": "root", "password": password, "next": "/admin/"})

    assert only(audit.LOGIN).actor_name == "root"


# -- runs -----------------------------------------------------------------------------------------------


def test_an_api_submission_is_recorded(api, user) -> None:
    response = api.post("/api/v1/submissions/", {"name": "hello", "code": "print(1)"}, format="json")

    event = only(audit.SUBMIT)
    assert event.actor == user and event.target == f"run:{response.json()['id']}"
    assert event.ip == CLIENT_IP
    assert event.data["name"] == "hello" and event.data["project"] is False
    assert "print(1)" not in str(event.data)  # the code is in the submission, not the log


def test_a_form_submission_is_recorded(browser, user) -> None:
    response = browser.post("/submit/", {"name": "form", "code": "print(1)"})

    assert response.status_code == 302
    event = only(audit.SUBMIT)
    assert event.actor == user and event.ip == CLIENT_IP
    assert response["Location"] == f"/runs/{event.target.removeprefix('run:')}/"


def test_a_refused_submission_is_not_recorded(api) -> None:
    assert api.post("/api/v1/submissions/", {"code": ""}, format="json").status_code == 400

    assert not events(audit.SUBMIT)


def test_a_rerun_is_recorded_with_the_run_it_came_from(api, browser, user, make_run) -> None:
    run = make_run(user, status="succeeded")

    from_api = api.post(f"/api/v1/submissions/{run.submission_id}/runs/", {}, format="json").json()["id"]
    browser.post(f"/runs/{run.pk}/rerun/")

    first, second = events(audit.RERUN)
    assert first.target == f"run:{from_api}" and first.data == {"submission": run.submission_id, "from_run": run.pk}
    assert second.actor == user and second.ip == CLIENT_IP


def test_a_cancel_is_recorded(api, browser, user, make_run) -> None:
    queued, running = make_run(user), make_run(user, status="running", started_at=timezone.now())

    api.post(f"/api/v1/runs/{queued.pk}/cancel/")
    browser.post(f"/runs/{running.pk}/cancel/")

    first, second = events(audit.CANCEL)
    assert (first.target, first.data, first.actor) == (f"run:{queued.pk}", {"was": "queued"}, user)
    assert (second.target, second.data, second.ip) == (f"run:{running.pk}", {"was": "running"}, CLIENT_IP)


def test_cancelling_a_finished_run_records_nothing(api, user, make_run) -> None:
    run = make_run(user, status="succeeded")

    assert api.post(f"/api/v1/runs/{run.pk}/cancel/").status_code == 409

    assert not events(audit.CANCEL)


def test_an_admin_cancelling_someone_elses_run_is_the_actor(user, make_user, make_run) -> None:
    run = make_run(user)
    admin = make_user("root", is_superuser=True, is_staff=True)
    browser = Client()
    browser.force_login(admin)

    browser.post(f"/runs/{run.pk}/cancel/")

    assert only(audit.CANCEL).actor == admin


# -- tokens ---------------------------------------------------------------------------------------------


def test_creating_and_revoking_a_token_is_recorded_without_the_key(browser, user) -> None:
    response = browser.post("/profile/tokens/", {"name": "ci"}, follow=True)
    created = only(audit.TOKEN_CREATE)
    token = user.api_tokens.get()

    browser.post(f"/profile/tokens/{token.pk}/revoke/")

    revoked = only(audit.TOKEN_REVOKE)
    for event in (created, revoked):
        assert event.actor == user and event.ip == CLIENT_IP and event.target == f"token:{token.pk}"
        assert event.data == {"name": "ci", "prefix": token.prefix, "user": "alice"}
    key = response.content.decode().split('id="new-key"', 1)[1].split('value="', 1)[1].split('"', 1)[0]
    assert key.startswith("cru_")
    assert key not in str(AuditEvent.objects.values()) and token.key_hash not in str(AuditEvent.objects.values())


# -- where from, and nothing secret ------------------------------------------------------------------


def test_x_forwarded_for_is_ignored_unless_a_proxy_is_trusted(settings, user) -> None:
    settings.CRUCIBLE_TRUSTED_PROXIES = 0
    Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.1").post(
        "/login/", {"username": "alice", "password": "wrong"}
    )

    assert only(audit.LOGIN_FAILED).ip == "10.0.0.2"


def test_behind_a_trusted_proxy_the_address_it_saw_is_used(settings, user) -> None:
    settings.CRUCIBLE_TRUSTED_PROXIES = 1
    # The client made up the first entry; our proxy appended the address it really saw.
    Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.66, 198.51.100.1").post(
        "/login/", {"username": "alice", "password": "wrong"}
    )

    assert only(audit.LOGIN_FAILED).ip == "198.51.100.1"


def test_an_address_that_is_not_one_is_not_stored(user) -> None:
    event = audit.audit_record(actor=user, action=audit.LOGOUT, ip="not-an-ip")

    assert event.ip is None


def test_secrets_passed_by_mistake_are_redacted(user) -> None:
    event = audit.audit_record(
        actor=user,
        action=audit.USER_CHANGE,
        data={"password": "p4ss", "key": "cru_x", "nested": {"api_key": "k", "token": "t", "email": "a@b"}},
    )

    event.refresh_from_db()
    assert event.data == {
        "password": audit.REDACTED,
        "key": audit.REDACTED,
        "nested": {"api_key": audit.REDACTED, "token": audit.REDACTED, "email": "a@b"},
    }


def test_an_unknown_action_is_refused(user) -> None:
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.audit_record(actor=user, action="made_up")


def test_every_documented_action_can_be_recorded(user) -> None:
    names = [
        "LOGIN", "LOGIN_FAILED", "LOGOUT", "SUBMIT", "RERUN", "CANCEL", "TOKEN_CREATE", "TOKEN_REVOKE",
        "ROLE_CHANGE", "QUOTA_CHANGE", "USER_CREATE", "USER_DEACTIVATE", "USER_CHANGE", "SHARE_CHANGE",
    ]  # fmt: skip
    for name in names:
        audit.audit_record(actor=user, action=getattr(audit, name))

    assert AuditEvent.objects.filter(actor=user).count() >= len(names)


def test_the_actors_name_is_kept_when_the_user_is_deleted(user) -> None:
    tokens.token_create(user=user, name="ci")

    user.delete()

    event = only(audit.TOKEN_CREATE)
    assert event.actor is None and event.actor_name == "alice"


# -- read-only in the admin ---------------------------------------------------------------------------


def test_the_audit_log_is_read_only_in_the_admin(make_user, user) -> None:
    event = audit.audit_record(actor=user, action=audit.LOGOUT, ip=CLIENT_IP)
    admin = Client()
    admin.force_login(make_user("root", is_superuser=True, is_staff=True))

    listing = admin.get("/admin/evaluations/auditevent/")
    assert listing.status_code == 200 and CLIENT_IP in listing.content.decode()
    assert admin.get("/admin/evaluations/auditevent/add/").status_code == 403
    admin.post(f"/admin/evaluations/auditevent/{event.pk}/change/", {"action": "login", "target": "x"})
    assert admin.post(f"/admin/evaluations/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403

    event.refresh_from_db()
    assert (event.action, event.target) == (audit.LOGOUT, "")
