"""Sharing a submission with the owner's team: the owner's choice, on the run page or through
`PATCH /api/v1/submissions/<id>/`; audited; teammates then read its runs and nothing more. Who gets
which status on every route is in test_permission_matrix.py; this is the behaviour around it."""

from __future__ import annotations

import asyncio

import pytest
from django.test import Client
from rest_framework.test import APIClient

from evaluations.accounts import audit
from evaluations.accounts import services as account_services
from evaluations.models import AuditEvent, Role, Submission, Team
from evaluations.runs import lifecycle, services


@pytest.fixture
def lab(db) -> Team:
    return Team.objects.create(name="lab")


@pytest.fixture
def owner(make_user, lab):
    user = make_user("owner")
    account_services.user_set_team(actor=None, user=user, team=lab)
    return user


@pytest.fixture
def teammate(make_user, lab):
    user = make_user("teammate")
    account_services.user_set_team(actor=None, user=user, team=lab)
    return user


@pytest.fixture
def run(make_run, owner):
    return make_run(owner, name="experiment")


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def shared(run) -> bool:
    return Submission.objects.get(pk=run.submission_id).shared_with_team


def test_the_owner_shares_from_the_run_page_and_teammates_can_then_read_it(owner, teammate, run) -> None:
    assert browser(teammate).get(f"/runs/{run.pk}/").status_code == 404
    page = browser(owner).get(f"/runs/{run.pk}/").content.decode()
    assert "Share with team" in page and "not shared" in page

    response = browser(owner).post(
        f"/submissions/{run.submission_id}/share/", {"shared_with_team": "true", "run": run.pk}, follow=True
    )

    assert response.redirect_chain == [(f"/runs/{run.pk}/", 302)]
    assert "Shared with your team (lab)" in response.content.decode()
    assert "Stop sharing" in response.content.decode()
    assert shared(run)
    assert browser(teammate).get(f"/runs/{run.pk}/").status_code == 200
    (event,) = AuditEvent.objects.filter(action=audit.SHARE_CHANGE)
    assert event.actor == owner and event.target == f"submission:{run.submission_id}"
    assert event.data == {"shared_with_team": True}


def test_stopping_sharing_hides_it_from_teammates_again(owner, teammate, run) -> None:
    services.submission_set_shared(actor=owner, submission=run.submission, shared=True)

    browser(owner).post(f"/submissions/{run.submission_id}/share/", {"shared_with_team": "false"})

    assert not shared(run)
    assert browser(teammate).get(f"/runs/{run.pk}/").status_code == 404
    assert api(teammate).get(f"/api/v1/runs/{run.pk}/").status_code == 404
    assert [e.data for e in AuditEvent.objects.filter(action=audit.SHARE_CHANGE).order_by("id")] == [
        {"shared_with_team": True},
        {"shared_with_team": False},
    ]


def test_sharing_covers_every_run_of_the_submission(owner, teammate, run) -> None:
    rerun = services.run_rerun(run=run, actor=owner)

    api(owner).patch(f"/api/v1/submissions/{run.submission_id}/", {"shared_with_team": True}, format="json")

    listed = {r["id"] for r in api(teammate).get("/api/v1/runs/").json()["results"]}
    assert listed == {run.pk, rerun.pk}


def test_setting_what_is_already_set_is_not_audited_again(owner, run) -> None:
    for _ in range(2):
        browser(owner).post(f"/submissions/{run.submission_id}/share/", {"shared_with_team": "true"})

    assert AuditEvent.objects.filter(action=audit.SHARE_CHANGE).count() == 1


def test_a_form_without_a_clear_choice_is_a_bad_request(owner, run) -> None:
    response = browser(owner).post(f"/submissions/{run.submission_id}/share/", {"shared_with_team": "yes"})

    assert response.status_code == 400
    assert "shared_with_team must be true or false" in response.content.decode()
    assert not shared(run)


def test_the_form_returns_to_the_latest_run_when_told_of_no_run_of_this_submission(owner, run, make_run) -> None:
    elsewhere = make_run(owner)

    response = browser(owner).post(
        f"/submissions/{run.submission_id}/share/", {"shared_with_team": "true", "run": elsewhere.pk}
    )

    assert response["Location"] == f"/runs/{run.pk}/"


@pytest.mark.parametrize("back", ["²", "١٢", "1" * 5000, "-1", " 1", ""])
def test_a_run_field_that_is_not_a_plain_number_returns_to_the_latest_run(owner, run, back) -> None:
    # "²" passes str.isdigit() but not int(); 5000 digits pass isdigit() but not int()'s limit.
    form = {"shared_with_team": "true", "run": back}
    response = browser(owner).post(f"/submissions/{run.submission_id}/share/", form)

    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert shared(run)


def test_the_api_answers_with_the_submission(owner, run) -> None:
    response = api(owner).patch(f"/api/v1/submissions/{run.submission_id}/", {"shared_with_team": True}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == run.submission_id and body["owner"] == "owner" and body["shared_with_team"] is True
    assert body["runs_url"].endswith(f"/api/v1/submissions/{run.submission_id}/runs/")
    run_body = api(owner).get(f"/api/v1/runs/{run.pk}/").json()
    assert run_body["submission"]["shared_with_team"] is True and run_body["submission"]["owner"] == "owner"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "shared_with_team"),
        ({"shared_with_team": "maybe"}, "shared_with_team"),
        ({"shared_with_team": 1}, "shared_with_team"),
        ({"shared_with_team": True, "name": "x"}, "name"),
    ],
)
def test_the_api_rejects_anything_but_a_boolean(owner, run, body, field) -> None:
    response = api(owner).patch(f"/api/v1/submissions/{run.submission_id}/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not shared(run)


def test_a_teammate_who_can_read_it_may_not_change_it(owner, teammate, run) -> None:
    services.submission_set_shared(actor=owner, submission=run.submission, shared=True)

    response = api(teammate).patch(f"/api/v1/submissions/{run.submission_id}/", {"shared_with_team": False})

    assert response.status_code == 403
    assert shared(run)


def test_an_admin_may_read_it_but_sharing_stays_the_owners_choice(owner, run, make_user) -> None:
    admin = make_user("admin")
    account_services.user_set_role(actor=None, user=admin, role=Role.ADMIN)

    assert api(admin).get(f"/api/v1/runs/{run.pk}/").status_code == 200
    assert api(admin).patch(f"/api/v1/submissions/{run.submission_id}/", {"shared_with_team": True}).status_code == 403
    assert "share-form" not in browser(admin).get(f"/runs/{run.pk}/").content.decode()


def test_a_researcher_made_reviewer_can_no_longer_change_the_sharing_of_old_submissions(owner, run) -> None:
    # Reviewers are read-only: what they submitted as researchers included.
    services.submission_set_shared(actor=owner, submission=run.submission, shared=True)
    account_services.user_set_role(actor=None, user=owner, role=Role.REVIEWER)

    page = browser(owner).get(f"/runs/{run.pk}/").content.decode()
    assert "share-form" not in page
    form = browser(owner).post(f"/submissions/{run.submission_id}/share/", {"shared_with_team": "false"})
    patch = api(owner).patch(f"/api/v1/submissions/{run.submission_id}/", {"shared_with_team": False}, format="json")

    assert (form.status_code, patch.status_code) == (403, 403)
    assert shared(run)
    assert AuditEvent.objects.filter(action=audit.SHARE_CHANGE).count() == 1  # only the owner's, as researcher


def test_a_researcher_in_no_team_may_share_and_is_told_it_takes_effect_in_a_team(make_user, make_run) -> None:
    loner = make_user("loner")
    run = make_run(loner)

    page = browser(loner).get(f"/runs/{run.pk}/").content.decode()
    assert "sharing takes effect once an admin puts you in one" in page
    response = browser(loner).post(
        f"/submissions/{run.submission_id}/share/", {"shared_with_team": "true"}, follow=True
    )

    html = response.content.decode()
    assert shared(run)
    assert "Shared with your team" not in html
    assert "Not shared with anyone yet: you are in no team." in html
    assert "no team yet: nobody else can read it" in html


def test_teammates_in_another_team_still_cannot_see_it(owner, run, make_user) -> None:
    services.submission_set_shared(actor=owner, submission=run.submission, shared=True)
    outsider = make_user("outsider")
    account_services.user_set_team(actor=None, user=outsider, team=Team.objects.create(name="other"))

    assert browser(outsider).get(f"/runs/{run.pk}/").status_code == 404


def test_moving_the_owner_to_another_team_moves_who_can_read(owner, teammate, run, make_user) -> None:
    services.submission_set_shared(actor=owner, submission=run.submission, shared=True)
    account_services.user_set_team(actor=None, user=owner, team=Team.objects.create(name="new lab"))

    assert browser(teammate).get(f"/runs/{run.pk}/").status_code == 404


# -- run lists follow the runs they show, live ------------------------------------------------------


async def list_socket(user):
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.conf import settings

    from crucible_site.asgi import application

    client = await database_sync_to_async(browser)(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    comm = WebsocketCommunicator(
        application, "/ws/runs/", headers=[(b"cookie", cookie.encode()), (b"origin", b"http://testserver")]
    )
    accepted, _ = await comm.connect(timeout=10)
    assert accepted
    return comm


async def run_ids_heard(comm, quiet: float = 1.0) -> set[int]:
    heard = set()
    while not await comm.receive_nothing(timeout=quiet):
        message = await comm.receive_json_from(timeout=5)
        heard.add(message["id"])
    await comm.disconnect()
    return heard


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_run_lists_hear_of_the_runs_they_show_and_no_others(channel_layer_of_its_own, make_user, make_run):
    from channels.db import database_sync_to_async

    def world():
        lab = Team.objects.create(name="lab")
        people = {}
        for name, role, team in [
            ("owner", Role.RESEARCHER, lab),
            ("teammate", Role.RESEARCHER, lab),
            ("outsider", Role.RESEARCHER, Team.objects.create(name="other")),
            ("reviewer", Role.REVIEWER, None),
            ("admin", Role.ADMIN, None),
        ]:
            people[name] = make_user(name)
            account_services.user_set_role(actor=None, user=people[name], role=role)
            account_services.user_set_team(actor=None, user=people[name], team=team)
        shared_run, private_run = make_run(people["owner"]), make_run(people["owner"])
        services.submission_set_shared(actor=people["owner"], submission=shared_run.submission, shared=True)
        return people, shared_run, private_run

    from django.db import connections

    people, shared_run, private_run = await database_sync_to_async(world)()
    sockets = {name: await list_socket(user) for name, user in people.items()}

    for run in (shared_run, private_run):
        assert await database_sync_to_async(lifecycle.run_claim)(run_id=run.pk)  # queued → running, published on commit

    try:
        heard = dict(zip(sockets, await asyncio.gather(*map(run_ids_heard, sockets.values())), strict=True))
    finally:
        await database_sync_to_async(connections.close_all)()  # the DB thread's, or the test DB cannot be dropped
    both = {shared_run.pk, private_run.pk}
    assert heard == {
        "owner": both,
        "teammate": {shared_run.pk},
        "outsider": set(),
        "reviewer": both,
        "admin": both,
    }
