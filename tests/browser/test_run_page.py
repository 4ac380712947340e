"""The run page in Chromium against the real stack: daphne, a Celery worker, runsc sandboxes.

Runs are submitted through the browser form, as a researcher does, and watched live: output over
the websocket while the run is still running, plots, cancel, hostile output, reload mid-run, a
dropped socket, and big outputs."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.browser.conftest import api_run, submit_over_api

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TERMINAL = ("succeeded", "failed", "cancelled", "error")
BADGE = "#run-status .badge"

# A line a second, flushed, so the first one reaches the page long before the run ends.
TICKING = "import time\nfor i in range({n}):\n    print(f'tick {{i}}', flush=True)\n    time.sleep({every})\n"


def fill_code(page, code: str) -> None:
    """Put `code` in the form's code editor, as pasting it would (the textarea behind it follows)."""
    page.wait_for_function("() => window.crucibleEditor !== undefined")
    page.evaluate(
        "(code) => { const v = window.crucibleEditor;"
        " v.dispatch({changes: {from: 0, to: v.state.doc.length, insert: code}}); }",
        code,
    )


def submit(logged_in, code: str, *, name: str = "browser test", wall_seconds: float | None = 30) -> int:
    """Fill in and send the New run form; return the new run's id once its page has loaded.
    The wall limit is above the default 10 s: these machines are sometimes busy, and a timeout
    would fail a test that is about the page, not the limit."""
    page = logged_in.page
    page.goto(logged_in.url("/submit/"))
    page.fill("#id_name", name)
    fill_code(page, code)
    if wall_seconds is not None:
        page.fill("#id_wall_seconds", str(wall_seconds))
    page.click("form.submit-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/runs/\d+/$"))
    page.wait_for_function("() => window.crucibleRun !== undefined")
    return int(re.search(r"/runs/(\d+)/$", page.url).group(1))


def status(page) -> str:
    return page.get_attribute(BADGE, "data-status")


def wait_for_status(page, *statuses: str, timeout: float = 30_000) -> str:
    page.wait_for_function(
        "(wanted) => wanted.includes(document.querySelector('#run-status .badge').dataset.status)",
        arg=list(statuses),
        timeout=timeout,
    )
    return status(page)


def wait_for_line(page, text: str, timeout: float = 20_000) -> None:
    """Until a line with exactly this text is in the log (the buffer, not only the drawn rows)."""
    page.wait_for_function(
        "(text) => window.crucibleRun.buffer.lines.some((line) => line.t === text)", arg=text, timeout=timeout
    )


def log_lines(page) -> list[str]:
    return page.evaluate("window.crucibleRun.buffer.lines.map((line) => line.t)")


def drawn_rows(page) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('#log .log-row')].map((row) => row.textContent)")


def test_the_first_line_appears_while_the_run_is_still_running(logged_in) -> None:
    page = logged_in.page
    submit(logged_in, TICKING.format(n=8, every=1), name="ticking")

    wait_for_line(page, "tick 0")

    assert status(page) == "running"
    assert "tick 7" not in log_lines(page)
    assert "tick 0" in drawn_rows(page)
    assert page.inner_text("#connection") == "live"
    # The elapsed time ticks while running.
    first = page.inner_text("#elapsed")
    page.wait_for_timeout(700)
    assert page.inner_text("#elapsed") != first
    assert "(running)" in page.inner_text("#elapsed")

    assert wait_for_status(page, *TERMINAL) == "succeeded"
    assert log_lines(page) == [f"tick {i}" for i in range(8)]
    assert page.inner_text("#exit-code") == "0"
    assert page.is_hidden("#cancel-form")


def test_elapsed_time_is_counted_on_the_servers_clock_when_the_browsers_is_an_hour_ahead(logged_in) -> None:
    page = logged_in.page
    page.add_init_script("(() => { const now = Date.now; Date.now = () => now() + 3600 * 1000; })()")
    submit(logged_in, TICKING.format(n=4, every=1), name="wrong clock")

    wait_for_line(page, "tick 1")

    elapsed = page.inner_text("#elapsed")
    assert elapsed.endswith(" s (running)") and "min" not in elapsed and " h " not in elapsed, elapsed
    assert float(elapsed.split()[0]) < 30, elapsed
    page.goto(logged_in.url("/runs/"))
    page.wait_for_function("() => window.crucibleRuns !== undefined")
    cell = page.inner_text("tr[data-run-id] .time-cell")  # the newest run, still running or just done
    assert "h" not in cell and "min" not in cell, cell


def test_cpu_and_memory_plots_fill_in_while_the_run_runs(logged_in) -> None:
    page = logged_in.page
    # Busy, and holding up to 50 MB: a faster sandbox must not take it over the memory limit.
    busy = (
        "import time\nend = time.time() + 4\nx = []\nwhile time.time() < end:\n"
        "    x.append(bytes(1000))\n    if len(x) > 50_000:\n        x.clear()\n"
    )
    submit(logged_in, busy, name="busy")

    page.wait_for_function("() => window.crucibleRun.plots.sampleCount >= 3", timeout=20_000)

    assert status(page) == "running"
    plot = page.evaluate(
        """() => {
          const p = window.crucibleRun.plots;
          const present = (column) => column.filter((v) => v != null);
          return { t: p.cpuPlot.data[0], cpu: present(p.cpuPlot.data[1]), memory: present(p.memoryPlot.data[1]),
                   lines: p.linesDrawn };
        }"""
    )
    assert len(plot["t"]) >= 3 and plot["t"] == sorted(plot["t"])
    assert max(plot["cpu"]) > 10  # a busy loop shows up as CPU
    assert min(plot["memory"]) > 1  # the Python process is in there
    assert plot["lines"] == [256, 256 + 32]  # the default memory limit, and the room gVisor has beyond it
    assert page.locator("#cpu-plot canvas").count() == 1
    assert page.locator("#memory-plot canvas").count() == 1
    assert "CPU" in page.inner_text("#metrics-readout")
    # At this width the plots sit beside the log, and stay in view while the page scrolls.
    log, plots = page.locator("#log").bounding_box(), page.locator(".metrics-section").bounding_box()
    assert plots["x"] >= log["x"] + log["width"] and plots["y"] < log["y"] + log["height"]
    page.mouse.wheel(0, 600)
    page.wait_for_timeout(200)
    assert 0 <= page.locator("#memory-plot").bounding_box()["y"] < 900
    wait_for_status(page, *TERMINAL)


def test_a_run_too_short_for_samples_still_gets_plots_and_its_limit_line(logged_in) -> None:
    page = logged_in.page
    submit(logged_in, "print('quick')\n", name="quick")
    assert wait_for_status(page, *TERMINAL) == "succeeded"

    page.wait_for_function("() => window.crucibleRun.plots.memoryPlot.data[0].length >= 2")
    plot = page.evaluate(
        """() => { const p = window.crucibleRun.plots;
                   return { t: p.memoryPlot.data[0], memory: p.memoryPlot.data[1], cpu: p.cpuPlot.data[1],
                            lines: p.linesDrawn }; }"""
    )
    assert plot["t"][0] == 0 and plot["t"][-1] > 0
    assert all(m is not None and m > 1 for m in plot["memory"]) and all(c is not None for c in plot["cpu"])
    assert plot["lines"] == [256, 256 + 32]
    assert "the whole run's figures" in page.inner_text("#metrics-readout")


def test_a_run_over_its_memory_limit_reads_in_words_and_mib(logged_in) -> None:
    page = logged_in.page
    page.goto(logged_in.url("/submit/"))
    fill_code(page, "x = bytearray(200 * 1024 * 1024)\n")
    page.fill("#id_memory_mb", "64")
    page.click("form.submit-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/runs/\d+/$"))

    assert wait_for_status(page, *TERMINAL) == "failed"
    assert page.inner_text("#run-status .reason") == "Out of memory"
    assert page.inner_text("#run-detail-text") == "memory limit of 64 MiB exceeded"
    page.wait_for_selector("#usage-row:not([hidden])")
    assert "64 MiB peak memory: the limit, where the program was stopped" in page.inner_text("#usage")
    assert "64 MiB memory" in page.inner_text("#limits")

    page.reload()  # the server's rendering reads the same as the live one
    assert page.inner_text("#run-status .reason") == "Out of memory"
    assert page.inner_text("#run-detail-text") == "memory limit of 64 MiB exceeded"
    assert "64 MiB peak memory: the limit" in page.inner_text("#usage")


LOGGED = """import sys, time
time.sleep(2)
for i in range(1, 301):
    print(f"line {i}" + (" needle" if i in (40, 250) else ""), flush=True)
print("oops", file=sys.stderr, flush=True)
sys.stdout.write("x" * 1100000)
"""


def test_the_log_can_be_searched_linked_to_by_line_and_downloaded_whole(logged_in) -> None:
    page = logged_in.page
    submit(logged_in, LOGGED, name="logged")
    wait_for_status(page, "running", *TERMINAL)
    if status(page) == "running":  # it sleeps before printing: the pane says what it waits for
        assert page.inner_text("#log-empty") == "waiting for output…"
    wait_for_status(page, *TERMINAL)
    page.wait_for_selector("#log-empty", state="hidden")

    page.fill("#log-search-input", "needle")
    page.wait_for_function("() => document.getElementById('search-count').textContent === '1 of 2'")
    page.click("#search-next")
    assert page.inner_text("#search-count") == "2 of 2"
    current = page.locator("#log mark.log-current").first
    assert current.evaluate("(m) => m.closest('.log-row').textContent") == "line 250 needle"

    # The stdout cap (1 MiB) cut the run's output: the log ends with a marker saying so.
    page.wait_for_function("() => window.crucibleRun.buffer.lines.at(-1).m === true")
    page.click("#jump-to-bottom")  # searching stopped following the end
    last = page.locator("#log .log-line:last-child .log-row")
    assert "stdout truncated" in last.inner_text() and "log-marker" in last.get_attribute("class")

    run_url = page.url.split("#")[0]
    page.goto("about:blank")
    page.goto(run_url + "#L120")  # a link to a line, opened afresh
    page.wait_for_function("() => document.querySelector('#log .log-target .log-row')?.textContent === 'line 120'")
    page.click("#log .log-line:has(.log-row:text-is('line 121')) .log-ln")
    page.wait_for_function("() => location.hash === '#L121'")
    page.wait_for_function("() => document.querySelector('#log .log-target .log-row')?.textContent === 'line 121'")

    # Times since the start, stored with the output: the lines came after a 2 s sleep.
    page.check("#show-times")
    page.wait_for_selector("#log .log-time:not(:empty)")
    times = page.evaluate("[...document.querySelectorAll('#log .log-time')].map((e) => e.textContent).filter(Boolean)")
    assert all(re.fullmatch(r"\+\d+\.\d\d", t) for t in times) and float(times[0][1:]) >= 1.5, times
    assert page.inner_text("#log .log-target .log-row") == "line 121"  # the text itself is unchanged

    body = page.request.get(logged_in.url(page.get_attribute("#download-combined", "href"))).body()
    assert body.index(b"line 300\n") < body.index(b"oops\n") < body.index(b"xxxx")
    assert body.rstrip().endswith(b"kept]")


def test_cancel_stops_a_running_script_and_keeps_its_output(logged_in) -> None:
    page = logged_in.page
    submit(logged_in, "import time\nprint('started', flush=True)\ntime.sleep(60)\n", name="sleeper")
    wait_for_line(page, "started")
    assert status(page) == "running"
    url = page.url

    page.click("#cancel-form button")
    clicked = time.monotonic()

    assert wait_for_status(page, *TERMINAL, timeout=5_000) == "cancelled"
    print(f"\ncancelled {time.monotonic() - clicked:.2f} s after the click")
    assert page.url == url  # cancelled in place, without a page load
    assert page.is_hidden("#cancel-form")
    assert log_lines(page) == ["started"]
    assert page.locator("#run-status .reason").count() == 0  # not "cancelled cancelled"


def test_hostile_output_is_shown_as_text_and_runs_nothing(logged_in) -> None:
    page = logged_in.page
    page.add_init_script("window.pwned = 0")
    code = (
        "import sys\n"
        "print('<script>window.pwned = 1; alert(1)</script>')\n"
        "print('<img src=x onerror=\"window.pwned = 2; alert(2)\">')\n"
        "sys.stderr.write('</div><svg onload=alert(3)><iframe src=javascript:alert(4)>\\n')\n"
        "print('\\x1b[31mred\\x1b[0m nul:\\x00 bad:', flush=True)\n"
        "sys.stdout.buffer.write(b'\\xff\\xfe<b>bytes</b>\\n')\n"
        "sys.stdout.buffer.write('invoice_\\u202egnp.exe \\u2066ok\\u2069 zero\\u200bwidth\\n'.encode())\n"
    )
    submit(logged_in, code, name="<b>hostile</b>")
    assert wait_for_status(page, *TERMINAL) == "succeeded"
    page.wait_for_timeout(500)  # an injected <img> or <svg> would have fired by now

    lines = log_lines(page)
    assert "<script>window.pwned = 1; alert(1)</script>" in lines
    assert '<img src=x onerror="window.pwned = 2; alert(2)">' in lines
    assert "</div><svg onload=alert(3)><iframe src=javascript:alert(4)>" in lines
    assert r"red nul:\x00 bad:" in lines
    assert "\ufffd\ufffd<b>bytes</b>" in lines
    assert r"invoice_\u202egnp.exe \u2066ok\u2069 zero\u200bwidth" in lines  # no reordering, nothing hidden
    assert not {"\u202e", "\u2066", "\u200b"} & set(page.inner_text("#log"))
    injected = "#log script, #log img, #log svg, #log iframe, #log b"
    assert page.evaluate("(sel) => document.querySelectorAll(sel).length", injected) == 0
    assert page.evaluate("window.pwned") == 0
    assert logged_in.watch.dialogs == []
    assert page.locator("#log .log-stderr").count() == 1
    assert page.locator("#log span.a-f1", has_text="red").count() == 1
    assert "<b>hostile</b>" in page.inner_text("h1")  # the name too is text


def test_a_reload_mid_run_shows_the_earlier_lines_exactly_once(logged_in) -> None:
    page = logged_in.page
    submit(logged_in, TICKING.format(n=10, every=0.4), name="reloaded")
    wait_for_line(page, "tick 3")
    assert status(page) == "running"

    page.reload()
    page.wait_for_function("() => window.crucibleRun !== undefined")
    wait_for_line(page, "tick 5")
    assert status(page) == "running"

    assert wait_for_status(page, *TERMINAL) == "succeeded"
    assert log_lines(page) == [f"tick {i}" for i in range(10)]
    assert drawn_rows(page) == [f"tick {i}" for i in range(10)]


def test_a_dropped_websocket_reconnects_from_its_offsets(logged_in) -> None:
    page = logged_in.page
    submit(logged_in, TICKING.format(n=12, every=0.3), name="dropped")
    wait_for_line(page, "tick 2")

    # As if the network dropped: close the socket under the page (not through LiveSocket.stop).
    page.evaluate("window.crucibleRun.socket.ws.close(4000)")
    page.wait_for_function("() => document.getElementById('connection').dataset.state !== 'live'", timeout=2_000)
    page.wait_for_function("() => document.getElementById('connection').dataset.state === 'live'", timeout=8_000)

    assert wait_for_status(page, *TERMINAL) == "succeeded"
    assert log_lines(page) == [f"tick {i}" for i in range(12)]
    assert page.evaluate("window.crucibleRun.socket.attempts") >= 2


def _measure_page(page) -> dict:
    started = time.perf_counter()
    page.evaluate("1")
    round_trip = time.perf_counter() - started
    return {
        "round_trip_ms": round(round_trip * 1000, 1),
        "log_nodes": page.evaluate("document.querySelectorAll('#log *').length"),
        "page_nodes": page.evaluate("document.getElementsByTagName('*').length"),
        "longest_task_ms": page.evaluate("Math.max(0, ...window.__longTasks)"),
    }


LONG_TASKS = """
  window.__longTasks = [];
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longTasks.push(e.duration); })
    .observe({ type: "longtask", buffered: true });
"""


def test_100000_lines_render_and_the_page_stays_responsive(logged_in) -> None:
    page = logged_in.page
    page.add_init_script(LONG_TASKS)
    # ~590 KB on stdout: under the 1 MiB per-stream limit.
    # A generous wall limit: on a busy 2-core machine printing 100k lines can take over the default 10 s.
    submit(logged_in, "for i in range(100000):\n    print(i)\n", name="100k lines", wall_seconds=60)
    assert wait_for_status(page, *TERMINAL, timeout=90_000) == "succeeded", page.inner_text("#run-detail-text")
    page.wait_for_function("() => window.crucibleRun.buffer.lines.length === 100000")

    measured = _measure_page(page)
    print(f"\n100k lines on the run page: {measured}")
    assert measured["round_trip_ms"] < 1000
    assert measured["log_nodes"] < 300
    assert measured["longest_task_ms"] < 1000
    page.wait_for_function(
        "() => document.querySelector('#log .log-line:last-child .log-row')?.textContent === '99999'"
    )

    page.evaluate("document.getElementById('log').scrollTop = 0")
    page.wait_for_function("() => document.querySelector('#log .log-row')?.textContent === '0'")
    assert page.is_visible("#jump-to-bottom")

    # A late joiner: the whole log replayed over the websocket into a fresh page.
    page.reload()
    page.wait_for_function(
        "() => window.crucibleRun?.buffer.lines.length === 100000"
        " && document.querySelector('#log .log-line:last-child .log-row')?.textContent === '99999'"
    )
    print(f"100k lines replayed and drawn {page.evaluate('performance.now()'):.0f} ms after the reload started")


def test_a_1_mib_line_renders_and_the_page_stays_responsive(logged_in) -> None:
    page = logged_in.page
    page.add_init_script(LONG_TASKS)
    # One line of exactly 1 MiB with its newline (the whole stdout limit), written in 4 KiB pieces.
    code = "import sys\nfor _ in range(255):\n    sys.stdout.write('y' * 4096)\nsys.stdout.write('y' * 4095 + '\\n')\n"
    submit(logged_in, code, name="1 MiB line", wall_seconds=60)
    assert wait_for_status(page, *TERMINAL, timeout=90_000) == "succeeded", page.inner_text("#run-detail-text")
    page.wait_for_function("() => window.crucibleRun.state.have[0] === 1024 * 1024")

    measured = _measure_page(page)
    cols = page.evaluate("window.crucibleRun.view.cols")
    print(f"\n1 MiB line on the run page: {measured}, {cols} columns")
    assert page.evaluate("window.crucibleRun.buffer.lines.map((l) => l.t.length)") == [1024 * 1024 - 1]
    assert measured["round_trip_ms"] < 1000
    assert measured["log_nodes"] < 300
    assert measured["longest_task_ms"] < 1000
    assert max(len(r) for r in drawn_rows(page)) == cols

    page.reload()
    page.wait_for_function(
        "() => window.crucibleRun?.state.have[0] === 1024 * 1024"
        " && document.querySelectorAll('#log .log-row').length > 10"
    )
    print(f"1 MiB line replayed and drawn {page.evaluate('performance.now()'):.0f} ms after the reload started")


def test_re_run_starts_a_new_run_of_the_same_code(logged_in) -> None:
    page = logged_in.page
    first = submit(logged_in, "print('again and again')\n", name="repeat me")
    assert wait_for_status(page, *TERMINAL) == "succeeded"

    page.click("#rerun-form button")
    page.wait_for_url(lambda url: url.rstrip("/").split("/")[-1] != str(first))
    page.wait_for_function("() => window.crucibleRun !== undefined")

    assert page.evaluate("window.crucibleRun.page.run_id") > first
    assert wait_for_status(page, *TERMINAL) == "succeeded"
    wait_for_line(page, "again and again")
    assert "repeat me" in page.inner_text("h1")


def test_a_queued_run_shows_its_place_in_the_queue_and_can_be_cancelled_there(logged_in, stack, e2e_user) -> None:
    page = logged_in.page
    # The stack's worker runs two sandboxes at once: two sleepers keep it busy.
    sleepers = [
        submit_over_api(stack, e2e_user, "import time\ntime.sleep(60)\n", f"sleeper {i}", wall_seconds=90)
        for i in range(2)
    ]
    try:
        deadline = time.monotonic() + 20
        while any(api_run(stack, e2e_user, s)["status"] != "running" for s in sleepers):
            assert time.monotonic() < deadline, "the sleepers did not start"
            time.sleep(0.2)

        # An open run list in another tab shows the new run while it is still queued.
        run_list = page.context.new_page()
        run_list.goto(logged_in.url("/runs/"))
        run_list.wait_for_function("() => document.getElementById('connection').dataset.state === 'live'")

        waiting = submit(logged_in, "print('my turn')\n", name="waiting")

        run_list.wait_for_selector(f"tr[data-run-id='{waiting}'] .badge[data-status='queued']", timeout=5_000)
        run_list.close()
        assert status(page) == "queued"
        page.wait_for_function("() => document.getElementById('queue-info').textContent.includes('next in line')")
        assert page.inner_text("#elapsed") == "not started yet"
        page.click("#cancel-form button")
        assert wait_for_status(page, *TERMINAL, timeout=5_000) == "cancelled"
        assert log_lines(page) == []
        page.wait_for_selector("#log-empty", state="visible")
    finally:
        for s in sleepers:
            requests.post(stack.url(f"/api/v1/runs/{s}/cancel/"), headers=e2e_user.api_headers, timeout=10)
