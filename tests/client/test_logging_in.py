"""`crucible login URL`: the pasted token is checked against the server, then stored with the URL in
the user's config dir, readable by them only; later commands need no environment."""

from __future__ import annotations

import json
import stat

import pytest

from tests.client.conftest import Cli

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_login_stores_the_url_and_token_readable_by_the_user_only(stack, e2e_user, tmp_path):
    cli = Cli(url=None, token=None, home=tmp_path)

    done = cli("login", stack.base_url, input=e2e_user.token + "\n")
    listed = cli("list")

    assert done.returncode == 0, done.stderr
    path = tmp_path / ".config" / "crucible" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {"url": stack.base_url, "token": e2e_user.token}
    assert e2e_user.token not in done.stdout + done.stderr
    assert listed.returncode == 0, listed.stderr  # from the stored file: no CRUCIBLE_* in its environment


def test_login_with_a_refused_token_stores_nothing_and_exits_3(stack, tmp_path):
    cli = Cli(url=None, token=None, home=tmp_path)

    done = cli("login", stack.base_url, input="not-a-token\n")

    assert done.returncode == 3, done.stderr
    assert "crucible: " in done.stderr
    assert not (tmp_path / ".config" / "crucible" / "config.json").exists()


def test_without_a_configuration_it_says_how_to_make_one(tmp_path):
    done = Cli(url=None, token=None, home=tmp_path)("list")

    assert done.returncode == 3
    assert "crucible login URL" in done.stderr and "CRUCIBLE_TOKEN" in done.stderr
