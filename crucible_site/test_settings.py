"""The test suite's settings: the real ones, with a var dir of the test session's own.

Output, sandbox state, the SQLite database and the secret key go to a fresh temporary directory,
so nothing a test stores can outlive it or meet another session's rows; the sandbox images stay in
the shared var dir (built once). Processes the tests start inherit the same directory.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_SESSION = "CRUCIBLE_TEST_SESSION_VAR_DIR"
if not os.environ.get(_SESSION):
    shared = Path(os.environ.get("CRUCIBLE_VAR_DIR") or Path(__file__).resolve().parent.parent / "var")
    os.environ.setdefault("CRUCIBLE_IMAGES_DIR", str(shared / "images"))
    os.environ[_SESSION] = tempfile.mkdtemp(prefix="crucible-test-var-")
    atexit.register(shutil.rmtree, os.environ[_SESSION], ignore_errors=True)
os.environ["CRUCIBLE_VAR_DIR"] = os.environ[_SESSION]
for name in ("CRUCIBLE_LOGS_DIR", "CRUCIBLE_SANDBOX_STATE_DIR"):
    os.environ.pop(name, None)  # both follow the var dir

from crucible_site.settings import *  # noqa: E402, F403
