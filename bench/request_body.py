"""How much of an oversized request body does the web server take in before it refuses it?

Posts BYTES (default 2 GiB, from /dev/zero) to /login/ with curl, once with a Content-Length and once
chunked, against the web started as tests/support/stack.py starts it, and samples the web process's
temporary files (/proc/<pid>/fd) meanwhile. Prints a table; writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.stack import Stack  # noqa: E402


def _temp_bytes(pid: int) -> int:
    """Bytes in the regular files the process holds open that are deleted (twisted's spooled bodies)."""
    total = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).endswith("(deleted)"):
                total += fd.stat().st_size
        except OSError:
            continue
    return total


def _post(url: str, size: int, chunked: bool, workdir: Path) -> dict[str, object]:
    curl = "curl -s -o /dev/null -X POST -w '%{http_code} %{size_upload}'"
    if chunked:
        cmd = f"head -c {size} /dev/zero | {curl} -T - {url}"
    else:
        sparse = workdir / "body"
        sparse.touch()
        os.truncate(sparse, size)  # a sparse file: read as zeros, takes no disk here
        # --request-target: with -T, curl would otherwise append the file's name to the URL's path.
        target = "/" + url.split("/", 3)[3]
        cmd = f"{curl} -T {sparse} --request-target {target} {url}"
    started = time.monotonic()
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=3600)
    code, _, uploaded = proc.stdout.strip().partition(" ")
    return {"seconds": time.monotonic() - started, "status": code, "uploaded": int(float(uploaded or 0))}


def _peak_temp_bytes(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], _temp_bytes(pid))
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=2 * 1024**3)
    parser.add_argument("--redis-url", default=os.environ.get("CRUCIBLE_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="crucible-bench-body-") as tmp:
        work = Path(tmp)
        env = {"CRUCIBLE_VAR_DIR": str(work / "var"), "CRUCIBLE_REDIS_URL": args.redis_url}
        migrate_env = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "crucible_site.settings"}
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=migrate_env, check=True)
        with Stack(env, log_dir=work / "logs", workers=0) as stack:
            assert stack.web is not None
            for chunked in (False, True):
                peak, stop = [0], threading.Event()
                sampler = threading.Thread(target=_peak_temp_bytes, args=(stack.web.pid, stop, peak))
                sampler.start()
                result = _post(stack.url("/login/"), args.bytes, chunked, work)
                time.sleep(0.5)
                stop.set()
                sampler.join()
                rows.append({"body": "chunked" if chunked else "Content-Length", **result, "peak_temp_bytes": peak[0]})
    print(f"{'body':<16}{'status':>8}{'seconds':>10}{'curl sent MiB':>15}{'peak temp MiB':>15}")
    for r in rows:
        sent, temp = r["uploaded"] / 2**20, r["peak_temp_bytes"] / 2**20
        print(f"{r['body']:<16}{r['status']:>8}{r['seconds']:>10.1f}{sent:>15.1f}{temp:>15.1f}")
    if args.json:
        args.json.write_text(json.dumps({"bytes": args.bytes, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
