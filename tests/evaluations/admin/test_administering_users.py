"""The admin side in the Django admin: inviting and creating users, roles and teams, deactivation,
quotas per role and per user, every run with filters and a cancel action, and the read-only audit
log — each change audited. Admins are admins by role here (not superusers): the role is what opens
the admin."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.test import Client
from django.utils import timezone

from evaluations.accounts import audit, roles
from evaluations.accounts import services as account_services
from evaluations.models import AuditEvent, Profile, QuotaOverride, QuotaPolicy, Role, Run, Team

User = get_user_model()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    # Passwords set through the admin and the invitation link are hashed for real; keep it cheap.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_member(make_user):
    def _make(name: str, role: str = Role.RESEARCHER, team=None, **fields):
        user = make_user(name, **fields)
        account_services.user_set_role(actor=None, user=user, role=role)
        account_services.user_set_team(actor=None, user=user, team=team)
        return user

    return _make


@pytest.fixture
def admin_user(make_member):
    return make_member("boss", Role.ADMIN)


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def events(action: str, target: str | None = None) -> list[AuditEvent]:
    rows = AuditEvent.objects.filter(action=action).order_by("id")
    return list(rows.filter(target=target) if target is not None else rows)


def form_data(response) -> dict:
    """What the browser would post back from an admin change page, unchanged."""
    data: dict = {}

    def add(form) -> None:
        for name in form.fields:
            value = form[name].value()
            key = form.add_prefix(name)
            if isinstance(value, bool):
                if value:
                    data[key] = "on"
            elif value is not None:
                data[key] = value

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        add(inline.formset.management_form)
        for form in inline.formset.forms:
            add(form)
    return data


# -- who gets in -----------------------------------------------------------------------------------


def test_an_admin_by_role_gets_every_admin_page(admin_client) -> None:
    for path in (
        "/admin/",
        "/admin/auth/user/",
        "/admin/auth/user/add/",
        "/admin/evaluations/team/",
        "/admin/evaluations/quotapolicy/",
        "/admin/evaluations/quotaoverride/",
        "/admin/evaluations/run/",
        "/admin/evaluations/auditevent/",
        "/admin/evaluations/apitoken/",
        "/admin/evaluations/workerheartbeat/",
    ):
        assert admin_client.get(path).status_code == 200, path


@pytest.mark.parametrize("role", [Role.RESEARCHER, Role.REVIEWER])
def test_other_roles_are_sent_to_the_admin_login_even_with_staff_status(make_member, role) -> None:
    user = make_member("someone", role)
    User.objects.filter(pk=user.pk).update(is_staff=True)  # a stale flag must not open the admin
    client = Client()
    client.force_login(user)

    for path in ("/admin/", "/admin/auth/user/", "/admin/evaluations/auditevent/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), path


def test_the_nav_links_the_admin_and_operations_for_admins_only(admin_client, make_member) -> None:
    assert 'href="/admin/"' in admin_client.get("/runs/").content.decode()
    assert 'href="/ops/"' in admin_client.get("/runs/").content.decode()
    researcher = Client()
    researcher.force_login(make_member("r"))
    page = researcher.get("/runs/").content.decode()
    assert 'href="/admin/"' not in page and 'href="/ops/"' not in page


# -- creating and inviting users -------------------------------------------------------------------


def new_user_form(username: str, *, role: str = Role.RESEARCHER, team: Team | None = None, **fields) -> dict:
    return {
        "username": username,
        "email": f"{username}@example.invalid",
        "profile-TOTAL_FORMS": "1",
        "profile-INITIAL_FORMS": "0",
        "profile-MIN_NUM_FORMS": "1",
        "profile-MAX_NUM_FORMS": "1",
        "profile-0-role": role,
        "profile-0-team": str(team.pk) if team else "",
        **fields,
    }


def test_inviting_a_user_gives_a_link_where_they_choose_their_password(admin_client, admin_user) -> None:
    lab = Team.objects.create(name="lab")

    response = admin_client.post(
        "/admin/auth/user/add/",
        new_user_form("newbie", role=Role.REVIEWER, team=lab, usable_password="false"),
        follow=True,
    )

    assert response.status_code == 200
    newbie = User.objects.get(username="newbie")
    assert not newbie.has_usable_password()
    assert newbie.profile.role == Role.REVIEWER and newbie.profile.team == lab
    assert not newbie.is_staff
    link = re.search(r"http://testserver(/set-password/[^\s<\"]+/)", response.content.decode()).group(1)
    (created,) = events(audit.USER_CREATE, "user:newbie")
    assert created.actor == admin_user and created.data["via"] == "admin" and created.data["can_log_in"] is False
    (role_change,) = events(audit.ROLE_CHANGE, "user:newbie")
    assert role_change.data == {"from": Role.RESEARCHER, "to": Role.REVIEWER}

    invited = Client()
    form_page = invited.get(link, follow=True)
    assert form_page.status_code == 200 and form_page.context["validlink"]
    done = invited.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "a fine long passphrase", "new_password2": "a fine long passphrase"},
    )

    assert done.status_code == 302 and done["Location"] == "/set-password/done/"
    assert authenticate(username="newbie", password="a fine long passphrase") == newbie
    assert events(audit.USER_CHANGE, "user:newbie")[-1].data == {"changed": ["password"], "via": "set-password link"}
    # The link works once.
    assert not Client().get(link, follow=True).context["validlink"]


def test_creating_a_user_with_a_password(admin_client) -> None:
    response = admin_client.post(
        "/admin/auth/user/add/",
        new_user_form(
            "withpass", usable_password="true", password1="another fine passphrase", password2="another fine passphrase"
        ),
    )

    assert response.status_code == 302
    user = User.objects.get(username="withpass")
    assert authenticate(username="withpass", password="another fine passphrase") == user
    assert user.profile.role == Role.RESEARCHER
    assert events(audit.USER_CREATE, "user:withpass")[0].data["can_log_in"] is True
    assert not events(audit.ROLE_CHANGE, "user:withpass")  # researcher is what it was made with


@pytest.mark.django_db(transaction=True)
def test_a_username_taken_at_the_same_moment_leaves_one_user_and_a_clean_answer(admin_client, monkeypatch) -> None:
    """Another admin inserts the same username between this form's last check and its insert. On
    PostgreSQL this request loses: the add page shows the form error. SQLite's IMMEDIATE transaction
    holds the write lock from the check to the save, so there the other insert waits and loses."""
    from django.db import IntegrityError, connection

    from evaluations.admin.users import UserCreationWithEmailForm

    validate = UserCreationWithEmailForm._post_clean  # the form's last check, the uniqueness one included
    other: dict = {}

    def other_admin() -> None:  # its own connection
        try:
            other["user"] = User.objects.create(username="twin", email="first@example.invalid")
        except IntegrityError as exc:
            other["refused"] = exc
        finally:
            connection.close()

    def validate_then_race(self):
        validate(self)
        if "thread" not in other:
            other["thread"] = threading.Thread(target=other_admin)
            other["thread"].start()
            if connection.vendor != "sqlite":
                other["thread"].join(timeout=30)  # committed before this request inserts

    monkeypatch.setattr(UserCreationWithEmailForm, "_post_clean", validate_then_race)

    response = admin_client.post("/admin/auth/user/add/", new_user_form("twin", usable_password="false"))
    other["thread"].join(timeout=30)

    assert User.objects.filter(username="twin").count() == 1
    if connection.vendor == "sqlite":
        assert response.status_code == 302 and "refused" in other
        assert User.objects.get(username="twin").email != "first@example.invalid"
        assert len(events(audit.USER_CREATE, "user:twin")) == 1
    else:
        assert response.status_code == 200
        assert "A user with that username already exists." in response.content.decode()
        assert "user" in other and User.objects.get(username="twin").email == "first@example.invalid"
        assert not Profile.objects.filter(user__username="twin").exists()
        assert not events(audit.USER_CREATE, "user:twin")


def test_making_someone_an_admin_gives_them_the_admin_and_taking_it_away_removes_it(
    admin_client, admin_user, make_member
) -> None:
    user = make_member("promoted")
    url = f"/admin/auth/user/{user.pk}/change/"

    data = form_data(admin_client.get(url))
    data["profile-0-role"] = Role.ADMIN
    assert admin_client.post(url, data).status_code == 302
    user.refresh_from_db()
    assert user.is_staff and user.profile.role == Role.ADMIN and user.has_perm("evaluations.administer")

    data = form_data(admin_client.get(url))
    data["profile-0-role"] = Role.REVIEWER
    assert admin_client.post(url, data).status_code == 302
    user = User.objects.get(pk=user.pk)
    assert not user.is_staff and not user.has_perm("evaluations.administer")

    changes = [(e.actor, e.data) for e in events(audit.ROLE_CHANGE, "user:promoted")]
    assert changes[-2:] == [
        (admin_user, {"from": Role.RESEARCHER, "to": Role.ADMIN}),
        (admin_user, {"from": Role.ADMIN, "to": Role.REVIEWER}),
    ]


def test_a_superuser_given_another_role_is_no_longer_a_superuser(admin_user, make_user) -> None:
    root = make_user("root", is_superuser=True, is_staff=True)

    account_services.user_set_role(actor=admin_user, user=root, role=Role.RESEARCHER)

    root = User.objects.get(pk=root.pk)
    assert not root.is_superuser and not root.is_staff
    assert not root.has_perm("evaluations.administer")
    assert events(audit.ROLE_CHANGE, "user:root")[0].data == {"from": Role.ADMIN, "to": Role.RESEARCHER}


def test_the_user_page_shows_a_superusers_role_as_admin_without_a_profile_row(admin_client, make_user) -> None:
    root = make_user("root", is_superuser=True, is_staff=True)

    data = form_data(admin_client.get(f"/admin/auth/user/{root.pk}/change/"))

    assert data["profile-0-role"] == Role.ADMIN
    assert admin_client.post(f"/admin/auth/user/{root.pk}/change/", data).status_code == 302
    assert User.objects.get(pk=root.pk).is_superuser  # saving the page unchanged changes nothing
    assert not events(audit.ROLE_CHANGE, "user:root")


def test_saving_a_superusers_page_for_an_email_change_keeps_them_admin(admin_client, make_user) -> None:
    # A researcher row, as a superuser's first submission used to make: the page shows, and keeps, admin.
    root = make_user("root", is_superuser=True, is_staff=True)
    Profile.objects.create(user=root, role=Role.RESEARCHER)
    url = f"/admin/auth/user/{root.pk}/change/"

    data = form_data(admin_client.get(url))
    assert data["profile-0-role"] == Role.ADMIN
    data["email"] = "root@example.org"
    assert admin_client.post(url, data).status_code == 302

    root = User.objects.get(pk=root.pk)
    assert root.email == "root@example.org"
    assert root.is_superuser and root.is_staff and roles.stored_role(root) == Role.ADMIN
    assert not events(audit.ROLE_CHANGE, "user:root")


def test_a_superuser_can_save_their_own_page(make_user) -> None:
    root = make_user("root", is_superuser=True, is_staff=True)
    Profile.objects.create(user=root, role=Role.RESEARCHER)  # as a first submission used to make
    client = Client()
    client.force_login(root)
    url = f"/admin/auth/user/{root.pk}/change/"

    data = form_data(client.get(url))
    data["first_name"] = "Rooty"
    response = client.post(url, data)

    assert response.status_code == 302, response.content.decode()
    root = User.objects.get(pk=root.pk)
    assert root.first_name == "Rooty" and root.is_superuser
    assert not events(audit.ROLE_CHANGE, "user:root")


def test_changing_a_team_is_audited(admin_client, admin_user, make_member) -> None:
    lab, other = Team.objects.create(name="lab"), Team.objects.create(name="other")
    user = make_member("mover", team=lab)
    url = f"/admin/auth/user/{user.pk}/change/"

    data = form_data(admin_client.get(url))
    data["profile-0-team"] = str(other.pk)
    assert admin_client.post(url, data).status_code == 302

    assert Profile.objects.get(user=user).team == other
    event = events(audit.USER_CHANGE, "user:mover")[-1]
    assert event.actor == admin_user and event.data == {"team": {"from": "lab", "to": "other"}}


def test_changing_an_email_is_audited_with_before_and_after(admin_client, make_member) -> None:
    user = make_member("emailed")
    url = f"/admin/auth/user/{user.pk}/change/"

    data = form_data(admin_client.get(url))
    data["email"] = "new@example.invalid"
    assert admin_client.post(url, data).status_code == 302

    assert events(audit.USER_CHANGE, "user:emailed")[-1].data == {
        "email": {"from": "emailed@example.invalid", "to": "new@example.invalid"}
    }


def test_an_admin_cannot_take_away_their_own_role_or_access(admin_client, admin_user) -> None:
    url = f"/admin/auth/user/{admin_user.pk}/change/"
    page = admin_client.get(url)
    assert "is_active" not in page.context["adminform"].form.fields  # read-only on one's own page

    data = form_data(page)
    data["profile-0-role"] = Role.RESEARCHER
    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "You cannot change your own role" in response.content.decode()
    assert Profile.objects.get(user=admin_user).role == Role.ADMIN
    with pytest.raises(account_services.SelfLockout):
        account_services.user_deactivate(actor=admin_user, user=admin_user)


def test_users_cannot_be_deleted_only_deactivated(admin_client, make_member) -> None:
    user = make_member("keeper")

    assert admin_client.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"}).status_code == 403
    assert User.objects.filter(pk=user.pk).exists()


def test_deactivating_users_from_the_list_stops_their_session_and_tokens_at_once(
    admin_client, admin_user, make_member, make_token
) -> None:
    user = make_member("leaver")
    token = make_token(user)
    their_browser = Client()
    their_browser.force_login(user)
    assert their_browser.get("/runs/").status_code == 200

    response = admin_client.post(
        "/admin/auth/user/", {"action": "deactivate_users", "_selected_action": [user.pk, admin_user.pk]}, follow=True
    )

    assert "You cannot deactivate yourself" in response.content.decode()
    assert not User.objects.get(pk=user.pk).is_active
    assert User.objects.get(pk=admin_user.pk).is_active
    (event,) = events(audit.USER_DEACTIVATE)
    assert event.actor == admin_user and event.target == "user:leaver"
    assert their_browser.get("/runs/")["Location"].startswith("/login/")
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get("/api/v1/runs/").status_code == 401

    admin_client.post("/admin/auth/user/", {"action": "activate_users", "_selected_action": [user.pk]})
    assert User.objects.get(pk=user.pk).is_active
    assert events(audit.USER_CHANGE, "user:leaver")[-1].data == {"is_active": {"from": False, "to": True}}


def test_unticking_active_on_the_user_page_is_audited_as_a_deactivation(admin_client, make_member) -> None:
    user = make_member("unticked")
    url = f"/admin/auth/user/{user.pk}/change/"

    data = form_data(admin_client.get(url))
    del data["is_active"]
    assert admin_client.post(url, data).status_code == 302

    assert not User.objects.get(pk=user.pk).is_active
    assert len(events(audit.USER_DEACTIVATE, "user:unticked")) == 1
    assert not [e for e in events(audit.USER_CHANGE, "user:unticked") if "is_active" in e.data]


def test_set_password_links_can_be_made_again_for_existing_users(admin_client, make_member) -> None:
    user = make_member("forgetful")

    response = admin_client.post(
        "/admin/auth/user/", {"action": "make_set_password_links", "_selected_action": [user.pk]}, follow=True
    )

    assert re.search(
        r"Set-password link for forgetful \(valid for 3 days, once\): http://testserver/set-password/",
        response.content.decode(),
    )
    assert events(audit.USER_CHANGE, "user:forgetful")[-1].data == {"invite_link": "created"}


# -- teams -----------------------------------------------------------------------------------------


def test_deleting_a_team_takes_its_members_out_of_it_audited(admin_client, make_member) -> None:
    lab = Team.objects.create(name="lab")
    member = make_member("member", team=lab)

    response = admin_client.post(f"/admin/evaluations/team/{lab.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Team.objects.exists()
    assert Profile.objects.get(user=member).team is None
    assert events(audit.USER_CHANGE, "user:member")[-1].data == {"team": {"from": "lab", "to": None}}


# -- quotas ----------------------------------------------------------------------------------------


def test_changing_a_roles_quotas_is_audited(admin_client, admin_user) -> None:
    policy = QuotaPolicy.objects.get(role=Role.RESEARCHER)
    url = f"/admin/evaluations/quotapolicy/{policy.pk}/change/"
    before = policy.runs_per_day

    data = form_data(admin_client.get(url))
    data["runs_per_day"] = "7"
    data["max_memory_mb"] = ""
    assert admin_client.post(url, data).status_code == 302

    policy.refresh_from_db()
    assert policy.runs_per_day == 7 and policy.max_memory_mb is None
    (event,) = events(audit.QUOTA_CHANGE)
    assert event.actor == admin_user and event.target == "role:researcher"
    assert event.data == {
        "runs_per_day": {"from": before, "to": 7},
        "max_memory_mb": {"from": 2048, "to": None},
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cpu_seconds_per_day", "-5", "Must not be negative (0 lets no run start)."),
        ("max_wall_seconds", "0.05", "Must be at least 0.1 s: the sandbox&#x27;s minimum for wall time."),
        ("max_wall_seconds", "601", "Must be at most 600.0 s: the sandbox&#x27;s maximum for wall time."),
        ("max_memory_mb", "16", "Must be at least 32 MiB: the sandbox&#x27;s minimum for memory."),
        ("max_memory_mb", "9000", "Must be at most 8192 MiB: the sandbox&#x27;s maximum for memory."),
        ("max_output_bytes", "0", "Must be at least 1024 bytes: the sandbox&#x27;s minimum for output per stream."),
        ("max_upload_bytes", "0", "Must be at least 1024 bytes: less holds no program."),
    ],
)
def test_a_quota_outside_what_the_sandbox_accepts_is_refused_on_the_form(admin_client, field, value, message) -> None:
    policy = QuotaPolicy.objects.get(role=Role.RESEARCHER)
    url = f"/admin/evaluations/quotapolicy/{policy.pk}/change/"
    before = QuotaPolicy.objects.filter(pk=policy.pk).values().get()

    data = form_data(admin_client.get(url))
    data[field] = value
    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert message in response.content.decode()
    assert QuotaPolicy.objects.filter(pk=policy.pk).values().get() == before
    assert not events(audit.QUOTA_CHANGE)


def test_a_users_quota_override_outside_the_sandboxs_limits_is_refused(admin_client, make_user) -> None:
    user = make_user("quotaed", quotas=None)

    response = admin_client.post("/admin/evaluations/quotaoverride/add/", {"user": user.pk, "max_memory_mb": "8"})

    assert response.status_code == 200
    assert "Must be at least 32 MiB" in response.content.decode()
    assert not QuotaOverride.objects.filter(user=user).exists()


def test_an_overrides_user_cannot_be_changed_once_it_exists(admin_client, make_user) -> None:
    first, second = make_user("first", quotas={"concurrent_runs": 3}), make_user("second", quotas=None)
    override = QuotaOverride.objects.get(user=first)
    url = f"/admin/evaluations/quotaoverride/{override.pk}/change/"
    page = admin_client.get(url)
    assert "user" not in page.context["adminform"].form.fields

    data = form_data(page)
    data["user"] = str(second.pk)
    data["concurrent_runs"] = "4"
    assert admin_client.post(url, data).status_code == 302

    override.refresh_from_db()
    assert override.user == first and override.concurrent_runs == 4
    assert not QuotaOverride.objects.filter(user=second).exists()
    assert [e.target for e in events(audit.QUOTA_CHANGE)] == ["user:first"]
    assert "user" in admin_client.get("/admin/evaluations/quotaoverride/add/").context["adminform"].form.fields


def test_every_seeded_quota_policy_is_within_the_sandboxs_limits(db) -> None:
    # 0004 seeded zeros for reviewers, which 0006 moved to the minimums: every policy can be saved.
    for policy in QuotaPolicy.objects.all():
        policy.full_clean()
    reviewer = QuotaPolicy.objects.get(role=Role.REVIEWER)
    assert (reviewer.max_wall_seconds, reviewer.max_memory_mb, reviewer.max_output_bytes) == (0.1, 32, 1024)
    assert (reviewer.concurrent_runs, reviewer.runs_per_day) == (0, 0)  # still: reviewers run nothing


def test_roles_quota_policies_cannot_be_added_or_deleted(admin_client) -> None:
    policy = QuotaPolicy.objects.get(role=Role.RESEARCHER)

    assert admin_client.get("/admin/evaluations/quotapolicy/add/").status_code == 403
    assert admin_client.post(f"/admin/evaluations/quotapolicy/{policy.pk}/delete/", {"post": "yes"}).status_code == 403


def test_a_users_quota_override_is_audited_when_added_changed_and_deleted(admin_client, make_user) -> None:
    user = make_user("quotaed", quotas=None)

    response = admin_client.post(
        "/admin/evaluations/quotaoverride/add/", {"user": user.pk, "concurrent_runs": "5", "runs_per_day": ""}
    )
    assert response.status_code == 302
    override = QuotaOverride.objects.get(user=user)
    url = f"/admin/evaluations/quotaoverride/{override.pk}/change/"
    data = form_data(admin_client.get(url))
    data["concurrent_runs"] = "6"
    assert admin_client.post(url, data).status_code == 302
    assert (
        admin_client.post(f"/admin/evaluations/quotaoverride/{override.pk}/delete/", {"post": "yes"}).status_code == 302
    )

    assert not QuotaOverride.objects.filter(user=user).exists()
    assert [e.data for e in events(audit.QUOTA_CHANGE, "user:quotaed")] == [
        {"concurrent_runs": {"from": None, "to": 5}},
        {"concurrent_runs": {"from": 5, "to": 6}},
        {"concurrent_runs": {"from": 6, "to": None}},
    ]


# -- runs ------------------------------------------------------------------------------------------


def listed_runs(response) -> set[int]:
    return {run.pk for run in response.context["cl"].result_list}


def test_the_run_list_filters_by_owner_status_reason_and_date(admin_client, make_user, make_run) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    queued = make_run(alice)
    failed = make_run(alice, status="failed", reason="exit_code", exit_code=1)
    timed_out = make_run(bob, status="failed", reason="timeout")
    old = make_run(bob, status="succeeded", reason="exit_code")
    Run.objects.filter(pk=old.pk).update(queued_at=timezone.now() - timedelta(days=30))

    def runs(query: str) -> set[int]:
        response = admin_client.get(f"/admin/evaluations/run/?{query}")
        assert response.status_code == 200
        return listed_runs(response)

    assert runs("") == {queued.pk, failed.pk, timed_out.pk, old.pk}
    assert runs(f"submission__owner__id__exact={alice.pk}") == {queued.pk, failed.pk}
    assert runs("status__exact=failed") == {failed.pk, timed_out.pk}
    assert runs("reason__exact=timeout") == {timed_out.pk}
    since = (timezone.now() - timedelta(days=7)).isoformat()
    assert runs(f"queued_at__gte={quote(since)}") == {queued.pk, failed.pk, timed_out.pk}
    assert runs("q=bob") == {timed_out.pk, old.pk}
    assert runs(f"q={failed.pk}") == {failed.pk}


def test_cancelling_selected_runs_goes_through_the_cancel_service(
    admin_client, admin_user, make_user, make_run
) -> None:
    owner = make_user("owner")
    queued = make_run(owner)
    running = make_run(owner, status="running", started_at=timezone.now())
    done = make_run(owner, status="succeeded", reason="exit_code", finished_at=timezone.now())

    response = admin_client.post(
        "/admin/evaluations/run/",
        {"action": "cancel_runs", "_selected_action": [queued.pk, running.pk, done.pk]},
        follow=True,
    )

    assert "Cancelled 2 runs" in response.content.decode() and "1 had already ended" in response.content.decode()
    queued.refresh_from_db(), running.refresh_from_db(), done.refresh_from_db()
    assert queued.status == "cancelled" and queued.reason == "cancelled"
    assert running.status == "running" and running.cancel_requested_at is not None  # the worker stops it
    assert done.status == "succeeded" and done.cancel_requested_at is None
    cancels = events(audit.CANCEL)
    assert {e.target for e in cancels} == {f"run:{queued.pk}", f"run:{running.pk}"}
    assert {e.actor for e in cancels} == {admin_user}


def test_runs_are_read_only_in_the_admin(admin_client, make_user, make_run) -> None:
    run = make_run(make_user("owner"))

    assert admin_client.get(f"/admin/evaluations/run/{run.pk}/change/").status_code == 200  # view
    assert admin_client.post(f"/admin/evaluations/run/{run.pk}/change/", {"status": "succeeded"}).status_code == 403
    assert admin_client.get("/admin/evaluations/run/add/").status_code == 403
    assert Run.objects.get(pk=run.pk).status == "queued"


# -- the audit log ---------------------------------------------------------------------------------


def test_the_audit_log_is_read_only_in_the_admin(admin_client, admin_user) -> None:
    event = audit.audit_record(actor=admin_user, action=audit.USER_CHANGE, target="user:x", data={"a": 1})

    listing = admin_client.get("/admin/evaluations/auditevent/")
    assert listing.status_code == 200 and "user:x" in listing.content.decode()
    assert admin_client.get(f"/admin/evaluations/auditevent/{event.pk}/change/").status_code == 200
    assert admin_client.get("/admin/evaluations/auditevent/add/").status_code == 403
    changed = admin_client.post(f"/admin/evaluations/auditevent/{event.pk}/change/", {"target": "user:y"})
    assert changed.status_code == 403
    deleted = admin_client.post(f"/admin/evaluations/auditevent/{event.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).target == "user:x"
