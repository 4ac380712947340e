"""Who may do what: every route × role × ownership, from one table.

The routes come from the URLconf (and the websocket routing), so a new route without a row here
fails `test_every_route_has_a_row_in_the_matrix`. Excluded on purpose: the Django admin's own URLs
(`admin/`, one row below checks its index) and static files (served by whitenoise, not the URLconf).

The world of every test: a team "lab" with the owner and a teammate; the owner has two runs, one
whose submission is shared with the team and one that is not; "other" is a researcher in another
team; a reviewer; an admin (by role, not a superuser); a superuser without a profile row (what
createsuperuser and crucible_demo make), who must get exactly what the admin role gets — Django's
has_perm would give them everything, owner-only actions included; and a deactivated user, who was
an admin — so whatever they are refused is refused because they are deactivated. Targets: the shared run,
the private run, and a run id that does not exist — another user's run must look exactly like that
one (404, never 403).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

ACTORS = ("anonymous", "owner", "teammate", "other", "reviewer", "admin", "superuser", "deactivated")
MISSING_ID = 987_654_321

# Outcomes. HTTP: a status code, or one of these redirects. Websocket: OPEN or a close code.
LOGIN = "login"  # 302 to the login page
ADMIN_LOGIN = "admin-login"  # 302 to the admin's login page
FOUND = "found"  # 302 elsewhere: the action worked and the page moves on
OPEN = "open"
L, AL, F = LOGIN, ADMIN_LOGIN, FOUND


@dataclass(frozen=True)
class Case:
    route: str  # exactly as in the URLconf (or the websocket routing)
    method: str
    # What the URL's id points at: None, "run" or "submission" (targets shared/private/missing),
    # "token" (the owner's API token, or a missing one).
    kind: str | None
    # One outcome per actor (ACTORS order), or {target: outcomes} when the URL names an object.
    expect: tuple | dict[str, tuple]
    data: Any = None
    api: bool = False  # JSON API: also run with token authentication
    query: str = ""

    def outcomes(self) -> dict[str, tuple]:
        return self.expect if isinstance(self.expect, dict) else {"-": self.expect}


def by_target(shared: tuple, private: tuple, missing: tuple) -> dict[str, tuple]:
    return {"shared": shared, "private": private, "missing": missing}


def reading(ok: Any, anon: Any, hidden: Any = 404) -> dict[str, tuple]:
    """Reading a run: owner, teammates (shared only), reviewers and admins; others: not found."""
    no = hidden
    return by_target(
        shared=(anon, ok, ok, no, ok, ok, ok, anon),
        private=(anon, ok, no, no, ok, ok, ok, anon),
        missing=(anon, no, no, no, no, no, no, anon),
    )


def owner_only(ok: Any, anon: Any) -> dict[str, tuple]:
    """Re-running and sharing: the owner only; whoever can see the run but is not its owner: 403."""
    return by_target(
        shared=(anon, ok, 403, 404, 403, 403, 403, anon),
        private=(anon, ok, 404, 404, 403, 403, 403, anon),
        missing=(anon, 404, 404, 404, 404, 404, 404, anon),
    )


def cancelling(ok: Any, anon: Any) -> dict[str, tuple]:
    """Cancelling: the owner and admins; teammates and reviewers see the run but may not."""
    return by_target(
        shared=(anon, ok, 403, 404, 403, ok, ok, anon),
        private=(anon, ok, 404, 404, 403, ok, ok, anon),
        missing=(anon, 404, 404, 404, 404, 404, 404, anon),
    )


def everyone(outcome: Any) -> tuple:
    return (outcome,) * len(ACTORS)


def signed_in(outcome: Any, anon: Any = LOGIN) -> tuple:
    return (anon, outcome, outcome, outcome, outcome, outcome, outcome, anon)


SUBMIT_FORM = {"name": "matrix", "code": "print(1)\n"}

#                                           anonymous owner teammate other reviewer admin superuser deactivated
HTTP_MATRIX: list[Case] = [
    # -- pages --------------------------------------------------------------------------------------
    Case("", "GET", None, everyone(F)),  # → /runs/
    Case("login/", "GET", None, everyone(200)),
    Case("login/", "POST", None, everyone(200), data={"username": ""}),  # the form again (no slow hashing)
    Case("logout/", "GET", None, everyone(405)),
    Case("logout/", "POST", None, everyone(L)),  # logged out, on to the login page
    Case("signup/", "GET", None, everyone(404)),  # off by default (test_signing_up.py turns it on)
    Case("signup/", "POST", None, everyone(404), data={"username": "new", "email": "n@example.invalid"}),
    Case("set-password/<uidb64>/<token>/", "GET", "invite", everyone(200)),  # "this link is not valid"
    Case("set-password/<uidb64>/<token>/", "POST", "invite", everyone(200), data={"new_password1": "x"}),
    Case("set-password/done/", "GET", None, everyone(200)),
    Case("runs/", "GET", None, signed_in(200)),
    Case("runs/<int:run_id>/", "GET", "run", reading(200, L)),
    Case("runs/<int:run_id>/output/", "GET", "run", reading(200, L)),
    # Pasted code has no project files: whoever may read the run is told so (404), others too.
    Case("runs/<int:run_id>/files/<path:path>", "GET", "run", reading(404, L)),
    Case("runs/compare/", "GET", None, signed_in(400)),  # no runs named: the page says how
    Case("runs/<int:run_id>/cancel/", "GET", "run", by_target(*[(L, 405, 405, 405, 405, 405, 405, L)] * 3)),
    Case("runs/<int:run_id>/cancel/", "POST", "run", cancelling(F, L)),
    Case("runs/<int:run_id>/rerun/", "POST", "run", owner_only(F, L)),
    Case("submit/", "GET", None, (L, 200, 200, 200, 403, 200, 200, L)),
    Case("submit/", "POST", None, (L, F, F, F, 403, F, F, L), data=SUBMIT_FORM),
    Case(
        "submissions/<int:submission_id>/share/",
        "POST",
        "submission",
        owner_only(F, L),
        data={"shared_with_team": "true"},
    ),
    Case("batches/", "GET", None, signed_in(200)),
    Case("batches/new/", "GET", None, (L, 200, 200, 200, 403, 200, 200, L)),
    Case("batches/new/", "POST", None, (L, F, F, F, 403, F, F, L), data=SUBMIT_FORM),
    Case("batches/<int:batch_id>/", "GET", "batch", reading(200, L)),
    Case("batches/<int:batch_id>/cancel/", "POST", "batch", cancelling(F, L)),
    Case("batches/<int:batch_id>/rerun-failed/", "POST", "batch", owner_only(F, L)),
    Case("usage/", "GET", None, signed_in(200)),
    Case("profile/", "GET", None, signed_in(200)),
    Case("profile/webhook/", "POST", None, signed_in(F), data={"webhook_url": ""}),
    Case("profile/webhook/secret/", "POST", None, signed_in(200)),  # the secret, shown once
    Case("profile/tokens/", "POST", None, signed_in(F), data={"name": "matrix"}),  # on to the key, shown once
    Case(
        "profile/tokens/<int:token_id>/created/",
        "GET",
        "token",  # without the new key's cookie: on to the profile, saying the key was shown once
        {"owners": (L, F, 404, 404, 404, 404, 404, L), "missing": (L, 404, 404, 404, 404, 404, 404, L)},
    ),
    Case(
        "profile/tokens/<int:token_id>/revoke/",
        "POST",
        "token",
        {"owners": (L, F, 404, 404, 404, 404, 404, L), "missing": (L, 404, 404, 404, 404, 404, 404, L)},
    ),
    Case("ops/", "GET", None, (L, 403, 403, 403, 403, 200, 200, L)),
    # The Django admin: only its index here (its own URLs are Django's); non-admins go to its login.
    Case("admin/", "GET", None, (AL, AL, AL, AL, AL, 200, 200, AL)),
    # -- the JSON API (session and token authentication) ---------------------------------------
    Case(
        "api/v1/submissions/",
        "POST",
        None,
        (401, 201, 201, 201, 403, 201, 201, 401),
        data={"code": "print(1)"},
        api=True,
    ),
    Case("api/v1/runs/", "GET", None, signed_in(200, anon=401), api=True),
    Case("api/v1/runs/<int:run_id>/", "GET", "run", reading(200, 401), api=True),
    Case("api/v1/runs/<int:run_id>/cancel/", "POST", "run", cancelling(202, 401), data={}, api=True),
    Case("api/v1/runs/<int:run_id>/logs/", "GET", "run", reading(200, 401), api=True, query="?stream=stdout"),
    Case("api/v1/runs/<int:run_id>/metrics/", "GET", "run", reading(200, 401), api=True),
    Case(
        "api/v1/submissions/<int:submission_id>/",
        "PATCH",
        "submission",
        owner_only(200, 401),
        data={"shared_with_team": True},
        api=True,
    ),
    Case("api/v1/submissions/<int:submission_id>/runs/", "POST", "submission", owner_only(201, 401), data={}, api=True),
    Case(
        "api/v1/batches/",
        "POST",
        None,
        (401, 201, 201, 201, 403, 201, 201, 401),
        data={"code": "print(1)", "inputs": [{}, {}]},
        api=True,
    ),
    Case("api/v1/batches/", "GET", None, signed_in(200, anon=401), api=True),
    Case("api/v1/batches/<int:batch_id>/", "GET", "batch", reading(200, 401), api=True),
    Case("api/v1/batches/<int:batch_id>/cancel/", "POST", "batch", cancelling(202, 401), data={}, api=True),
    # 409: the batch has no failed run to run again (the owner got past every check to hear that)
    Case("api/v1/batches/<int:batch_id>/rerun-failed/", "POST", "batch", owner_only(409, 401), data={}, api=True),
    Case("api/v1/batches/<int:batch_id>/results/", "GET", "batch", reading(200, 401), api=True),
    Case("api/v1/batches/<int:batch_id>/results/csv/", "GET", "batch", reading(200, 401), api=True),
    Case("api/v1/webhook-secret/", "POST", None, signed_in(201, anon=401), data={}, api=True),
    Case("api/schema/", "GET", None, everyone(200)),  # the OpenAPI schema is no secret
    # -- monitoring: probes answer anyone; /metrics answers admins' tokens only (tests/evaluations/
    # monitoring), never a browser session, an admin's included.
    Case("healthz", "GET", None, everyone(200)),
    Case("readyz", "GET", None, everyone(503)),  # no worker has sent a heartbeat in this world
    Case("metrics", "GET", None, everyone(403)),
    Case("api/docs/", "GET", None, everyone(200)),
]

WS_MATRIX: list[Case] = [
    Case(r"^ws/runs/(?P<run_id>[0-9]{1,18})/$", "CONNECT", "run", reading(OPEN, 4401, hidden=4404)),
    Case(r"^ws/runs/$", "CONNECT", None, signed_in(OPEN, anon=4401)),
]

EXCLUDED_PREFIXES = ("admin/", "static/")
WS_CATCH_ALL = ""  # closes unknown paths with 4404 (tests/evaluations/test_following_runs_over_websockets.py)
# A JSON 404 for unknown API paths, whoever asks (tests/evaluations/api/test_api_answers_odd_requests_with_a_4xx.py)
API_CATCH_ALL = r"api/v1/^(?:[\s\S]*/)?$"


# -- the world ------------------------------------------------------------------------------------


@dataclass
class World:
    users: dict[str, Any]
    shared_run: Any
    private_run: Any
    owner_token_row: Any
    keys: dict[str, str]  # actor -> API token key
    batches: dict[str, Any]  # "shared"/"private": a batch of that run's submission

    def ids(self, kind: str | None, target: str) -> dict[str, Any]:
        if kind == "batch":
            batch = self.batches.get(target)
            return {"batch_id": batch.pk if batch else MISSING_ID}
        if kind in ("run", "submission"):
            run = {"shared": self.shared_run, "private": self.private_run}.get(target)
            if kind == "run":
                return {"run_id": run.pk if run else MISSING_ID, "path": "main.py"}
            return {"submission_id": run.submission_id if run else MISSING_ID}
        if kind == "token":
            return {"token_id": self.owner_token_row.pk if target == "owners" else MISSING_ID}
        if kind == "invite":
            return {"uidb64": "MQ", "token": "not-a-real-token"}
        return {}


@pytest.fixture
def world(make_user, make_run, make_token) -> World:
    from evaluations.accounts import services as account_services
    from evaluations.models import Batch, Role, Team
    from evaluations.runs import services

    lab, elsewhere = Team.objects.create(name="lab"), Team.objects.create(name="elsewhere")
    spec = {
        "owner": (Role.RESEARCHER, lab),
        "teammate": (Role.RESEARCHER, lab),
        "other": (Role.RESEARCHER, elsewhere),
        "reviewer": (Role.REVIEWER, None),
        "admin": (Role.ADMIN, None),
        "deactivated": (Role.ADMIN, lab),
    }
    users: dict[str, Any] = {}
    for name, (role, team) in spec.items():
        user = make_user(f"m-{name}")
        account_services.user_set_role(actor=None, user=user, role=role)
        account_services.user_set_team(actor=None, user=user, team=team)
        users[name] = user
    # As createsuperuser makes them: no profile row, no role but the flag.
    users["superuser"] = make_user("m-superuser", is_superuser=True, is_staff=True)
    keys = {name: make_token(user).key for name, user in users.items()}
    owner = users["owner"]
    shared_run = make_run(owner, name="shared", stdout=b"shared output\n")
    private_run = make_run(owner, name="private", stdout=b"private output\n")
    services.submission_set_shared(actor=owner, submission=shared_run.submission, shared=True)
    owner_token_row = make_token(owner, name="owner's").row
    # Deactivated after its API token was made: the token must stop working (and any session).
    account_services.user_deactivate(actor=users["admin"], user=users["deactivated"])
    batches = {
        target: Batch.objects.create(owner=owner, submission=run.submission, name=target, configs=[])
        for target, run in (("shared", shared_run), ("private", private_run))
    }
    return World(users, shared_run, private_run, owner_token_row, keys, batches)


def session_client(world: World, actor: str, **kwargs):
    from django.test import Client

    client = Client(**kwargs)
    if actor != "anonymous":
        client.force_login(world.users[actor])
    return client


def url_for(case: Case, world: World, target: str) -> str:
    ids = world.ids(case.kind, target)
    if case.route.startswith("^"):  # a websocket route's regex: fill in its named groups
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(ids[m.group(1)]), case.route).strip("^$")
    else:
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids[m.group(1)]), case.route)
    return "/" + path + case.query


def request(client, case: Case, url: str, *, json_body: bool, **extra):
    method = getattr(client, case.method.lower())
    if case.method in ("GET", "HEAD"):
        return method(url, **extra)
    if json_body:
        return method(url, data=case.data or {}, content_type="application/json", **extra)
    return method(url, data=case.data or {}, **extra)


def outcome_of(response) -> Any:
    if response.status_code == 302:
        location = response["Location"]
        if location.startswith("/admin/login/"):
            return ADMIN_LOGIN
        if location.startswith("/login/"):
            return LOGIN
        return FOUND
    return response.status_code


def matrix_params(cases: list[Case]):
    return [
        pytest.param(case, target, id=f"{case.method} /{case.route} [{target}]")
        for case in cases
        for target in case.outcomes()
    ]


def each_actor(world: World, case: Case, target: str, send) -> tuple[dict, dict]:
    """(got, expected) per actor. Each request runs in a savepoint that is rolled back, so every
    actor meets the same world (a cancel or a share by one does not change what the next sees)."""
    from django.db import transaction

    got, expected = {}, {}
    for actor, outcome in zip(ACTORS, case.outcomes()[target], strict=True):
        with transaction.atomic():
            result = send(actor, url_for(case, world, target))
            transaction.set_rollback(True)
        if result is not None:
            got[actor], expected[actor] = result, outcome
    return got, expected


# -- the route list is the URLconf's --------------------------------------------------------------


def urlconf_routes() -> set[str]:
    from django.urls import URLResolver, get_resolver

    routes: set[str] = set()

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if route.startswith(EXCLUDED_PREFIXES):
                continue
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            else:
                routes.add(route)

    walk(get_resolver().url_patterns, "")
    return routes - {API_CATCH_ALL}


def websocket_routes() -> set[str]:
    from evaluations.live.routing import websocket_urlpatterns

    return {str(p.pattern) for p in websocket_urlpatterns} - {WS_CATCH_ALL}


def test_every_route_has_a_row_in_the_matrix() -> None:
    in_matrix = {case.route for case in HTTP_MATRIX} - {"admin/"}
    missing = urlconf_routes() - in_matrix
    stale = in_matrix - urlconf_routes()
    assert not missing, f"routes without a row in HTTP_MATRIX (add who may use them): {sorted(missing)}"
    assert not stale, f"rows for routes the URLconf no longer has: {sorted(stale)}"


def test_every_websocket_route_has_a_row_in_the_matrix() -> None:
    assert websocket_routes() == {case.route for case in WS_MATRIX}


def test_every_row_names_every_actor_and_target() -> None:
    for case in [*HTTP_MATRIX, *WS_MATRIX]:
        for target, row in case.outcomes().items():
            assert len(row) == len(ACTORS), (case.route, target)
        if case.kind in ("run", "submission", "batch"):
            assert set(case.outcomes()) == {"shared", "private", "missing"}, case.route


# -- pages and API ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "target"), matrix_params(HTTP_MATRIX))
def test_the_matrix_with_sessions(world, case: Case, target: str) -> None:
    def send(actor: str, url: str):
        return outcome_of(request(session_client(world, actor), case, url, json_body=case.api))

    got, expected = each_actor(world, case, target, send)
    assert got == expected


@pytest.mark.parametrize(("case", "target"), matrix_params([case for case in HTTP_MATRIX if case.api]))
def test_the_api_matrix_with_tokens(world, case: Case, target: str) -> None:
    from rest_framework.test import APIClient

    def send(actor: str, url: str):
        if actor == "anonymous":
            return None  # no token to send: the session matrix has it
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {world.keys[actor]}")
        return outcome_of(request(api, case, url, json_body=True))

    got, expected = each_actor(world, case, target, send)
    assert got == expected


def test_another_users_run_is_indistinguishable_from_a_missing_one(world) -> None:
    client = session_client(world, "other")

    def body(path: str, run_id: int) -> bytes:
        response = client.get(path.format(run_id))
        assert response.status_code == 404
        # The page's CSRF token differs on every request; nothing else may.
        text = re.sub(rb'name="csrfmiddlewaretoken" value="[^"]*"', b"", response.content)
        return text.replace(str(run_id).encode(), b"<id>")

    for path in ("/runs/{}/", "/api/v1/runs/{}/", "/api/v1/runs/{}/logs/?stream=stdout"):
        assert body(path, world.private_run.pk) == body(path, MISSING_ID)


# -- websockets ------------------------------------------------------------------------------------


@pytest.fixture
def in_memory_channel_layer(settings):
    # Who may connect is decided before any group message flows: no Redis needed here.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


async def ws_outcome(world: World, case: Case, target: str, actor: str, auth: str = "session"):
    """auth="session": a browser (its cookie and an Origin); auth="token": a script, with
    `Authorization: Token <key>` and no Origin."""
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.conf import settings

    from crucible_site.asgi import application

    headers = []
    if auth == "token":
        if actor != "anonymous":
            headers.append((b"authorization", f"Token {world.keys[actor]}".encode()))
    else:
        headers.append((b"origin", b"http://testserver"))
        if actor != "anonymous":
            client = await database_sync_to_async(session_client)(world, actor)
            cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
            headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    comm = WebsocketCommunicator(application, url_for(case, world, target), headers=headers)
    try:
        accepted, code = await comm.connect(timeout=10)
        if not accepted:
            return code
        if case.kind != "run" and await comm.receive_nothing(timeout=0.3):
            return OPEN  # the list socket stays quiet until a run changes
        message = await comm.receive_output(timeout=10)  # a run socket speaks first (replay, status)
        return message["code"] if message["type"] == "websocket.close" else OPEN
    finally:
        await comm.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("auth", ["session", "token"])
@pytest.mark.parametrize(("case", "target"), matrix_params(WS_MATRIX))
async def test_the_websocket_matrix(world, in_memory_channel_layer, case: Case, target: str, auth: str) -> None:
    # With tokens, "anonymous" sends no Authorization header at all, and the deactivated user's
    # token is refused like no token: both 4401, the same row as with sessions.
    from channels.db import database_sync_to_async
    from django.db import connections

    try:
        got = {actor: await ws_outcome(world, case, target, actor, auth) for actor in ACTORS}
    finally:
        await database_sync_to_async(connections.close_all)()  # the DB thread's, or the test DB cannot be dropped
    assert got == dict(zip(ACTORS, case.outcomes()[target], strict=True))


# -- one rule, two forms ---------------------------------------------------------------------------


def test_the_visibility_queryset_and_has_perm_agree_for_every_role_and_run(make_user, make_run) -> None:
    from django.contrib.auth.models import AnonymousUser

    from evaluations.accounts import services as account_services
    from evaluations.accounts.permissions import allowed, visible_runs_q
    from evaluations.models import Role, Run, Team
    from evaluations.runs import services

    lab, other_lab = Team.objects.create(name="lab"), Team.objects.create(name="other lab")

    def member(name, role=Role.RESEARCHER, team=None, **fields):
        user = make_user(name, **fields)
        account_services.user_set_role(actor=None, user=user, role=role)
        account_services.user_set_team(actor=None, user=user, team=team)
        return user

    people = [
        member("lab-a", team=lab),
        member("lab-b", team=lab),
        member("elsewhere", team=other_lab),
        member("teamless"),
        member("reviewer", Role.REVIEWER),
        member("reviewer-in-lab", Role.REVIEWER, lab),
        member("admin", Role.ADMIN),
        member("inactive-admin", Role.ADMIN, lab, is_active=False),
        member("inactive-lab", team=lab, is_active=False),
        make_user("superuser", is_superuser=True, is_staff=True),  # no profile row at all
        make_user("no-profile"),
    ]
    for owner in people[:4] + people[-1:]:
        for shared in (False, True):
            run = make_run(owner, name=f"{owner.username}-{shared}")
            services.submission_set_shared(actor=owner, submission=run.submission, shared=shared)
    runs = list(Run.objects.select_related("submission", "submission__owner"))
    assert len(runs) == 10

    for user in [*people, AnonymousUser()]:
        fresh = type(user).objects.get(pk=user.pk) if user.pk else user  # no cached profile
        by_query = set(Run.objects.filter(visible_runs_q(fresh)).values_list("pk", flat=True))
        by_rule = {run.pk for run in runs if allowed(fresh, "evaluations.view_run", run)}
        assert by_query == by_rule, user


def test_the_run_lists_show_exactly_the_visible_runs(world) -> None:
    expected = {
        "owner": {"shared", "private"},
        "teammate": {"shared"},
        "other": set(),
        "reviewer": {"shared", "private"},
        "admin": {"shared", "private"},
        "superuser": {"shared", "private"},
    }
    for actor, names in expected.items():
        client = session_client(world, actor)
        api_names = {run["submission"]["name"] for run in client.get("/api/v1/runs/").json()["results"]}
        page = client.get("/runs/").content.decode()
        page_names = {name for name in ("shared", "private") if f">{name}</a>" in page}
        assert api_names == names, actor
        assert page_names == names, actor


def test_teammates_read_a_shared_run_without_its_buttons(world) -> None:
    owner_page = session_client(world, "owner").get(f"/runs/{world.shared_run.pk}/").content.decode()
    teammate_page = session_client(world, "teammate").get(f"/runs/{world.shared_run.pk}/").content.decode()

    for form in ('id="cancel-form"', 'id="rerun-form"', 'id="share-form"'):
        assert form in owner_page
        assert form not in teammate_page
    assert "m-owner" in teammate_page and "shared with the team" in teammate_page


@pytest.mark.parametrize("actor", ["admin", "superuser"])
def test_admins_and_superusers_see_cancel_but_not_the_owners_buttons(world, actor) -> None:
    page = session_client(world, actor).get(f"/runs/{world.shared_run.pk}/").content.decode()

    assert 'id="cancel-form"' in page
    assert 'id="rerun-form"' not in page and 'id="share-form"' not in page


def test_a_superuser_cannot_rerun_or_share_someone_elses_run_through_the_services_checks(world) -> None:
    from django.core.exceptions import PermissionDenied

    from evaluations.accounts.permissions import require

    root, run = world.users["superuser"], world.private_run
    assert root.has_perm("evaluations.rerun_run", run)  # what Django's backends would have said
    for perm in ("evaluations.rerun_run", "evaluations.share_submission"):
        with pytest.raises(PermissionDenied):
            require(root, perm, run)
    require(root, "evaluations.cancel_run", run)  # as the admin role may
    require(root, "evaluations.administer")


# -- CSRF: every form ------------------------------------------------------------------------------


def csrf_params():
    params = []
    for case in HTTP_MATRIX:
        if case.method in ("GET", "HEAD"):
            continue
        # As someone for whom the request would otherwise go through (or anyone, if nobody).
        target = next(iter(case.outcomes()))
        row = case.outcomes()[target]
        accepted = [a for a, o in zip(ACTORS, row, strict=True) if o not in (LOGIN, 401, 403, 404, 405)]
        actor = accepted[0] if accepted else "owner"
        params.append(pytest.param(case, target, actor, id=f"{case.method} /{case.route} as {actor}"))
    return params


@pytest.mark.parametrize(("case", "target", "actor"), csrf_params())
def test_every_form_refuses_a_post_without_its_csrf_token(world, case: Case, target: str, actor: str) -> None:
    client = session_client(world, actor, enforce_csrf_checks=True)
    response = request(client, case, url_for(case, world, target), json_body=case.api)

    assert response.status_code == 403
    assert b"CSRF" in response.content


@pytest.mark.parametrize(("case", "target", "actor"), csrf_params())
def test_the_same_post_with_its_csrf_token_is_not_refused(world, case: Case, target: str, actor: str) -> None:
    from django.conf import settings

    client = session_client(world, actor, enforce_csrf_checks=True)
    client.get("/login/")  # sets the CSRF cookie, as any page with a form does
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    response = request(client, case, url_for(case, world, target), json_body=case.api, HTTP_X_CSRFTOKEN=token)

    expected = case.outcomes()[target][ACTORS.index(actor)]
    assert outcome_of(response) == expected


def test_the_admins_forms_check_csrf_too(world) -> None:
    client = session_client(world, "admin", enforce_csrf_checks=True)
    user = world.users["other"]

    assert client.post("/admin/login/", {"username": "m-admin", "password": "x"}).status_code == 403
    change = client.post(f"/admin/auth/user/{user.pk}/change/", {"username": "renamed"})
    assert change.status_code == 403
    action = client.post(
        "/admin/evaluations/run/", {"action": "cancel_runs", "_selected_action": [world.shared_run.pk]}
    )
    assert action.status_code == 403
