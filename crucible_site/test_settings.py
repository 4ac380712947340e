"""The test suite's settings: the real ones, with a var dir of the test session's own.

Sandbox state, the SQLite database and the secret key go to a fresh temporary directory,
so nothing a test stores can outlive it or meet another session's rows; the sandbox images stay in
the shared var dir (built once). Processes the tests start inherit the same directory.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Under pytest-xdist each worker (gw0, gw1, ...) has a var dir and a Redis database of its own: the
# tests flush their Redis database and start workers that would take each other's tasks.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_SESSION = "CRUCIBLE_TEST_SESSION_VAR_DIR" + (f"_{_WORKER.upper()}" if _WORKER else "")
if _WORKER and not os.environ.get(_SESSION):
    _base, _, _db = os.environ.get("CRUCIBLE_REDIS_URL", "redis://127.0.0.1:6379/14").rpartition("/")
    os.environ["CRUCIBLE_REDIS_URL"] = f"{_base}/{int(_db) - int(_WORKER.removeprefix('gw'))}"
if not os.environ.get(_SESSION):
    shared = Path(os.environ.get("CRUCIBLE_VAR_DIR") or Path(__file__).resolve().parent.parent / "var")
    os.environ.setdefault("CRUCIBLE_IMAGES_DIR", str(shared / "images"))
    os.environ[_SESSION] = tempfile.mkdtemp(prefix="crucible-test-var-")
    atexit.register(shutil.rmtree, os.environ[_SESSION], ignore_errors=True)
os.environ["CRUCIBLE_VAR_DIR"] = os.environ[_SESSION]
os.environ.pop("CRUCIBLE_SANDBOX_STATE_DIR", None)  # follows the var dir

from django.conf import global_settings  # noqa: E402

from crucible_site.settings import *  # noqa: E402, F403

# Django's test client (and the tests' websocket handshakes) speak as http://testserver.
CRUCIBLE_ALLOWED_ORIGINS = [*CRUCIBLE_ALLOWED_ORIGINS, "http://testserver"]  # noqa: F405

# Logins check a password hash ~0.2 s each at the real cost; see tests/support/hashers.py.
PASSWORD_HASHERS = ["tests.support.hashers.QuickPBKDF2PasswordHasher", *global_settings.PASSWORD_HASHERS]
