"""Fixtures for the `crucible` command's tests: the end-to-end stack of tests/e2e (real daphne,
Celery worker and runsc), a user with a token, and `cli` to run the installed command against it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import e2e_user, stack, stack_env  # noqa: F401 - the e2e stack, one per module
from tests.support.stack import VENV_BIN

CRUCIBLE = str(VENV_BIN / "crucible")  # installed from client/ by requirements-test.txt


class Cli:
    """Runs `crucible` as a user would, in `home` (its HOME and working directory), with only the
    configuration given here."""

    def __init__(self, *, url: str | None, token: str | None, home: Path) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUCIBLE_", "PYTEST_"))}
        self.env.pop("NO_COLOR", None)
        self.env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})
        if url is not None:
            self.env["CRUCIBLE_URL"] = url
        if token is not None:
            self.env["CRUCIBLE_TOKEN"] = token

    def argv(self, *args: str) -> list[str]:
        return [CRUCIBLE, *args]

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [CRUCIBLE, *args], input=input, capture_output=True, text=True, env=self.env, timeout=timeout, cwd=self.home
        )

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(
            [CRUCIBLE, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.home,
            **kwargs,
        )


@pytest.fixture
def cli(stack, e2e_user, tmp_path) -> Cli:  # noqa: F811 - the fixtures imported above
    return Cli(url=stack.base_url, token=e2e_user.token, home=tmp_path)


@pytest.fixture
def program(tmp_path) -> Callable[[str], str]:
    """program(code) -> the path of a .py file holding it."""

    def _write(code: str, name: str = "prog.py") -> str:
        path = tmp_path / name
        path.write_text(code)
        return str(path)

    return _write
