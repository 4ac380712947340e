"""Integration tests of the runsc engine: real gVisor sandboxes, real cgroups, no mocks."""

from __future__ import annotations

import fcntl
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import cgroups
from sandbox.contract import ExecRequest, ExecResult, Limits, MiB, Reason, Status, Stream
from sandbox.engine import EngineConfig, ExecutionEngine, MetricSample, get_engine
from sandbox.errors import EngineUnavailable, ImageError
from sandbox.runsc import RUN_PREFIX, RunscEngine

Run = Callable[..., ExecResult]

pytestmark = pytest.mark.timeout(60)

# A small memory limit; /tmp (a tmpfs held in that memory) must stay below it.
SMALL_MEMORY = dict(memory_bytes=128 * MiB, tmp_bytes=16 * MiB)


def make_request(code: str, **limits: Any) -> ExecRequest:
    return ExecRequest(files={"main.py": code.encode()}, limits=Limits(**limits))


# -- nothing may be left behind ---------------------------------------------------------------------


def runsc_processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "runsc" in cmdline and text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def run_cgroup_dirs(parent: str) -> list[str]:
    """Every run cgroup under `parent`, in every controller (leftover_names only reads one)."""
    if cgroups.layout() == "v2":
        bases = [cgroups.CGROUP_ROOT / parent]
    else:
        bases = [cgroups.CGROUP_ROOT / c / parent for c in cgroups.V1_CONTROLLERS]
    return sorted(str(d) for base in bases if base.is_dir() for d in base.iterdir() if d.is_dir())


def leftovers(engine: ExecutionEngine) -> dict[str, list[str]]:
    state_dir = engine.config.state_dir
    found = {
        "work dirs": sorted(p.name for p in state_dir.iterdir() if p.name.startswith(RUN_PREFIX))
        if state_dir.is_dir()
        else [],
        "cgroups": cgroups.leftover_names(engine.config.cgroup_parent),
        "cgroup dirs": run_cgroup_dirs(engine.config.cgroup_parent),
        "runsc processes": runsc_processes_mentioning(str(state_dir)),
    }
    return {k: v for k, v in found.items() if v}


@pytest.fixture(autouse=True)
def nothing_left_behind(engine: ExecutionEngine) -> Iterator[None]:
    assert leftovers(engine) == {}, "left behind by an earlier test"
    yield
    # runsc processes may take a moment to be reaped after the cgroup is emptied.
    deadline = time.monotonic() + 2
    while leftovers(engine) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(engine) == {}


# -- running ----------------------------------------------------------------------------------------


def test_it_runs_hello_world(run: Run) -> None:
    result = run("print('hello')")
    assert result.stdout.data == b"hello\n"
    assert result.status is Status.SUCCEEDED
    assert result.reason is None
    assert result.exit_code == 0
    assert result.signal is None
    assert result.engine == "runsc"
    assert result.image_digest.startswith("sha256:")
    assert result.runtime_version.startswith("runsc")
    assert result.stderr.data == b""
    assert result.stdout.truncated is False
    assert result.stdout.bytes_written == 6
    assert result.timings.run_seconds > 0
    assert result.timings.teardown_seconds >= 0
    assert result.detail == ""


def test_the_result_carries_the_images_digest(run: Run, image) -> None:
    assert run("pass").image_digest == image.digest


def test_it_reports_a_non_zero_exit(run: Run) -> None:
    result = run("raise SystemExit(3)")
    assert result.status is Status.FAILED
    assert result.reason is Reason.EXIT_CODE
    assert result.exit_code == 3
    assert "3" in result.detail


def test_it_reports_an_uncaught_exception_as_exit_code_1_with_the_traceback(run: Run) -> None:
    result = run("raise ValueError('boom')")
    assert (result.status, result.reason, result.exit_code) == (Status.FAILED, Reason.EXIT_CODE, 1)
    assert b"ValueError: boom" in result.stderr.data
    assert b'File "/code/main.py"' in result.stderr.data


def test_it_delivers_stdin_and_argv(run: Run) -> None:
    code = "import sys; data = sys.stdin.buffer.read(); print(repr(sys.argv[1:])); sys.stdout.buffer.write(data)"
    stdin = b"line one\nline two\x00\xff"
    result = run(code, stdin=stdin, argv=("a", "b c", "--flag=x"))
    assert result.status is Status.SUCCEEDED, result
    assert result.stdout.data == b"['a', 'b c', '--flag=x']\n" + stdin


def test_it_delivers_an_empty_stdin_as_eof(run: Run) -> None:
    result = run("import sys; print(repr(sys.stdin.read()))")
    assert result.stdout.data == b"''\n"


def test_it_runs_a_multi_file_program_from_code(engine: ExecutionEngine) -> None:
    request = ExecRequest(
        files={
            "main.py": b"import os, helper\nfrom pkg.sub import mod\nprint(helper.X, mod.Y, os.getcwd())",
            "helper.py": b"X = 1",
            "pkg/__init__.py": b"",
            "pkg/sub/__init__.py": b"",
            "pkg/sub/mod.py": b"Y = 2",
        }
    )
    result = engine.execute(request)
    assert result.stdout.data == b"1 2 /code\n", result.stderr.data


def test_it_passes_the_requests_environment(run: Run) -> None:
    result = run("import os; print(os.environ['GREETING'])", env={"GREETING": "hi there"})
    assert result.stdout.data == b"hi there\n"


def test_it_runs_user_code_as_nobody(run: Run) -> None:
    result = run("import os; print(os.getuid(), os.geteuid(), os.getgid())")
    assert result.stdout.data == b"65534 65534 65534\n"


# -- limits -----------------------------------------------------------------------------------------


def test_it_times_out_an_infinite_loop(run: Run) -> None:
    started = time.monotonic()
    result = run("while True: pass", wall_seconds=2)
    took = time.monotonic() - started
    assert result.status is Status.FAILED
    assert result.reason is Reason.TIMEOUT
    assert result.exit_code is None
    assert took < 4, f"execute() took {took:.2f}s for a 2s wall limit"
    assert took >= 2


def test_it_times_out_a_sleeping_program(run: Run) -> None:
    started = time.monotonic()
    result = run("import time; time.sleep(30)", wall_seconds=1)
    assert (result.status, result.reason) == (Status.FAILED, Reason.TIMEOUT)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    "code",
    [
        "bytearray(1024**3)",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(1024 * 1024))",
    ],
    ids=["one-gib-bytearray", "list-append-loop"],
)
def test_it_stops_a_program_that_exceeds_its_memory_limit(run: Run, code: str) -> None:
    result = run(code, wall_seconds=20, **SMALL_MEMORY)
    assert result.status is Status.FAILED, result
    assert result.reason is Reason.MEMORY_LIMIT, result
    assert "memory" in result.detail


def test_a_program_within_its_memory_limit_succeeds(run: Run) -> None:
    result = run("b = bytearray(32 * 1024 * 1024); print(len(b))", **SMALL_MEMORY)
    assert result.status is Status.SUCCEEDED, result
    assert result.stdout.data == b"33554432\n"
    assert result.usage.peak_memory_bytes and result.usage.peak_memory_bytes > 32 * MiB


def test_it_limits_the_number_of_processes(run: Run) -> None:
    code = """
import os, time
n = 0
try:
    for _ in range(20):
        if os.fork() == 0:
            time.sleep(2)
            os._exit(0)
        n += 1
except OSError as e:
    print('refused', e.errno)
print('forked', n)
"""
    result = run(code, processes=4)
    assert b"refused" in result.stdout.data, result
    forked = int(result.stdout.data.split(b"forked ")[1])
    assert forked < 4


def test_a_background_process_does_not_outlive_the_run(run: Run) -> None:
    code = """
import os, time
if os.fork() == 0:
    time.sleep(30)
    os._exit(0)
print('parent done')
"""
    started = time.monotonic()
    result = run(code)
    assert result.status is Status.SUCCEEDED
    assert result.stdout.data == b"parent done\n"
    assert time.monotonic() - started < 5


# -- isolation --------------------------------------------------------------------------------------


def test_it_has_no_network(run: Run) -> None:
    # A real listener on the host's loopback: the sandbox's 127.0.0.1 must not be the host's.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    code = f"""
import socket
for host, port in [("1.1.1.1", 80), ("10.0.0.1", 80), ("127.0.0.1", {port})]:
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((host, port))
        print("CONNECTED", host, port)
    except OSError as e:
        print("failed", host, port, type(e).__name__)
    finally:
        s.close()
"""
    try:
        result = run(code)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert result.status is Status.SUCCEEDED, result
    out = result.stdout.data.decode()
    assert "CONNECTED" not in out
    assert out.count("failed") == 3, out


def test_it_cannot_resolve_names(run: Run) -> None:
    code = """
import socket
try:
    print(socket.getaddrinfo("deb.debian.org", 80))
except OSError as e:
    print("failed", type(e).__name__)
"""
    assert run(code).stdout.data.startswith(b"failed")


def test_it_cannot_read_the_hosts_shadow_file(run: Run) -> None:
    code = """
try:
    with open('/etc/shadow') as f:
        print('READ'); print(f.read())
except PermissionError:
    print('PermissionError')
"""
    result = run(code)
    assert result.status is Status.SUCCEEDED, result
    out = result.stdout.data.decode()
    host_lines = [line for line in Path("/etc/shadow").read_text().splitlines() if line.strip()]
    assert host_lines, "the test needs the host's /etc/shadow"
    if out != "PermissionError\n":
        leaked = [line for line in host_lines if line in out]
        assert leaked == []


def test_it_sees_its_own_root_filesystem_not_the_hosts(run: Run, image) -> None:
    marker = f"crucible-host-marker-{secrets.token_hex(4)}"
    host_file = Path("/tmp") / marker
    host_file.write_text("host")
    try:
        code = f"import os; print(os.path.exists('/tmp/{marker}'), os.path.exists('{Path.cwd()}'))"
        result = run(code)
    finally:
        host_file.unlink()
    assert result.stdout.data == b"False False\n"


def test_it_does_not_leak_the_workers_environment(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"s3cr3t-{secrets.token_hex(8)}"
    monkeypatch.setenv("CRUCIBLE_TEST_SECRET", secret)
    code = """
import os
print(sorted(os.environ.items()))
for path in ('/proc/self/environ', '/proc/1/environ'):
    try:
        print(path, open(path, 'rb').read())
    except OSError as e:
        print(path, 'unreadable', e)
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            print(pid, open(f'/proc/{pid}/environ', 'rb').read())
        except OSError:
            pass
"""
    result = run(code)
    assert result.status is Status.SUCCEEDED, result
    assert b"PYTHONUNBUFFERED" in result.stdout.data  # the script did print the environment
    assert b"/proc/1/environ b'" in result.stdout.data
    assert secret.encode() not in result.stdout.data
    assert b"CRUCIBLE_TEST_SECRET" not in result.stdout.data
    assert secret.encode() not in result.stderr.data


def test_the_root_filesystem_is_read_only(run: Run) -> None:
    code = """
import errno
for path in ('/x', '/var/tmp/x', '/code/x'):
    try:
        open(path, 'w').write('x')
        print('WROTE', path)
    except OSError as e:
        print('refused', path, errno.errorcode[e.errno])
"""
    result = run(code)
    out = result.stdout.data.decode()
    assert "WROTE" not in out, out
    # /var/tmp is world-writable in the image: only a read-only mount refuses nobody there.
    assert "refused /var/tmp/x EROFS" in out
    assert out.count("refused") == 3


def test_tmp_is_writable(run: Run) -> None:
    code = "open('/tmp/a', 'w').write('hi'); import os; print(open('/tmp/a').read(), os.environ['HOME'])"
    result = run(code)
    assert result.status is Status.SUCCEEDED, result
    assert result.stdout.data == b"hi /tmp\n"


def test_tmp_is_limited_to_tmp_bytes(run: Run) -> None:
    code = """
import errno
written = 0
try:
    with open('/tmp/fill', 'wb') as f:
        while written < 64 * 1024 * 1024:
            f.write(b'x' * 65536)
            written += 65536
            f.flush()
except OSError as e:
    print('refused', errno.errorcode[e.errno], written)
else:
    print('wrote', written)
"""
    result = run(code, memory_bytes=128 * MiB, tmp_bytes=8 * MiB, file_size_bytes=1024 * MiB)
    out = result.stdout.data.decode()
    assert out.startswith("refused ENOSPC"), (out, result)
    assert int(out.split()[-1]) <= 8 * MiB


def test_tmp_does_not_persist_between_runs(run: Run) -> None:
    marker = secrets.token_hex(4)
    run(f"open('/tmp/{marker}', 'w').write('x')")
    result = run(f"import os; print(os.path.exists('/tmp/{marker}'))")
    assert result.stdout.data == b"False\n"


# -- output -----------------------------------------------------------------------------------------


class Chunks:
    def __init__(self) -> None:
        self.calls: list[tuple[Stream, int, bytes]] = []
        self.lock = threading.Lock()

    def __call__(self, stream: Stream, offset: int, chunk: bytes) -> None:
        with self.lock:
            self.calls.append((stream, offset, chunk))

    def data(self, stream: Stream) -> bytes:
        return b"".join(c for s, _, c in self.calls if s is stream)

    def assert_contiguous(self, stream: Stream) -> None:
        expected = 0
        for s, offset, chunk in self.calls:
            if s is not stream:
                continue
            assert offset == expected, f"{stream.value} chunk at {offset}, expected {expected}"
            assert chunk, "empty chunk"
            expected += len(chunk)


def test_it_stops_a_program_that_prints_too_much(run: Run) -> None:
    chunks = Chunks()
    code = "line = 'y' * 999\nfor _ in range(50_000):\n    print(line)"  # 50 MB in 1000-byte lines
    started = time.monotonic()
    result = run(code, stdout_bytes=1 * MiB, on_output=chunks)
    assert time.monotonic() - started < 10
    assert result.status is Status.FAILED
    assert result.reason is Reason.OUTPUT_LIMIT
    assert len(result.stdout.data) == 1 * MiB
    assert result.stdout.truncated is True
    assert result.stdout.bytes_written > 1 * MiB
    assert result.stdout.data == (b"y" * 999 + b"\n") * (MiB // 1000) + (b"y" * 999 + b"\n")[: MiB % 1000]
    assert chunks.data(Stream.STDOUT) == result.stdout.data
    chunks.assert_contiguous(Stream.STDOUT)
    assert chunks.calls[0][1] == 0
    assert "stdout" in result.detail


def test_it_caps_stderr_separately(run: Run) -> None:
    chunks = Chunks()
    code = "import sys\nprint('out')\nline = 'e' * 99\nfor _ in range(100_000):\n    print(line, file=sys.stderr)"
    result = run(code, stderr_bytes=64 * 1024, on_output=chunks)
    assert (result.status, result.reason) == (Status.FAILED, Reason.OUTPUT_LIMIT)
    assert len(result.stderr.data) == 64 * 1024
    assert result.stderr.truncated is True
    assert result.stdout.data == b"out\n"
    assert result.stdout.truncated is False
    assert chunks.data(Stream.STDERR) == result.stderr.data
    assert chunks.data(Stream.STDOUT) == b"out\n"
    chunks.assert_contiguous(Stream.STDERR)
    chunks.assert_contiguous(Stream.STDOUT)
    assert "stderr" in result.detail and "stdout" not in result.detail


def test_it_caps_a_giant_line_written_in_full_by_the_program(run: Run) -> None:
    # A program that handles short writes itself (as C's stdio does) gets the cap exactly.
    code = """
import os
data = memoryview(b'x' * 20_000_000)
done = 0
while done < len(data):
    done += os.write(1, data[done:])
"""
    chunks = Chunks()
    result = run(code, stdout_bytes=1 * MiB, on_output=chunks)
    assert (result.status, result.reason) == (Status.FAILED, Reason.OUTPUT_LIMIT)
    assert result.stdout.data == b"x" * MiB
    assert result.stdout.truncated is True
    assert chunks.data(Stream.STDOUT) == result.stdout.data
    chunks.assert_contiguous(Stream.STDOUT)


# gVisor pipes take at most 64 KiB per write(); sandbox/guest/sitecustomize.py loops so nothing is lost.
def test_it_caps_a_giant_line_without_newline(run: Run) -> None:
    result = run("import sys; sys.stdout.write('x' * 20_000_000)", stdout_bytes=1 * MiB)
    assert (result.status, result.reason) == (Status.FAILED, Reason.OUTPUT_LIMIT)
    assert result.stdout.data == b"x" * MiB
    assert result.stdout.truncated is True


def test_it_delivers_a_single_large_print_whole(run: Run) -> None:
    result = run("print('z' * 200_000)")
    assert result.status is Status.SUCCEEDED
    assert result.stdout.data == b"z" * 200_000 + b"\n"


def test_it_preserves_nul_bytes_and_invalid_utf8(run: Run) -> None:
    chunks = Chunks()
    result = run(
        "import sys; sys.stdout.buffer.write(b'a\\x00b\\xff\\xfe'); sys.stderr.buffer.write(b'\\x00\\xc3')",
        on_output=chunks,
    )
    assert result.status is Status.SUCCEEDED
    assert result.stdout.data == b"a\x00b\xff\xfe"
    assert result.stderr.data == b"\x00\xc3"
    assert chunks.data(Stream.STDOUT) == b"a\x00b\xff\xfe"


def test_a_program_without_output_yields_empty_bytes(run: Run) -> None:
    chunks = Chunks()
    result = run("x = 1", on_output=chunks)
    assert result.status is Status.SUCCEEDED
    assert result.stdout.data == b""
    assert result.stderr.data == b""
    assert result.stdout.bytes_written == 0
    assert result.stdout.truncated is False
    assert chunks.calls == []


def test_it_captures_stderr_separately(run: Run) -> None:
    chunks = Chunks()
    code = "import sys\nprint('to out')\nprint('to err', file=sys.stderr)\nprint('out again')"
    result = run(code, on_output=chunks)
    assert result.stdout.data == b"to out\nout again\n"
    assert result.stderr.data == b"to err\n"
    assert chunks.data(Stream.STDOUT) == result.stdout.data
    assert chunks.data(Stream.STDERR) == result.stderr.data


def test_it_streams_output_while_the_program_runs(run: Run) -> None:
    seen_at: list[float] = []
    started = time.monotonic()

    def on_output(stream: Stream, offset: int, chunk: bytes) -> None:
        seen_at.append(time.monotonic() - started)

    result = run("import time\nprint('early')\ntime.sleep(1.5)\nprint('late')", on_output=on_output)
    assert result.stdout.data == b"early\nlate\n"
    assert seen_at and seen_at[0] < 1.4, seen_at


# -- cancellation and metrics -----------------------------------------------------------------------


def test_it_cancels_a_running_program(run: Run) -> None:
    cancel = threading.Event()
    set_at: list[float] = []

    def fire() -> None:
        time.sleep(1)
        set_at.append(time.monotonic())
        cancel.set()

    thread = threading.Thread(target=fire)
    thread.start()
    result = run("import time; time.sleep(60)", cancel=cancel)
    returned_at = time.monotonic()
    thread.join()
    assert result.status is Status.CANCELLED
    assert result.reason is Reason.CANCELLED
    assert returned_at - set_at[0] < 1.5, f"returned {returned_at - set_at[0]:.2f}s after the cancel"


def test_a_run_cancelled_before_it_starts_ends_cancelled(run: Run) -> None:
    cancel = threading.Event()
    cancel.set()
    started = time.monotonic()
    result = run("import time; time.sleep(60)", cancel=cancel)
    assert (result.status, result.reason) == (Status.CANCELLED, Reason.CANCELLED)
    # Slower than cancelling a booted run: `runsc delete --force` of a half-created sandbox
    # takes ~1.4 s here.
    assert time.monotonic() - started < 4


def test_it_reports_metrics_while_running(run: Run) -> None:
    samples: list[MetricSample] = []
    result = run("import time; time.sleep(2)", on_metrics=samples.append)
    assert result.status is Status.SUCCEEDED
    assert len(samples) >= 1
    assert any(s.memory_bytes is not None and s.memory_bytes > 0 for s in samples), samples
    elapsed = [s.elapsed_seconds for s in samples]
    assert elapsed == sorted(elapsed)
    assert result.usage.cpu_seconds is not None and result.usage.cpu_seconds > 0


def test_a_callback_error_still_cleans_up(run: Run) -> None:
    def explode(stream: Stream, offset: int, chunk: bytes) -> None:
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        run("import time\nprint('x')\ntime.sleep(30)", on_output=explode)
    # nothing_left_behind checks the rest


def test_runs_can_execute_concurrently(engine: ExecutionEngine) -> None:
    results: dict[int, ExecResult] = {}

    def go(i: int) -> None:
        results[i] = engine.execute(make_request(f"import time; time.sleep(0.5); print({i})"))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {i: r.stdout.data for i, r in results.items()} == {i: f"{i}\n".encode() for i in range(3)}


# -- sweep ------------------------------------------------------------------------------------------


def fake_leftover(engine: ExecutionEngine, name: str) -> tuple[Path, cgroups.RunCgroup, subprocess.Popen]:
    """A dead worker's run: its work dir (lock free), its cgroup, and a process still inside it."""
    workdir = engine.config.state_dir / name
    (workdir / "code").mkdir(parents=True)
    (workdir / "code" / "main.py").write_text("print(1)")
    (workdir / "lock").write_text("")
    cgroup = cgroups.RunCgroup(engine.config.cgroup_parent, name)
    cgroup.create(memory_bytes=64 * MiB, cpu_cores=1)
    proc = subprocess.Popen(
        ["/bin/sh", "-c", 'for f in $PROCS; do echo $$ > "$f"; done; exec sleep 60'],
        env={"PATH": "/usr/bin:/bin", "PROCS": " ".join(cgroup.procs_files)},
    )
    deadline = time.monotonic() + 5
    while proc.pid not in cgroup.pids_inside():
        assert time.monotonic() < deadline, "the straggler never joined the cgroup"
        time.sleep(0.02)
    return workdir, cgroup, proc


def test_sweep_removes_a_dead_workers_leftovers(engine: ExecutionEngine) -> None:
    name = "crucible-deadbeef00000000"
    workdir, cgroup, proc = fake_leftover(engine, name)
    try:
        assert name in cgroups.leftover_names(engine.config.cgroup_parent)
        engine.sweep()
        assert not workdir.exists()
        assert name not in cgroups.leftover_names(engine.config.cgroup_parent)
        assert all(not d.exists() for d in cgroup.dirs.values())
        assert proc.wait(timeout=5) == -9
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cgroup.kill_all()
        cgroup.remove()


def test_sweep_removes_a_cgroup_without_a_work_dir(engine: ExecutionEngine) -> None:
    name = "crucible-deadbeef00000001"
    cgroup = cgroups.RunCgroup(engine.config.cgroup_parent, name)
    cgroup.create(memory_bytes=64 * MiB, cpu_cores=1)
    try:
        engine.sweep()
        assert all(not d.exists() for d in cgroup.dirs.values())
    finally:
        cgroup.remove()


def test_sweep_spares_a_run_whose_lock_is_held(engine: ExecutionEngine) -> None:
    name = "crucible-deadbeef00000002"
    workdir, cgroup, proc = fake_leftover(engine, name)
    lock = open(workdir / "lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        engine.sweep()
        assert workdir.exists()
        assert name in cgroups.leftover_names(engine.config.cgroup_parent)
        assert proc.poll() is None
    finally:
        lock.close()
        engine.sweep()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        cgroup.remove()
    assert not workdir.exists()


def test_sweep_leaves_other_files_in_the_state_dir_alone(engine: ExecutionEngine) -> None:
    other = engine.config.state_dir / "not-a-run"
    other.mkdir()
    try:
        engine.sweep()
        assert other.exists()
    finally:
        other.rmdir()


@pytest.mark.parametrize("sweeper", ["same engine", "engine with another state dir"])
def test_sweep_spares_a_live_run(engine: ExecutionEngine, tmp_path: Path, sweeper: str) -> None:
    other_config = EngineConfig(
        images_dir=engine.config.images_dir,
        state_dir=tmp_path / "other-state",
        cgroup_parent=engine.config.cgroup_parent,
    )
    sweeping = engine if sweeper == "same engine" else get_engine("runsc", other_config)
    out: dict[str, ExecResult] = {}
    thread = threading.Thread(
        target=lambda: out.setdefault("r", engine.execute(make_request("import time; time.sleep(2); print('ok')")))
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not cgroups.leftover_names(engine.config.cgroup_parent):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.5)
    sweeping.sweep()
    thread.join()
    result = out["r"]
    assert (result.status, result.stdout.data) == (Status.SUCCEEDED, b"ok\n"), result


# -- availability -----------------------------------------------------------------------------------


def test_an_unknown_engine_name_is_unavailable(engine: ExecutionEngine) -> None:
    with pytest.raises(EngineUnavailable, match="runsc"):
        get_engine("docker", engine.config)


def test_a_missing_runsc_binary_is_unavailable_with_install_instructions(engine: ExecutionEngine) -> None:
    config = EngineConfig(
        images_dir=engine.config.images_dir,
        state_dir=engine.config.state_dir,
        runsc_path="/nonexistent/runsc",
        cgroup_parent=engine.config.cgroup_parent,
    )
    missing = RunscEngine(config)
    with pytest.raises(EngineUnavailable) as info:
        missing.check()
    message = str(info.value)
    assert "runsc" in message
    assert "apt-get install" in message
    with pytest.raises(EngineUnavailable):
        missing.execute(make_request("print(1)"))


def test_a_missing_image_says_how_to_build_it(engine: ExecutionEngine, tmp_path: Path) -> None:
    config = EngineConfig(
        images_dir=tmp_path / "no-images", state_dir=engine.config.state_dir, cgroup_parent=engine.config.cgroup_parent
    )
    with pytest.raises(ImageError, match="build-image"):
        RunscEngine(config).check()


# -- guest process counts and the process limit ----------------------------------------------------


def test_it_reports_the_peak_number_of_processes_inside_the_sandbox(run: Run) -> None:
    code = """
import os, time
children = []
for _ in range(5):
    pid = os.fork()
    if pid == 0:
        time.sleep(1.2)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
"""
    samples: list[MetricSample] = []
    result = run(code, on_metrics=samples.append)
    assert result.status is Status.SUCCEEDED, result
    # The guest's own count (the program and its 5 children), not the sentry's host threads (~30).
    assert result.usage.peak_processes == 6
    assert 6 in [s.processes for s in samples], samples


def test_threads_count_as_processes_like_the_limit_does(run: Run) -> None:
    code = "import threading, time\nfor _ in range(3):\n    threading.Thread(target=time.sleep, args=(1,)).start()"
    result = run(code)
    assert result.status is Status.SUCCEEDED, result
    assert result.usage.peak_processes == 4


def test_a_short_run_still_reports_its_processes(run: Run) -> None:
    samples: list[MetricSample] = []
    result = run("import time; time.sleep(0.8)", on_metrics=samples.append)
    assert result.usage.peak_processes == 1
    # None only until the first reading, which comes as soon as the sandbox exists.
    counts = [s.processes for s in samples]
    assert 1 in counts and set(counts[counts.index(1) :]) == {1}, samples


def test_a_fork_bomb_is_contained_and_reported_as_the_process_limit(run: Run) -> None:
    # Every process forks until fork() fails with EAGAIN, then dies of the BlockingIOError.
    started = time.monotonic()
    result = run("import os\nwhile True: os.fork()", processes=32, wall_seconds=10)
    assert time.monotonic() - started < 12
    assert result.status is Status.FAILED, result  # not ERROR: runsc survived
    assert result.reason is Reason.PIDS_LIMIT, result
    assert result.usage.peak_processes == 32
    assert "process limit of 32" in result.detail
    assert b"Resource temporarily unavailable" in result.stderr.data


def test_a_fork_bomb_that_survives_refused_forks_ends_at_the_wall_limit_as_the_process_limit(run: Run) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    started = time.monotonic()
    result = run(code, processes=32, wall_seconds=3)
    took = time.monotonic() - started
    assert 3 <= took < 6, took
    assert (result.status, result.reason) == (Status.FAILED, Reason.PIDS_LIMIT), result
    assert result.exit_code is None
    assert result.usage.peak_processes == 32
    assert "process limit of 32" in result.detail and "wall-time limit of 3 s" in result.detail


def test_a_failing_program_below_the_process_limit_fails_with_its_exit_code(run: Run) -> None:
    code = """
import os, time
for _ in range(3):
    if os.fork() == 0:
        time.sleep(0.8)
        os._exit(0)
time.sleep(0.8)
raise SystemExit(3)
"""
    result = run(code, processes=8)
    assert (result.status, result.reason, result.exit_code) == (Status.FAILED, Reason.EXIT_CODE, 3), result
    assert result.usage.peak_processes == 4


def test_a_slow_program_with_a_few_processes_times_out_as_a_timeout(run: Run) -> None:
    code = "import os, time\nos.fork()\ntime.sleep(30)"
    result = run(code, processes=8, wall_seconds=1.5)
    assert (result.status, result.reason) == (Status.FAILED, Reason.TIMEOUT), result
    assert result.usage.peak_processes == 2


def test_output_reaches_the_callback_within_50_ms_while_processes_are_sampled(run: Run) -> None:
    latencies: list[float] = []

    def on_output(stream: Stream, offset: int, chunk: bytes) -> None:
        now = time.time()
        latencies.extend(now - float(line[2:]) for line in chunk.split(b"\n") if line.startswith(b"T "))

    code = "import time\nfor _ in range(40):\n    print(f'T {time.time()!r}')\n    time.sleep(0.05)"
    samples: list[MetricSample] = []
    result = run(code, on_output=on_output, on_metrics=samples.append)
    assert result.status is Status.SUCCEEDED, result
    assert len(latencies) == 40
    assert len(samples) >= 3  # the 500 ms metrics ticks (and their process queries) happened meanwhile
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.01, latencies
    assert latencies[-3] < 0.05, latencies
