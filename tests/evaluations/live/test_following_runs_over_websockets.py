"""The run websockets (docs/live-runs.md) through the real ASGI application and the real channels-redis
layer: who may connect and the close codes, replay from any offset, live messages after the replay,
and every byte exactly once while a worker is writing during the client's connect.

Each test gets the configured Redis layer with a key prefix of its own, so tests (and other test
sessions sharing the Redis database, whose run ids may be the same as ours) never see each other's
messages. Rows are committed (`transaction=True`) because the consumer reads them from another thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import threading
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer_of_its_own"),  # tests/evaluations/conftest.py
]

ORIGIN = b"http://testserver"
# docs/live-runs.md: frames of at most 64 KiB (daphne resets the connection over 1 MiB).
PROTOCOL_MAX_FRAME_BYTES = 64 * 1024
RECEIVE_TIMEOUT = 10.0


# -- set-up -------------------------------------------------------------------------------------------


@pytest.fixture
def session_cookie(user) -> bytes:
    """A `cookie` header value for a browser logged in as `user`."""
    from django.conf import settings
    from django.test import Client

    browser = Client()
    browser.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


@pytest.fixture
def browser_headers(session_cookie) -> list[tuple[bytes, bytes]]:
    return [(b"cookie", session_cookie), (b"origin", ORIGIN)]


@pytest.fixture
def token_headers(token) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Token {token.key}".encode())]


def communicator(path: str, headers: list[tuple[bytes, bytes]]) -> WebsocketCommunicator:
    from crucible_site.asgi import application

    return WebsocketCommunicator(application, path, headers=headers)


async def close_code(path: str, headers: list[tuple[bytes, bytes]]) -> int:
    """Connect and return the code the server closes with; fails if it sends anything first."""
    comm = communicator(path, headers)
    try:
        accepted, code = await comm.connect(timeout=RECEIVE_TIMEOUT)
        if not accepted:
            return code
        message = await comm.receive_output(timeout=RECEIVE_TIMEOUT)
        assert message["type"] == "websocket.close", f"sent before closing: {message}"
        return message["code"]
    finally:
        await comm.disconnect()


async def receive(comm: WebsocketCommunicator, timeout: float = RECEIVE_TIMEOUT) -> dict[str, Any]:
    """The next JSON message; fails on a close or on a frame over the protocol's 64 KiB."""
    message = await comm.receive_output(timeout=timeout)
    assert message["type"] == "websocket.send", f"expected a message, got {message}"
    text = message["text"]
    assert len(text.encode()) <= PROTOCOL_MAX_FRAME_BYTES, f"a {len(text.encode())}-byte frame"
    return json.loads(text)


class Reassembly:
    """Output messages put back together per stream; each must start where the last one ended."""

    def __init__(self, start: dict[str, int] | None = None) -> None:
        self.start = {"stdout": 0, "stderr": 0, **(start or {})}
        self.next = dict(self.start)
        self.data = {"stdout": bytearray(), "stderr": bytearray()}
        self.messages = 0

    def add(self, message: dict[str, Any]) -> None:
        stream, offset = message["stream"], message["offset"]
        chunk = base64.b64decode(message["data"], validate=True)
        assert chunk, f"an empty output message at {stream}:{offset}"
        if offset > self.next[stream]:
            pytest.fail(f"gap in {stream}: message at {offset}, but only {self.next[stream]} bytes so far")
        if offset < self.next[stream]:
            pytest.fail(f"overlap in {stream}: message at {offset}, but {self.next[stream]} bytes already arrived")
        self.data[stream] += chunk
        self.next[stream] += len(chunk)
        self.messages += 1

    def has(self, sizes: dict[str, int]) -> bool:
        return all(self.next[s] >= sizes[s] for s in sizes)


async def follow(
    comm: WebsocketCommunicator, until, streams: Reassembly, timeout: float = RECEIVE_TIMEOUT, want: object = None
) -> list[dict[str, Any]]:
    """Receive until `until(streams, others)` holds; output goes into `streams`, the rest is returned."""
    others: list[dict[str, Any]] = []
    while not until(streams, others):
        try:
            message = await receive(comm, timeout)
        except TimeoutError:
            pytest.fail(
                f"nothing more within {timeout:g}s; bytes so far: {streams.next} in {streams.messages} messages, "
                f"waiting for: {want}, other messages: {others}; {layer_keys_now()}"
            )
        if message["type"] == "output":
            streams.add(message)
        else:
            others.append(message)
    return others


def layer_keys_now() -> str:
    """For failure messages: a connected client's group key must be in Redis."""
    import redis
    from django.conf import settings

    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
    keys = sorted(k.decode() for k in client.scan_iter(match=prefix + "*"))
    client.close()
    hint = "" if keys else " (none: another process flushed the Redis database, e.g. tests/e2e's stack fixture)"
    return f"channel-layer keys of this test: {keys}{hint}"


def in_thread(func, *args, **kwargs):
    """Run blocking worker-side code (publishing, joining threads) off the event loop."""
    return sync_to_async(func, thread_sensitive=False)(*args, **kwargs)


def stored(run, stream: str) -> bytes:
    """What the store holds (a database read: done in a thread of its own, as tests here are async)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from evaluations.runs import logstore

    def read() -> bytes:
        try:
            return logstore.log_read(run, stream)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(read).result()


@pytest.fixture
def running_run(user, make_run):
    from django.utils import timezone

    # Caps above what the tests here write: the store keeps no more than a run's cap.
    big = 64 * 1024 * 1024
    return make_run(user, status="running", started_at=timezone.now(), stdout_limit_bytes=big, stderr_limit_bytes=big)


# -- who may connect ----------------------------------------------------------------------------------


async def test_the_owner_connects_with_a_session_cookie_and_a_matching_origin(browser_headers, running_run):
    comm = communicator(f"/ws/runs/{running_run.pk}/", browser_headers)
    accepted, _ = await comm.connect(timeout=RECEIVE_TIMEOUT)
    assert accepted
    message = await receive(comm)
    assert message["type"] == "status" and message["status"] == "running"
    await comm.disconnect()


@pytest.mark.parametrize(
    "origin", [b"http://testserver", b"http://127.0.0.1:8000", b"http://LOCALHOST:8000", b"https://crucible.example"]
)
async def test_every_allowed_origin_is_acceptable(session_cookie, running_run, origin, settings):
    settings.CRUCIBLE_ALLOWED_ORIGINS = ["http://testserver", "http://127.0.0.1:8000", "http://localhost:8000"]
    settings.CRUCIBLE_ALLOWED_ORIGINS.append("https://crucible.example:443")  # the default port, spelt out
    comm = communicator(f"/ws/runs/{running_run.pk}/", [(b"cookie", session_cookie), (b"origin", origin)])
    accepted, _ = await comm.connect(timeout=RECEIVE_TIMEOUT)
    assert accepted
    assert (await receive(comm))["type"] == "status"
    await comm.disconnect()


@pytest.mark.parametrize(
    "origin",
    [b"http://evil.example", b"https://testserver", b"http://testserver:8080", b"http://127.0.0.1:9999", b"null"],
)
async def test_a_wildcard_allowed_host_lets_no_other_origin_in(session_cookie, running_run, origin, settings):
    # The scheme, host and port must all match an allowed origin, whatever ALLOWED_HOSTS says.
    settings.ALLOWED_HOSTS = ["*"]
    settings.CRUCIBLE_ALLOWED_ORIGINS = ["http://testserver", "http://127.0.0.1:8000"]
    headers = [(b"cookie", session_cookie), (b"origin", origin)]
    assert await close_code(f"/ws/runs/{running_run.pk}/", headers) == 4403


async def test_a_script_connects_with_its_token_and_no_origin(token_headers, running_run):
    comm = communicator(f"/ws/runs/{running_run.pk}/", token_headers)
    accepted, _ = await comm.connect(timeout=RECEIVE_TIMEOUT)
    assert accepted
    assert (await receive(comm))["status"] == "running"
    await comm.disconnect()


async def test_a_browser_without_a_session_is_not_authenticated(running_run):
    assert await close_code(f"/ws/runs/{running_run.pk}/", [(b"origin", ORIGIN)]) == 4401


async def test_a_client_with_no_credentials_at_all_is_not_authenticated(running_run):
    assert await close_code(f"/ws/runs/{running_run.pk}/", []) == 4401


async def test_a_session_cookie_without_an_origin_is_refused(session_cookie, running_run):
    # A page on any site could open a socket with the visitor's cookie; browsers always send Origin.
    assert await close_code(f"/ws/runs/{running_run.pk}/", [(b"cookie", session_cookie)]) == 4403


@pytest.mark.parametrize(
    "origin", [b"http://evil.example", b"http://testserver.evil.example", b"null", b"https://127.0.0.1.evil.example"]
)
async def test_a_foreign_origin_is_refused_even_with_a_valid_session(session_cookie, running_run, origin):
    assert await close_code(f"/ws/runs/{running_run.pk}/", [(b"cookie", session_cookie), (b"origin", origin)]) == 4403


async def test_a_foreign_origin_is_refused_even_with_a_valid_token(token_headers, running_run):
    headers = [*token_headers, (b"origin", b"http://evil.example")]
    assert await close_code(f"/ws/runs/{running_run.pk}/", headers) == 4403


@pytest.mark.parametrize("header", [b"Token not-a-real-key", b"Token ", b"Bearer abc", b"token"])
async def test_a_wrong_token_is_not_authenticated(running_run, header):
    assert await close_code(f"/ws/runs/{running_run.pk}/", [(b"authorization", header)]) == 4401


async def test_a_deactivated_users_token_is_refused(token, token_headers, running_run):
    token.user.is_active = False
    await database_sync_to_async(token.user.save)(update_fields=["is_active"])
    assert await close_code(f"/ws/runs/{running_run.pk}/", token_headers) == 4401


async def test_a_deactivated_users_session_is_refused(user, browser_headers, running_run):
    user.is_active = False
    await database_sync_to_async(user.save)(update_fields=["is_active"])
    assert await close_code(f"/ws/runs/{running_run.pk}/", browser_headers) == 4401


async def test_another_users_run_and_a_missing_run_are_refused_alike(
    browser_headers, token_headers, other_user, make_run
):
    theirs = await database_sync_to_async(make_run)(other_user, stdout=b"secret\n")
    missing = theirs.pk + 1000
    for headers in (browser_headers, token_headers):
        codes = [await close_code(f"/ws/runs/{pk}/", headers) for pk in (theirs.pk, missing)]
        assert codes == [4404, 4404]


@pytest.mark.parametrize(
    "query",
    [
        "stdout=-1",
        "stdout=abc",
        "stderr=1.5",
        "stdout=1e3",
        "stdout=0x10",
        "stdout=1&stdout=2",
        "stdout=99999999999999999999",
        "follow=1",
        "stdout=0&offset=0",
    ],
)
async def test_bad_offsets_and_unknown_parameters_are_a_bad_request(browser_headers, running_run, query):
    assert await close_code(f"/ws/runs/{running_run.pk}/?{query}", browser_headers) == 4400


@pytest.mark.parametrize("path", ["/ws/nope/", "/ws/runs/abc/", "/ws/runs/1/extra/", "/", "/api/v1/runs/"])
async def test_an_unknown_websocket_path_closes_with_4404(browser_headers, path):
    assert await close_code(path, browser_headers) == 4404


def unreachable(*args, **kwargs):
    from django.db import OperationalError

    raise OperationalError("couldn't get a connection after 2.00 sec")  # the web's pool, exhausted


async def test_a_connect_while_the_database_is_unreachable_is_told_to_try_again(
    token_headers, browser_headers, running_run, monkeypatch
):
    from evaluations.runs import selectors

    monkeypatch.setattr(selectors, "run_get_visible", unreachable)
    for headers in (token_headers, browser_headers):
        assert await close_code(f"/ws/runs/{running_run.pk}/", headers) == 1013  # not an HTTP 500


async def test_a_token_or_session_read_while_the_database_is_unreachable_is_told_to_try_again(
    token_headers, browser_headers, running_run, monkeypatch
):
    from channels import auth as channels_auth

    from evaluations.accounts import tokens

    monkeypatch.setattr(tokens, "token_user", unreachable)
    monkeypatch.setattr(channels_auth.get_user, "func", unreachable)
    for headers in (token_headers, browser_headers):
        assert await close_code(f"/ws/runs/{running_run.pk}/", headers) == 1013
        assert await close_code("/ws/runs/", headers) == 1013


@pytest.fixture
def two_running_runs(user, make_run):
    return make_run(user, status="running"), make_run(user, status="running")


async def test_a_socket_waiting_on_the_database_holds_up_no_other_sockets_handshake(
    two_running_runs, browser_headers, token_headers, monkeypatch
):
    from evaluations.runs import logstore

    slow, quick = two_running_runs
    waiting, release = threading.Event(), threading.Event()
    read = logstore.metrics_read

    def metrics_read(run, *args, **kwargs):
        if run.pk == slow.pk:
            waiting.set()
            release.wait(10)  # a slow query, or a database under load
        return read(run, *args, **kwargs)

    monkeypatch.setattr(logstore, "metrics_read", metrics_read)
    stuck = communicator(f"/ws/runs/{slow.pk}/", token_headers)
    others = [communicator(f"/ws/runs/{quick.pk}/", headers) for headers in (token_headers, browser_headers)]
    try:
        assert (await stuck.connect(timeout=RECEIVE_TIMEOUT))[0]
        assert await in_thread(waiting.wait, RECEIVE_TIMEOUT)
        for comm in others:  # by token, and by session cookie
            assert (await comm.connect(timeout=2))[0]
            assert (await receive(comm, timeout=2))["status"] == "running"
    finally:
        release.set()
        for comm in (stuck, *others):
            await comm.disconnect()


# -- what arrives on connect --------------------------------------------------------------------------


@pytest.mark.parametrize("start", [{"stdout": 0, "stderr": 0}, {"stdout": 123_457, "stderr": 5}])
async def test_the_replay_is_exactly_the_stored_bytes_from_the_clients_offsets(user, make_run, token_headers, start):
    rng = random.Random(4)
    # Binary, NUL, invalid UTF-8, and longer than several frames and one replay read.
    out = rng.randbytes(1_300_000) + b"\x00\xff\xfe end"
    err = b"warning: \xe9t\xe9\n" * 3
    run = await database_sync_to_async(make_run)(
        user, stdout=out, stderr=err, status="succeeded", stdout_limit_bytes=2 * len(out)
    )
    query = f"?stdout={start['stdout']}&stderr={start['stderr']}"
    comm = communicator(f"/ws/runs/{run.pk}/{query}", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]

    streams = Reassembly(start)
    await follow(comm, lambda s, _: s.has({"stdout": len(out), "stderr": len(err)}), streams)

    assert bytes(streams.data["stdout"]) == out[start["stdout"] :] == stored(run, "stdout")[start["stdout"] :]
    assert bytes(streams.data["stderr"]) == err[start["stderr"] :]
    rest = []
    while not await comm.receive_nothing(timeout=0.3):
        rest.append(await receive(comm))
    assert [m for m in rest if m["type"] == "output"] == []
    await comm.disconnect()


async def test_the_replay_interleaves_the_streams_in_the_order_they_were_stored(user, make_run, token_headers):
    from evaluations.runs.logstore import RunLogWriter

    def write_run():
        from django.utils import timezone

        run = make_run(user, status="failed", started_at=timezone.now())
        writer = RunLogWriter(run)
        writer.append("stdout", 0, b"one\n")
        writer.append("stdout", 4, b"two\n")  # two rows of one stream in a row: one frame
        writer.append("stderr", 0, b"Traceback\n")
        writer.append("stdout", 8, b"three\n")
        writer.close()
        return run

    run = await database_sync_to_async(write_run)()
    comm = communicator(f"/ws/runs/{run.pk}/", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]

    frames, times = [], []
    while len(frames) < 3:
        message = await receive(comm)
        if message["type"] == "output":
            frames.append((message["stream"], message["offset"], base64.b64decode(message["data"])))
            times.append(message["t"])  # seconds after the run started that it was stored

    assert frames == [("stdout", 0, b"one\ntwo\n"), ("stderr", 0, b"Traceback\n"), ("stdout", 8, b"three\n")]
    assert all(isinstance(t, float) and 0 <= t < 10 for t in times) and times == sorted(times)
    await comm.disconnect()


async def test_every_frame_is_at_most_64_kib(user, make_run, token_headers):
    out = random.Random(5).randbytes(300_000)
    run = await database_sync_to_async(make_run)(user, stdout=out, status="succeeded")
    comm = communicator(f"/ws/runs/{run.pk}/", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    sizes = []
    streams = Reassembly()
    while not streams.has({"stdout": len(out)}):
        message = await comm.receive_output(timeout=RECEIVE_TIMEOUT)
        sizes.append(len(message["text"].encode()))
        content = json.loads(message["text"])
        if content["type"] == "output":
            streams.add(content)
    await comm.disconnect()
    assert max(sizes) <= PROTOCOL_MAX_FRAME_BYTES


async def test_a_client_that_has_everything_gets_no_output(user, make_run, token_headers):
    run = await database_sync_to_async(make_run)(user, stdout=b"abc", stderr=b"de", status="succeeded")
    comm = communicator(f"/ws/runs/{run.pk}/?stdout=3&stderr=2", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    messages = [await receive(comm)]
    while not await comm.receive_nothing(timeout=0.3):
        messages.append(await receive(comm))
    assert [m["type"] for m in messages] == ["status"]
    await comm.disconnect()


async def test_opening_an_ended_runs_socket_takes_five_trips_to_the_database(
    user, make_run, token_headers, monkeypatch
):
    from evaluations.live import consumers

    run = await database_sync_to_async(make_run)(user, stdout=b"abc\n", stderr=b"de\n", status="succeeded")
    calls = []
    real = consumers.in_thread
    monkeypatch.setattr(consumers, "in_thread", lambda func: calls.append(func) or real(func))
    comm = communicator(f"/ws/runs/{run.pk}/", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    streams = Reassembly()
    others = await follow(comm, lambda s, o: bool(o), streams)
    assert [m["status"] for m in others] == ["succeeded"]
    assert streams.data == {"stdout": b"abc\n", "stderr": b"de\n"}
    # The rate limit, the access check, the replay, the status with the samples, and the check
    # that nothing was stored past the replay before the end goes out (there were 10).
    assert len(calls) == 5, [getattr(func, "__qualname__", func) for func in calls]
    await comm.disconnect()


async def test_the_current_status_is_sent_on_connect(user, make_run, token_headers):
    from django.utils import timezone

    finished = timezone.now()
    run = await database_sync_to_async(make_run)(
        user,
        stdout=b"partial\n",
        status="failed",
        reason="exit_code",
        exit_code=3,
        detail="the program exited with code 3",
        started_at=finished,
        finished_at=finished,
        stdout_bytes=8,
    )
    comm = communicator(f"/ws/runs/{run.pk}/", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    (status,) = await follow(comm, lambda _, others: others, Reassembly())

    assert status["type"] == "status"
    assert status["status"] == "failed" and status["reason"] == "exit_code" and status["exit_code"] == 3
    assert status["detail"] == "the program exited with code 3"
    assert status["stdout_bytes"] == 8 and status["stderr_bytes"] == 0
    assert status["stdout_truncated"] is False and status["queue_position"] is None
    assert status["finished_at"] == finished.isoformat()
    await comm.disconnect()


async def test_a_queued_run_reports_its_queue_position(user, other_user, make_run, token_headers):
    first = await database_sync_to_async(make_run)(other_user)
    mine = await database_sync_to_async(make_run)(user)
    assert first.queued_at <= mine.queued_at
    comm = communicator(f"/ws/runs/{mine.pk}/", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    status = await receive(comm)
    assert status["status"] == "queued" and status["queue_position"] == 1
    await comm.disconnect()


async def test_every_stored_metric_sample_is_sent_on_connect(user, make_run, token_headers):
    from evaluations.runs.logstore import RunLogWriter

    run = await database_sync_to_async(make_run)(user, status="succeeded")
    samples = [
        {"t": i / 2, "cpu_seconds": i / 10, "cpu_percent": 20.0, "memory_bytes": 1_000_000 + i, "processes": 1}
        for i in range(450)  # more than one frame's worth
    ]

    def store() -> None:
        writer = RunLogWriter(run)
        for sample in samples:
            writer.append_metrics(sample)
        writer.close()

    await in_thread(store)
    comm = communicator(f"/ws/runs/{run.pk}/", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]

    def have_all(_, others) -> bool:
        return sum(len(m["samples"]) for m in others if m["type"] == "metrics") >= len(samples)

    others = await follow(comm, have_all, Reassembly())
    received = [s for m in others if m["type"] == "metrics" for s in m["samples"]]
    assert received == samples
    assert len([m for m in others if m["type"] == "metrics"]) >= 2
    await comm.disconnect()


# -- live messages ------------------------------------------------------------------------------------


async def test_live_output_metrics_and_status_follow_the_replay(user, token_headers, running_run):
    from evaluations.live.publisher import RunPublisher
    from evaluations.runs import lifecycle

    run = running_run
    early = {"t": 0.25, "cpu_seconds": 0.0, "cpu_percent": None, "memory_bytes": 4_000_000, "processes": 1}
    sample = {"t": 0.5, "cpu_seconds": 0.1, "cpu_percent": 20.0, "memory_bytes": 5_000_000, "processes": 1}
    publisher = await in_thread(RunPublisher, run)
    await in_thread(publisher.output, "stdout", 0, b"before you came\n")
    await in_thread(publisher.metrics, early)
    comm = communicator(f"/ws/runs/{run.pk}/", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    streams = Reassembly()
    # The stored samples are the last thing the connect sends: after them, the replay is over.
    others = await follow(comm, lambda s, o: s.has({"stdout": 16}) and any(m["type"] == "metrics" for m in o), streams)
    assert [m["type"] for m in others] == ["status", "metrics"]
    assert others[0]["status"] == "running" and others[1]["samples"] == [early]

    def worker_writes() -> None:
        publisher.output("stdout", 16, b"while you watch\n")
        publisher.output("stderr", 0, b"oops\n")
        publisher.metrics(sample)

    await in_thread(worker_writes)
    others = await follow(comm, lambda s, o: s.has({"stdout": 32, "stderr": 5}) and o, streams)
    assert bytes(streams.data["stdout"]) == b"before you came\nwhile you watch\n"
    assert bytes(streams.data["stderr"]) == b"oops\n"
    assert others == [{"type": "metrics", "samples": [sample]}]

    # As the worker ends a run: flush the publisher, then the terminal status (after commit).
    await in_thread(publisher.close)
    await database_sync_to_async(lifecycle.run_fail)(run_id=run.pk, reason="sandbox_error", detail="test")
    final = await receive(comm)
    assert final["type"] == "status"
    assert final["status"] == "error" and final["reason"] == "sandbox_error" and final["finished_at"]
    assert await comm.receive_nothing(timeout=0.3)
    await comm.disconnect()


async def test_a_sample_stored_while_the_client_connects_arrives_once(token_headers, running_run, monkeypatch):
    from evaluations.live import consumers
    from evaluations.live.publisher import RunPublisher
    from evaluations.runs import logstore

    publisher = await in_thread(RunPublisher, running_run)
    sample = {"t": 0.5, "cpu_seconds": 0.1, "cpu_percent": 20.0, "memory_bytes": 5_000_000, "processes": 1}
    real_read = logstore.metrics_read

    def worker_samples_then_read(run, **kwargs):
        # The worker stores and publishes a sample exactly while this client is connecting.
        publisher.metrics(sample)
        time.sleep(0.2)  # the publisher's flush interval is 50 ms
        return real_read(run, **kwargs)

    monkeypatch.setattr(consumers.logstore, "metrics_read", worker_samples_then_read)
    comm = communicator(f"/ws/runs/{running_run.pk}/", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    messages = [await receive(comm)]
    while not await comm.receive_nothing(timeout=0.5):
        messages.append(await receive(comm))
    await in_thread(publisher.close)
    received = [s for m in messages if m["type"] == "metrics" for s in m["samples"]]
    assert received == [sample]
    await comm.disconnect()


def write_while_a_client_joins(
    run_id: int, seed: int, chunks: int, progress: list[int], head_start: threading.Event
) -> dict[str, bytes]:
    """What the worker's pump does: append + publish chunks of random size to both streams."""
    from evaluations.live.publisher import RunPublisher
    from evaluations.models import Run

    rng = random.Random(seed)
    publisher = RunPublisher(Run.objects.get(pk=run_id))
    written = {"stdout": bytearray(), "stderr": bytearray()}
    try:
        for i in range(chunks):
            stream = "stdout" if rng.random() < 0.75 else "stderr"
            size = 65536 if rng.random() < 0.01 else rng.randint(1, 4096)
            data = rng.randbytes(size)
            publisher.output(stream, len(written[stream]), data)
            written[stream] += data
            progress[0] = i + 1
            if i == chunks // 10:
                head_start.set()  # the client connects now, with a few hundred KiB already stored
            time.sleep(rng.random() / 1000)  # spread the writes over about a second
    finally:
        head_start.set()
        publisher.close()
    return {s: bytes(b) for s, b in written.items()}


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_output_written_during_connect_and_replay_arrives_exactly_once_in_order(token_headers, running_run, seed):
    chunks = 2000
    progress = [0]
    head_start = threading.Event()
    writer = asyncio.ensure_future(
        in_thread(write_while_a_client_joins, running_run.pk, seed, chunks, progress, head_start)
    )
    await in_thread(head_start.wait, 30)
    at_connect = progress[0]
    comm = communicator(f"/ws/runs/{running_run.pk}/", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    at_accept = progress[0]
    streams = Reassembly()
    others: list[dict[str, Any]] = []
    # Read while the writer is still going; then everything it wrote.
    while not writer.done():
        if await comm.receive_nothing(timeout=0.02):
            continue
        message = await receive(comm)
        if message["type"] == "output":
            streams.add(message)
        else:
            others.append(message)
    written = await writer
    sizes = {s: len(b) for s, b in written.items()}
    others += await follow(comm, lambda s, _: s.has(sizes), streams, want=sizes)

    assert 0 < at_connect <= at_accept < chunks, "the writer must still be writing when the client joins"
    for stream in ("stdout", "stderr"):
        assert streams.next[stream] == sizes[stream]
        assert bytes(streams.data[stream]) == written[stream] == stored(running_run, stream)
    # Nothing more: no late duplicate of anything already delivered. The connect's status comes
    # after the replay, so when the replay reached the writer's end (a slow machine) it comes last.
    while not await comm.receive_nothing(timeout=0.5):
        others.append(await receive(comm))
    assert [m["type"] for m in others] == ["status"], others
    await comm.disconnect()


async def test_a_client_resuming_mid_stream_gets_only_the_rest_while_the_run_writes(token_headers, running_run):
    progress = [0]
    head_start = threading.Event()
    writer = asyncio.ensure_future(in_thread(write_while_a_client_joins, running_run.pk, 7, 1000, progress, head_start))
    await in_thread(head_start.wait, 30)
    have = {s: len(stored(running_run, s)) // 2 for s in ("stdout", "stderr")}
    comm = communicator(f"/ws/runs/{running_run.pk}/?stdout={have['stdout']}&stderr={have['stderr']}", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    written = await writer
    streams = Reassembly(have)
    # The connect's status comes after the replay, which may have caught up with the whole write.
    everything = {stream: len(data) for stream, data in written.items()}
    await follow(comm, lambda s, others: s.has(everything) and any(m["type"] == "status" for m in others), streams)
    for stream in ("stdout", "stderr"):
        assert bytes(streams.data[stream]) == written[stream][have[stream] :]
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()


# -- the run list -------------------------------------------------------------------------------------


async def test_the_run_list_socket_gets_status_changes_of_the_users_own_runs_only(
    user, other_user, make_run, browser_headers
):
    from evaluations.runs import lifecycle

    mine = await database_sync_to_async(make_run)(user)
    theirs = await database_sync_to_async(make_run)(other_user)
    comm = communicator("/ws/runs/", browser_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    assert await comm.receive_nothing(timeout=0.2)

    # Theirs first: had it been delivered, it would arrive before ours.
    assert await database_sync_to_async(lifecycle.run_claim)(run_id=theirs.pk)
    assert await database_sync_to_async(lifecycle.run_claim)(run_id=mine.pk)
    message = await receive(comm)
    assert message["type"] == "status" and message["id"] == mine.pk and message["status"] == "running"

    assert await database_sync_to_async(lifecycle.run_fail)(run_id=theirs.pk, reason="sandbox_error", detail="x")
    assert await database_sync_to_async(lifecycle.run_fail)(run_id=mine.pk, reason="sandbox_error", detail="x")
    message = await receive(comm)
    assert message["id"] == mine.pk and message["status"] == "error" and message["reason"] == "sandbox_error"
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()


async def test_a_new_run_appears_queued_on_the_owners_open_run_list(user, browser_headers, no_worker):
    from evaluations.runs import services

    comm = communicator("/ws/runs/", browser_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]

    run = await database_sync_to_async(services.submission_submit)(
        owner=user, data=services.SubmissionInput.from_mapping({"code": "print(1)"})
    )

    message = await receive(comm)
    assert (message["type"], message["id"], message["status"]) == ("status", run.pk, "queued")
    await comm.disconnect()


async def test_a_run_list_gets_the_end_of_a_run_whose_live_message_was_lost(
    user, make_run, browser_headers, monkeypatch
):
    from django.utils import timezone

    from evaluations.live import consumers
    from evaluations.models import Run

    monkeypatch.setattr(consumers, "REJOIN_SECONDS", 0.2)
    run = await database_sync_to_async(make_run)(user, status="running", started_at=timezone.now())
    comm = communicator("/ws/runs/", browser_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    first = await receive(comm)  # the first pass: what the socket has not sent yet
    assert (first["id"], first["status"]) == (run.pk, "running")

    # Ended with no live message at all, as when Redis loses it.
    await database_sync_to_async(Run.objects.filter(pk=run.pk).update)(
        status="succeeded", exit_code=0, finished_at=timezone.now()
    )

    message = await receive(comm)
    assert (message["type"], message["id"], message["status"], message["exit_code"]) == (
        "status",
        run.pk,
        "succeeded",
        0,
    )
    assert await comm.receive_nothing(timeout=0.6)  # said once
    # The live message, late: the list has said it already.
    await in_thread(publish_list_status, run.pk, user.pk)
    assert await comm.receive_nothing(timeout=0.6)
    await comm.disconnect()


def publish_list_status(run_id: int, owner_id: int) -> None:
    from evaluations.live.publisher import publish_status
    from evaluations.models import Run
    from evaluations.runs.selectors import run_status_payload

    run = Run.objects.get(pk=run_id)
    publish_status(run_id=run_id, owner_id=owner_id, payload=run_status_payload(run=run))


async def test_the_run_list_socket_needs_authentication(browser_headers):
    assert await close_code("/ws/runs/", [(b"origin", ORIGIN)]) == 4401
    assert await close_code("/ws/runs/", [(b"authorization", b"Token nope")]) == 4401
    assert await close_code("/ws/runs/", [browser_headers[0], (b"origin", b"http://evil.example")]) == 4403


async def test_frames_sent_by_the_client_are_ignored(token_headers, running_run):
    comm = communicator(f"/ws/runs/{running_run.pk}/", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    assert (await receive(comm))["type"] == "status"
    await comm.send_to(text_data="{not json")
    await comm.send_to(bytes_data=b"\x00\xff")
    await comm.send_json_to({"type": "cancel"})
    assert await comm.receive_nothing(timeout=0.3)
    await comm.disconnect()


async def test_a_socket_whose_group_memberships_redis_forgot_catches_up_and_gets_the_end(
    token_headers, running_run, channel_layer_of_its_own, monkeypatch
):
    import redis
    from django.conf import settings

    from evaluations.live import consumers
    from evaluations.live.publisher import RunPublisher
    from evaluations.runs import lifecycle

    monkeypatch.setattr(consumers, "REJOIN_SECONDS", 0.2)
    run = running_run
    publisher = await in_thread(RunPublisher, run)
    await in_thread(publisher.output, "stdout", 0, b"before\n")
    comm = communicator(f"/ws/runs/{run.pk}/", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    streams = Reassembly()
    await follow(comm, lambda s, o: s.has({"stdout": 7}) and o, streams)

    # As a Redis restart without persistence does: every group membership is gone.
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=channel_layer_of_its_own + "*group:*"))
    assert keys, "no group key found: the test would prove nothing"
    client.delete(*keys)
    client.close()
    await in_thread(publisher.output, "stdout", 7, b"while forgotten\n")
    await in_thread(publisher.close)
    await database_sync_to_async(lifecycle.run_fail)(run_id=run.pk, reason="sandbox_error", detail="test")

    others = await follow(comm, lambda s, o: any(m.get("status") == "error" for m in o), streams)
    assert bytes(streams.data["stdout"]) == b"before\nwhile forgotten\n"  # once each, in order
    assert [m["status"] for m in others if m["type"] == "status"] == ["error"]
    assert await comm.receive_nothing(timeout=0.6)  # the end is said once
    await comm.disconnect()


async def test_a_stale_status_that_arrives_late_is_not_sent(token_headers, running_run):
    from evaluations.live import publisher
    from evaluations.live.groups import run_group
    from evaluations.live.protocol import status_event
    from evaluations.runs import lifecycle

    run = running_run
    comm = communicator(f"/ws/runs/{run.pk}/", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    assert (await receive(comm))["status"] == "running"

    # A queue-position update sent by another worker before this run started, arriving now.
    stale = {"type": "status", "status": "queued", "queue_position": 3}
    await in_thread(publisher.send, [(run_group(run.pk), status_event(stale))])
    await database_sync_to_async(lifecycle.run_fail)(run_id=run.pk, reason="sandbox_error", detail="x")
    await in_thread(publisher.send, [(run_group(run.pk), status_event(stale))])

    assert (await receive(comm))["status"] == "error"
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()


async def test_output_whose_live_messages_were_lost_comes_before_the_end(token_headers, running_run):
    from evaluations.runs import lifecycle
    from evaluations.runs.logstore import RunLogWriter

    run = running_run
    comm = communicator(f"/ws/runs/{run.pk}/", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    assert (await receive(comm))["status"] == "running"

    def stored_but_never_published() -> None:
        writer = RunLogWriter(run)
        writer.append("stdout", 0, b"lost on the way\n")
        writer.close()

    await in_thread(stored_but_never_published)
    await database_sync_to_async(lifecycle.run_fail)(run_id=run.pk, reason="sandbox_error", detail="x")

    streams = Reassembly()
    others = await follow(comm, lambda s, o: bool(o), streams)
    assert bytes(streams.data["stdout"]) == b"lost on the way\n"
    assert [m["status"] for m in others] == ["error"]
    await comm.disconnect()


# -- batching live output per client ------------------------------------------------------------------


def publish_each_chunk_alone(run, chunks: list[tuple[str, bytes]]) -> dict[str, bytes]:
    """A worker whose every small line became a layer message of its own: store, then publish each
    (in one hop, so they reach the consumer back to back, as a backlog does)."""
    from evaluations.live import publisher
    from evaluations.live.groups import run_group
    from evaluations.live.protocol import output_event, output_message
    from evaluations.runs.logstore import RunLogWriter

    writer = RunLogWriter(run)
    written = {"stdout": bytearray(), "stderr": bytearray()}
    events = []
    for stream, data in chunks:
        writer.append(stream, len(written[stream]), data)
        events.append((run_group(run.pk), output_event(output_message(stream, len(written[stream]), data))))
        written[stream] += data
    writer.close()
    publisher.send(events)
    return {s: bytes(b) for s, b in written.items()}


async def test_a_burst_of_small_chunks_reaches_the_client_in_few_frames_byte_exact(token_headers, running_run):
    from evaluations.live.consumers import OUTPUT_FRAME_INTERVAL
    from evaluations.runs import lifecycle

    comm = communicator(f"/ws/runs/{running_run.pk}/", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    assert (await receive(comm))["status"] == "running"
    chunks = [("stderr" if i % 3 == 0 else "stdout", f"line {i}\n".encode()) for i in range(600)]

    started = time.monotonic()
    written = await in_thread(publish_each_chunk_alone, running_run, chunks)
    await database_sync_to_async(lifecycle.run_fail)(run_id=running_run.pk, reason="sandbox_error", detail="x")
    frames = {"stdout": 0, "stderr": 0}
    streams = Reassembly()
    while True:
        message = await receive(comm)
        if message["type"] != "output":
            break
        streams.add(message)
        frames[message["stream"]] += 1
    elapsed = time.monotonic() - started

    # The terminal status comes after every byte, each exactly once, at the right offsets.
    assert message["type"] == "status" and message["status"] == "error"
    assert {s: bytes(b) for s, b in streams.data.items()} == written
    # At most one frame per stream per interval (plus the first, sent at once), not one per chunk.
    for stream, count in frames.items():
        assert count <= elapsed / OUTPUT_FRAME_INTERVAL + 2, f"{count} {stream} frames in {elapsed:.3f} s"
    assert await comm.receive_nothing(timeout=0.3)
    await comm.disconnect()


async def test_a_chunk_after_a_quiet_spell_goes_at_once_and_the_next_ones_wait_together(
    token_headers, running_run, monkeypatch
):
    from evaluations.live import consumers

    monkeypatch.setattr(consumers, "OUTPUT_FRAME_INTERVAL", 1.5)
    monkeypatch.setattr(consumers, "OUTPUT_HOLD_LIMIT", 2.0)
    comm = communicator(f"/ws/runs/{running_run.pk}/", token_headers)
    assert (await comm.connect(timeout=RECEIVE_TIMEOUT))[0]
    assert (await receive(comm))["status"] == "running"

    sent = time.monotonic()
    await in_thread(publish_each_chunk_alone, running_run, [("stdout", b"first\n")])
    first = await receive(comm, timeout=1.0)  # not held for the interval
    assert (first["offset"], base64.b64decode(first["data"])) == (0, b"first\n")
    assert time.monotonic() - sent < 1.0

    def two_more() -> None:
        from evaluations.live import publisher
        from evaluations.live.groups import run_group
        from evaluations.live.protocol import output_event, output_message
        from evaluations.runs.logstore import RunLogWriter

        writer = RunLogWriter(running_run)
        writer.append("stdout", 6, b"second\nthird\n")
        writer.close()
        publisher.send(
            [
                (run_group(running_run.pk), output_event(output_message("stdout", 6, b"second\n"))),
                (run_group(running_run.pk), output_event(output_message("stdout", 13, b"third\n"))),
            ]
        )

    await in_thread(two_more)
    assert await comm.receive_nothing(timeout=1.0)  # within the interval of the first frame: held
    together = await receive(comm, timeout=3.0)  # at the latest at the hold limit
    assert (together["offset"], base64.b64decode(together["data"])) == (6, b"second\nthird\n")
    await comm.disconnect()
