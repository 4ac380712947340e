"""manage.py crucible_demo (demo users on a new database) and createsuperuser --noinput."""

from __future__ import annotations

import io
import re
import stat

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from evaluations.accounts.tokens import key_hash
from evaluations.models import ApiToken

User = get_user_model()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    # The commands hash real passwords; a cheap hasher keeps each test well under a second.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def demo(*args: str) -> str:
    out = io.StringIO()
    call_command("crucible_demo", *args, stdout=out)
    return out.getvalue()


def logins(text: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+(admin|researcher)\s+/ (\S+)$", text, re.M))


def test_an_empty_database_gets_an_admin_and_a_researcher_with_a_token(db) -> None:
    text = demo()

    admin, researcher = User.objects.get(username="admin"), User.objects.get(username="researcher")
    assert admin.is_superuser and admin.is_staff
    assert not researcher.is_staff and not researcher.is_superuser
    key = re.search(r"researcher API token: (\S+)$", text, re.M).group(1)
    token = ApiToken.objects.get(user=researcher)
    assert token.key_hash == key_hash(key) and token.revoked_at is None
    assert key not in str(list(ApiToken.objects.values()))  # only its hash is stored
    passwords = logins(text)
    assert authenticate(username="admin", password=passwords["admin"]) == admin
    assert authenticate(username="researcher", password=passwords["researcher"]) == researcher


def test_the_printed_token_works_against_the_api(db) -> None:
    from rest_framework.test import APIClient

    key = re.search(r"API token: (\S+)", demo()).group(1)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    assert api.get("/api/v1/runs/").status_code == 200


def test_a_second_call_does_nothing(db) -> None:
    demo()
    users_before = sorted(User.objects.values_list("username", "password"))
    tokens_before = sorted(ApiToken.objects.values_list("key_hash", flat=True))

    assert demo() == ""

    assert sorted(User.objects.values_list("username", "password")) == users_before
    assert sorted(ApiToken.objects.values_list("key_hash", flat=True)) == tokens_before


def test_a_database_with_any_user_is_left_alone(make_user) -> None:
    make_user("existing")

    assert demo() == ""

    assert list(User.objects.values_list("username", flat=True)) == ["existing"]
    assert not ApiToken.objects.exists()


def test_the_logins_can_go_to_a_private_file_instead(db, tmp_path) -> None:
    path = tmp_path / "logins.txt"

    assert demo("--logins-file", str(path)) == ""

    assert "researcher API token:" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_logins_file_is_private_even_when_it_already_existed(db, tmp_path) -> None:
    path = tmp_path / "logins.txt"
    path.write_text("old\n")
    path.chmod(0o644)

    demo("--logins-file", str(path))

    assert "researcher API token:" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_createsuperuser_noinput_takes_its_values_from_the_environment(db, monkeypatch) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "root")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "root@example.invalid")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long enough password 42")

    call_command("createsuperuser", "--noinput", stdout=io.StringIO())

    root = User.objects.get(username="root")
    assert root.is_superuser and root.is_staff and root.email == "root@example.invalid"
    assert authenticate(username="root", password="a long enough password 42") == root
