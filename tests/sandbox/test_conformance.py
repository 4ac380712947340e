"""One conformance suite, run against every engine: real sandboxes, no mocks.

Each test runs once per engine in ENGINE_NAMES (support.py). What an engine is known not to do is
listed in KNOWN_FAILURES: those cases become strict xfails for that engine only, so a fix shows up
as an XPASS failure and the list has to shrink with it. Engine-specific behaviour (runsc's sweep,
state dirs, docker's image import) is tested in the engine's own test module.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandbox.contract import ExecRequest, ExecResult, MiB, Reason, Status, Stream
from sandbox.engine import ExecutionEngine, MetricSample
from sandbox.images import Image
from tests.sandbox.support import ENGINE_NAMES, make_request

Run = Callable[..., ExecResult]

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("nothing_left_behind")]

# test function name -> why the engine does not pass it. Keep every entry specific.
KNOWN_FAILURES: dict[str, dict[str, str]] = {
    "runsc": {},
    "docker": {},
    # Development only, NOT a sandbox: see the docstring of sandbox/subprocess_engine.py.
    "subprocess": {
        "test_the_result_carries_the_images_digest": "it runs the host's python3, not an image",
        "test_the_program_runs_from_its_code_dir": "it runs the program from its work dir, not /code",
        "test_it_runs_user_code_as_nobody": "it runs the program as a uid of its own per run, not 65534",
        "test_a_cpu_quota_holds_a_program_spinning_on_every_core": "it does not enforce cpu_cores",
        "test_the_root_filesystem_is_read_only": "it runs on the host's filesystem, not a read-only image",
        "test_home_and_tmpdir_are_the_programs_tmp": "HOME and TMPDIR are a directory in its work dir",
        "test_filling_tmp_gives_enospc_not_an_oom": "it does not enforce tmp_bytes (the host's /tmp)",
        "test_a_program_that_fails_because_tmp_is_full_fails_on_the_disk_limit": "it does not enforce tmp_bytes",
        "test_tmp_does_not_persist_between_runs": "it shares the host's /tmp between runs",
        "test_it_has_no_network": "it shares the host's network",
        "test_it_cannot_resolve_names": "it shares the host's network",
        "test_it_sees_its_own_root_filesystem_not_the_hosts": "it sees the host's files",
    },
}


LOAD_DEPENDENT = {"test_a_cpu_quota_holds_a_program_spinning_on_every_core"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine_name" not in metafunc.fixturenames:
        return
    test = metafunc.definition.originalname
    params = []
    for name in ENGINE_NAMES:
        why = KNOWN_FAILURES[name].get(test)
        # Strict, so a fix shows up as a failure to update the table; except where the host's own
        # load can make the case pass by accident (other work starving the spinners of CPU).
        strict = test not in LOAD_DEPENDENT
        marks = [pytest.mark.xfail(strict=strict, reason=f"{name}: {why}")] if why else []
        params.append(pytest.param(name, id=name, marks=marks))
    # Session scope groups the tests by engine, so each engine (and dockerd) is set up once.
    metafunc.parametrize("engine_name", params, scope="session")


@pytest.fixture
def engine(engine_name: str, request: pytest.FixtureRequest) -> ExecutionEngine:
    return request.getfixturevalue(f"{engine_name}_engine")


# A small memory limit; /tmp (a tmpfs held in that memory) must stay below it.
SMALL_MEMORY = dict(memory_bytes=128 * MiB, tmp_bytes=16 * MiB)


def test_the_known_failures_name_real_tests_and_engines() -> None:
    tests = {name for name in globals() if name.startswith("test_")}
    assert set(KNOWN_FAILURES) >= set(ENGINE_NAMES)
    unknown = {engine: sorted(set(cases) - tests) for engine, cases in KNOWN_FAILURES.items()}
    assert all(not names for names in unknown.values()), unknown


# -- running ----------------------------------------------------------------------------------------


def test_it_runs_hello_world(run: Run, engine: ExecutionEngine) -> None:
    result = run("print('hello')")
    assert result.stdout.data == b"hello\n"
    assert result.status is Status.SUCCEEDED
    assert result.reason is None
    assert result.exit_code == 0
    assert result.signal is None
    assert result.engine == engine.name
    assert result.runtime_version
    assert result.stderr.data == b""
    assert result.stdout.truncated is False
    assert result.stdout.bytes_written == 6
    assert result.timings.run_seconds > 0
    assert result.timings.teardown_seconds >= 0
    assert result.detail == ""


def test_each_sandbox_started_is_logged_once_with_its_id(run: Run, caplog: pytest.LogCaptureFixture) -> None:
    # A worker's log counts its sandboxes by these lines; warm launchers made meanwhile are no sandboxes.
    with caplog.at_level(logging.INFO, logger="sandbox"):
        for _ in range(2):
            assert run("pass").status is Status.SUCCEEDED
    started = [r for r in caplog.records if r.name.startswith("sandbox") and r.getMessage().endswith(" started")]
    assert [r.levelno for r in started] == [logging.INFO] * 2
    ids = [r.getMessage().split()[1] for r in started]
    assert len(set(ids)) == 2 and all(i.startswith("crucible-") for i in ids), ids
    assert all(r.getMessage() == f"sandbox {i} started" for r, i in zip(started, ids, strict=True))


def test_the_result_carries_the_images_digest(run: Run, image: Image) -> None:
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
    assert b'main.py", line 1, in <module>' in result.stderr.data


def test_it_reports_death_by_signal(run: Run) -> None:
    result = run("import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    assert (result.status, result.reason) == (Status.FAILED, Reason.EXIT_CODE)
    assert result.signal == 15


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
            "main.py": b"import helper\nfrom pkg.sub import mod\nprint(helper.X, mod.Y)",
            "helper.py": b"X = 1",
            "pkg/__init__.py": b"",
            "pkg/sub/__init__.py": b"",
            "pkg/sub/mod.py": b"Y = 2",
        }
    )
    result = engine.execute(request)
    assert result.stdout.data == b"1 2\n", result.stderr.data


def test_the_program_runs_from_its_code_dir(run: Run) -> None:
    result = run("import os, sys; print(os.getcwd(), sys.argv[0])")
    assert result.stdout.data == b"/code /code/main.py\n"


def test_it_passes_the_requests_environment(run: Run) -> None:
    result = run("import os; print(os.environ['GREETING'])", env={"GREETING": "hi there"})
    assert result.stdout.data == b"hi there\n"


def test_it_runs_user_code_as_nobody(run: Run) -> None:
    result = run("import os; print(os.getuid(), os.geteuid(), os.getgid())")
    assert result.stdout.data == b"65534 65534 65534\n"


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


# -- limits -----------------------------------------------------------------------------------------


def test_it_times_out_an_infinite_loop(run: Run) -> None:
    started = time.monotonic()
    result = run("while True: pass", wall_seconds=1.5)
    took = time.monotonic() - started
    assert result.status is Status.FAILED
    assert result.reason is Reason.TIMEOUT
    assert result.exit_code is None
    assert_ended_at_the_wall(result, took, wall_seconds=1.5)


def test_it_times_out_a_sleeping_program(run: Run) -> None:
    started = time.monotonic()
    result = run("import time; time.sleep(30)", wall_seconds=1)
    assert (result.status, result.reason) == (Status.FAILED, Reason.TIMEOUT)
    assert_ended_at_the_wall(result, time.monotonic() - started, wall_seconds=1)


def assert_ended_at_the_wall(result: ExecResult, took: float, wall_seconds: float) -> None:
    # The program is stopped within a second and a half of its limit; the teardown after it (runsc
    # delete, cgroup removal) is not the program's time and is slower on a busy machine.
    assert wall_seconds <= result.timings.run_seconds < wall_seconds + 1.5, result.timings
    assert took < wall_seconds + 5, f"execute() took {took:.2f}s for a {wall_seconds}s wall limit"


def test_a_cpu_quota_holds_a_program_spinning_on_every_core(run: Run) -> None:
    # Four spinning processes per host core, for ~1.5 s of wall time, under half a core. (Four, so
    # that an engine without a quota still takes well over half a core on a host busy with other work.)
    code = """
import os, time
end = time.monotonic() + 1.5
children = []
for _ in range(4 * (os.cpu_count() or 2)):
    pid = os.fork()
    if pid == 0:
        while time.monotonic() < end:
            pass
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
print('spun')
"""
    # An engine without a quota passes this only on a host saturated by other work.
    result = run(code, cpu_cores=0.5, wall_seconds=10)
    assert result.status is Status.SUCCEEDED, result
    cpu, wall = result.usage.cpu_seconds, result.timings.run_seconds
    assert cpu is not None and cpu > 0.3, result.usage  # it did spin
    assert cpu / wall <= 0.6, f"{cpu:.2f} CPU seconds in {wall:.2f} s under a 0.5-core quota"


@pytest.mark.parametrize(
    "code",
    [
        "bytearray(1024**3)",
        # Bounded, so an engine without a memory limit cannot take the host down with it.
        "chunks = []\nfor _ in range(2048):\n    chunks.append(bytearray(1024 * 1024))",
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


def test_a_fork_bomb_is_contained_and_the_engine_survives(run: Run) -> None:
    # Every process forks for 7 generations (at most 128 processes, so an engine without a process
    # limit cannot take the host down) and then holds on until the wall limit.
    code = """
import os, time
for _ in range(7):
    try:
        os.fork()
    except OSError:
        pass
time.sleep(30)
"""
    started = time.monotonic()
    result = run(code, processes=16, wall_seconds=3)
    assert time.monotonic() - started < 8
    assert result.status is Status.FAILED, result
    assert result.reason is Reason.PIDS_LIMIT, result
    after = run("print('still here')")
    assert (after.status, after.stdout.data) == (Status.SUCCEEDED, b"still here\n")


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


# -- files ------------------------------------------------------------------------------------------


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


@pytest.fixture
def tmp_name() -> Iterator[str]:
    """A fresh name for a file in the program's /tmp, removed from the host's /tmp afterwards in case
    an engine (subprocess) shares it; no sandbox can create it there."""
    name = f"crucible-conformance-{secrets.token_hex(4)}"
    yield name
    (Path("/tmp") / name).unlink(missing_ok=True)


def test_tmp_is_writable(run: Run, tmp_name: str) -> None:
    code = f"open('/tmp/{tmp_name}', 'w').write('hi'); import os; print(open('/tmp/{tmp_name}').read())"
    result = run(code)
    assert result.status is Status.SUCCEEDED, result
    assert result.stdout.data == b"hi\n"


def test_home_and_tmpdir_are_the_programs_tmp(run: Run) -> None:
    result = run("import os, tempfile; print(os.environ['HOME'], tempfile.gettempdir())")
    assert result.stdout.data == b"/tmp /tmp\n"


def test_filling_tmp_gives_enospc_not_an_oom(run: Run, tmp_name: str) -> None:
    code = f"""
import errno
written = 0
try:
    with open('/tmp/{tmp_name}', 'wb') as f:
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
    assert result.status is Status.SUCCEEDED, result  # the program handled it: no OOM, no kill


def test_a_program_that_fails_because_tmp_is_full_fails_on_the_disk_limit(run: Run, tmp_name: str) -> None:
    # Bounded, so an engine without a /tmp limit cannot fill the host's disk.
    code = f"""
with open('/tmp/{tmp_name}', 'wb') as f:
    for _ in range(32):
        f.write(b'x' * 1024 * 1024)
        f.flush()
"""
    result = run(code, memory_bytes=128 * MiB, tmp_bytes=8 * MiB, file_size_bytes=1024 * MiB)
    assert (result.status, result.reason, result.exit_code) == (Status.FAILED, Reason.DISK_LIMIT, 1), result
    assert b"OSError: [Errno 28] No space left on device" in result.stderr.data
    assert result.detail == f"a write failed with ENOSPC: /tmp is full (it holds at most {8 * MiB} bytes)"


def test_a_program_that_fails_on_a_file_over_the_size_limit_fails_on_the_disk_limit(run: Run) -> None:
    code = """
import os
with open(os.path.join(os.environ['TMPDIR'], 'big'), 'wb') as f:
    f.write(b'x' * (2 * 1024 * 1024))
"""
    result = run(code, file_size_bytes=1 * MiB)
    assert (result.status, result.reason, result.exit_code) == (Status.FAILED, Reason.DISK_LIMIT, 1), result
    assert b"OSError: [Errno 27] File too large" in result.stderr.data
    assert result.detail == f"a write failed with EFBIG: a file reached the file size limit of {MiB} bytes"


def test_a_program_killed_for_a_file_over_the_size_limit_fails_on_the_disk_limit(run: Run) -> None:
    # Python ignores SIGXFSZ (and gets EFBIG instead); a program that does not dies of it.
    code = """
import os, signal
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
with open(os.path.join(os.environ['TMPDIR'], 'big'), 'wb') as f:
    f.write(b'x' * (2 * 1024 * 1024))
"""
    result = run(code, file_size_bytes=1 * MiB)
    assert (result.status, result.reason, result.signal) == (Status.FAILED, Reason.DISK_LIMIT, 25), result
    assert result.detail == f"killed by SIGXFSZ: a file reached the file size limit of {MiB} bytes"


def test_tmp_does_not_persist_between_runs(run: Run, tmp_name: str) -> None:
    run(f"open('/tmp/{tmp_name}', 'w').write('x')")
    result = run(f"import os; print(os.path.exists('/tmp/{tmp_name}'))")
    assert result.stdout.data == b"False\n"


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
    leaked = [line for line in host_lines if line in out]
    assert leaked == []


def test_it_sees_its_own_root_filesystem_not_the_hosts(run: Run) -> None:
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
    assert b"/proc/self/environ b'" in result.stdout.data
    assert secret.encode() not in result.stdout.data
    assert b"CRUCIBLE_TEST_SECRET" not in result.stdout.data
    assert secret.encode() not in result.stderr.data


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

    def on_output(stream: Stream, offset: int, chunk: bytes) -> None:
        seen_at.append(time.monotonic())

    result = run("import time\nprint('early')\ntime.sleep(1)\nprint('late')", on_output=on_output)
    assert result.stdout.data == b"early\nlate\n"
    # 'early' was delivered while the program slept, not with 'late' at its end.
    assert seen_at[-1] - seen_at[0] > 0.8, seen_at


# -- cancellation and metrics -----------------------------------------------------------------------


def test_it_cancels_a_running_program(run: Run) -> None:
    cancel = threading.Event()
    running = threading.Event()
    set_at: list[float] = []

    def fire() -> None:
        running.wait(timeout=10)  # the program has started and printed
        time.sleep(0.2)
        set_at.append(time.monotonic())
        cancel.set()

    thread = threading.Thread(target=fire)
    thread.start()
    result = run("import time; print('started'); time.sleep(60)", cancel=cancel, on_output=lambda *_: running.set())
    returned_at = time.monotonic()
    thread.join()
    assert result.status is Status.CANCELLED
    assert result.reason is Reason.CANCELLED
    assert result.stdout.data == b"started\n"
    assert returned_at - set_at[0] < 1.0, f"returned {returned_at - set_at[0]:.2f}s after the cancel"


def test_a_run_cancelled_before_it_starts_ends_cancelled(run: Run) -> None:
    cancel = threading.Event()
    cancel.set()
    started = time.monotonic()
    result = run("import time; time.sleep(60)", cancel=cancel)
    assert (result.status, result.reason) == (Status.CANCELLED, Reason.CANCELLED)
    # Slower than cancelling a booted run for runsc: `runsc delete --force` of a half-created
    # sandbox takes ~1.4 s here.
    assert time.monotonic() - started < 4


def test_it_reports_metrics_while_running(run: Run) -> None:
    samples: list[MetricSample] = []
    result = run("import time; time.sleep(1.2)", on_metrics=samples.append)
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
