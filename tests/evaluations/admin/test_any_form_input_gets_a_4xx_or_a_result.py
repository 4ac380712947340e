"""Admin forms (quotas, users, teams), fed any values by hypothesis through the admin's pages: the
form again (200) or a saved object (302), never a 500 or an exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evaluations.models import QuotaFields, Role
from tests.support.fuzz import FUZZ, form_fields_of, form_text

pytestmark = pytest.mark.django_db

PROFILE_INLINE = {
    "profile-TOTAL_FORMS": "1",
    "profile-INITIAL_FORMS": "0",
    "profile-MIN_NUM_FORMS": "1",
    "profile-MAX_NUM_FORMS": "1",
}


def assert_form_or_saved(response) -> None:
    assert response.status_code in (200, 302) or 400 <= response.status_code < 500, response.status_code


@FUZZ
@given(fields=form_fields_of(["user", *QuotaFields.QUOTA_NAMES]))
def test_a_quota_override(admin_client, fields) -> None:
    assert_form_or_saved(admin_client.post("/admin/evaluations/quotaoverride/add/", fields))


@FUZZ
@given(fields=form_fields_of(QuotaFields.QUOTA_NAMES))
def test_a_roles_quota_policy(admin_client, fields) -> None:
    from evaluations.models import QuotaPolicy

    policy = QuotaPolicy.objects.get(role=Role.RESEARCHER)

    assert_form_or_saved(admin_client.post(f"/admin/evaluations/quotapolicy/{policy.pk}/change/", fields))


@FUZZ
@given(
    fields=form_fields_of(["username", "email", "usable_password", "password1", "password2"]),
    profile=form_fields_of(["profile-0-role", "profile-0-team"]),
)
def test_adding_a_user(admin_client, fields, profile) -> None:
    assert_form_or_saved(admin_client.post("/admin/auth/user/add/", {**fields, **PROFILE_INLINE, **profile}))


@FUZZ
@given(fields=form_fields_of(["name"]), role=st.sampled_from(list(Role.values)) | form_text)
def test_a_team_and_a_users_role(admin_client, make_user, fields, role) -> None:
    user = make_user()
    change = {
        "username": user.username,
        "email": "x@example.invalid",
        "is_active": "on",
        "profile-TOTAL_FORMS": "1",
        "profile-INITIAL_FORMS": "0",
        "profile-0-role": role,
    }

    assert_form_or_saved(admin_client.post("/admin/evaluations/team/add/", fields))
    assert_form_or_saved(admin_client.post(f"/admin/auth/user/{user.pk}/change/", change))


@pytest.mark.parametrize("value", [":", "1.5", str(2**70), "10" * 20])
def test_a_quota_override_for_a_user_id_that_is_none_shows_the_form_again(admin_client, value) -> None:
    response = admin_client.post("/admin/evaluations/quotaoverride/add/", {"user": value})

    assert response.status_code == 200
    assert b"errornote" in response.content
