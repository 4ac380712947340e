"""The log pane on its own (tests/browser/fixtures/logview.html): bytes in, rows out.

No server: the page is served from the repository on a fake origin and fed bytes directly, so
these pin down decoding, escapes, windowing and autoscroll quickly and exactly. The same modules
run on the real run page (test_run_page.py)."""

from __future__ import annotations

import time

import pytest

from tests.browser.conftest import FIXTURE_ORIGIN

MiB = 1024 * 1024


@pytest.fixture
def pane(fixture_page):
    page, watch = fixture_page
    page.goto(f"{FIXTURE_ORIGIN}/logview.html")
    page.wait_for_function("() => window.fixtureReady === true")
    return page


def write(page, stream: int, data: bytes) -> None:
    page.evaluate("([s, bytes]) => fixture.write(s, new Uint8Array(bytes))", [stream, list(data)])


def rows(page) -> list[dict]:
    return page.evaluate("fixture.rows()")


def texts(page) -> list[str]:
    return [r["text"] for r in rows(page)]


def test_a_character_split_across_chunks_decodes_as_one(pane) -> None:
    euro, snake = "€".encode(), "🐍".encode()
    write(pane, 0, b"price: " + euro[:1])
    write(pane, 0, euro[1:] + b" " + snake[:3])
    write(pane, 0, snake[3:] + b"\n")

    assert texts(pane) == ["price: € 🐍"]


def test_invalid_utf8_nul_and_control_characters_show_visibly(pane) -> None:
    write(pane, 0, b"bad:\xff\xfe nul:\x00 bel:\x07 del:\x7f c1:\xc2\x9b end\n")
    pane.evaluate("fixture.end()")

    [row] = rows(pane)
    assert row["text"] == "bad:\ufffd\ufffd nul:\\x00 bel:\\x07 del:\\x7f c1:\\x9b end"
    marked = {(s["text"], s["cls"]) for s in row["spans"]}
    assert ("\ufffd\ufffd", "a-bad") in marked
    assert (r"\x00", "a-ctl") in marked and (r"\x07", "a-ctl") in marked


def test_bidirectional_and_zero_width_characters_show_as_visible_escapes(pane) -> None:
    # "\u202e" (right-to-left override) would make "txt.exe" read as "exe.txt", and so on.
    hidden = "\u202e \u2066 \u2069 \u200b \u200d \u200f \u061c \u2060 \ufeff \u2028"
    write(pane, 0, f"file: {hidden} txt.exe\n".encode())

    [row] = rows(pane)
    escapes = r"\u202e \u2066 \u2069 \u200b \u200d \u200f \u061c \u2060 \ufeff \u2028"
    assert row["text"] == f"file: {escapes} txt.exe"
    assert not set(hidden.replace(" ", "")) & set(pane.inner_text("body"))  # none reaches the page as itself
    assert {s["text"] for s in row["spans"] if s["cls"] == "a-ctl"} == set(escapes.split())


def test_a_truncated_character_at_the_very_end_shows_as_a_replacement(pane) -> None:
    write(pane, 0, b"cut " + "€".encode()[:2])
    assert texts(pane) == ["cut "]  # more bytes may still come

    pane.evaluate("fixture.end()")

    assert texts(pane) == ["cut \ufffd"]


def test_ansi_colours_become_styles_and_other_escapes_vanish(pane) -> None:
    write(pane, 0, b"\x1b]0;window title\x07\x1b[2K\x1b[?25lplain \x1b[1;3")  # SGR cut mid-sequence
    write(pane, 0, b"1mbold red\x1b[0m \x1b[38;2;1;2;3mtrue\x1b[m done\n")

    [row] = rows(pane)
    assert row["text"] == "plain bold red true done"
    spans = {s["text"]: s for s in row["spans"]}
    assert set(spans["bold red"]["cls"].split()) == {"a-bo", "a-f1"}
    assert spans["true"]["color"] == "rgb(1, 2, 3)"
    assert "done" not in spans  # reset: plain text again


def test_carriage_returns_redraw_the_line_like_a_terminal(pane) -> None:
    write(pane, 1, b"progress 10%\rprogress 50%\r")
    write(pane, 1, b"progress 100%\r")
    write(pane, 1, b"\ndone\r\n")

    assert [(r["text"], r["stderr"]) for r in rows(pane)] == [("progress 100%", True), ("done", True)]


def test_stdout_and_stderr_lines_interleave_and_are_told_apart(pane) -> None:
    write(pane, 0, b"out 1, ")
    write(pane, 1, b"err 1\n")
    write(pane, 0, b"still out 1\nout 2\n")

    assert [(r["text"], r["stderr"]) for r in rows(pane)] == [
        ("out 1, still out 1", False),
        ("err 1", True),
        ("out 2", False),
    ]


def test_markup_in_output_stays_text(pane) -> None:
    pane.evaluate("window.pwned = 0")
    hostile = (
        b'<script>window.pwned = 1</script>\n<img src=x onerror="window.pwned = 2">\n</div><svg onload=alert(3)>\n'
    )
    write(pane, 0, hostile)
    write(pane, 1, hostile)
    pane.wait_for_timeout(300)  # an injected <img> would have failed to load and fired by now

    assert texts(pane)[:3] == [
        "<script>window.pwned = 1</script>",
        '<img src=x onerror="window.pwned = 2">',
        "</div><svg onload=alert(3)>",
    ]
    assert pane.evaluate("document.querySelectorAll('#log script, #log img, #log svg').length") == 0
    assert pane.evaluate("window.pwned") == 0


def test_100000_lines_keep_the_dom_small_and_the_page_responsive(pane) -> None:
    result = pane.evaluate(
        """() => {
          let text = "";
          for (let i = 0; i < 100000; i++) text += `line ${i}\\n`;
          const bytes = new TextEncoder().encode(text);
          const t0 = performance.now();
          for (let o = 0; o < bytes.length; o += 65536) fixture.buffer.write(0, bytes.subarray(o, o + 65536));
          const t1 = performance.now();
          fixture.view.render();
          const t2 = performance.now();
          return { parseMs: t1 - t0, renderMs: t2 - t1, lines: fixture.buffer.lines.length,
                   nodes: document.querySelectorAll("#log *").length };
        }"""
    )
    started = time.perf_counter()
    pane.evaluate("1")
    round_trip = time.perf_counter() - started
    print(f"\n100k lines: {result}, round trip {round_trip * 1000:.1f} ms")

    assert result["lines"] == 100_000
    assert result["nodes"] < 300, result
    assert result["parseMs"] + result["renderMs"] < 1000, result
    assert round_trip < 1.0
    assert texts(pane)[-1] == "line 99999"  # following the end

    pane.evaluate("document.getElementById('log').scrollTop = 0")
    pane.wait_for_function("() => document.querySelector('#log .log-row')?.textContent === 'line 0'")


def test_a_1_mib_line_is_wrapped_into_rows_and_only_visible_ones_are_drawn(pane) -> None:
    result = pane.evaluate(
        """() => {
          const bytes = new Uint8Array(1024 * 1024).fill(0x61);
          const t0 = performance.now();
          for (let o = 0; o < bytes.length; o += 65536) fixture.buffer.write(0, bytes.subarray(o, o + 65536));
          fixture.buffer.write(0, new Uint8Array([0x0a]));
          fixture.view.render();
          const ms = performance.now() - t0;
          const drawn = [...document.querySelectorAll("#log .log-row")];
          return { ms, cols: fixture.view.cols, rows: fixture.view.totalRows, drawn: drawn.length,
                   longest: Math.max(...drawn.map((r) => r.textContent.length)),
                   nodes: document.querySelectorAll("#log *").length };
        }"""
    )
    print(f"\n1 MiB line: {result}")

    assert result["rows"] == -(-MiB // result["cols"])
    assert result["longest"] <= result["cols"]
    assert result["nodes"] < 300, result
    assert result["ms"] < 1000, result
    # The pane holds no more than about a screenful of the line's text.
    assert pane.evaluate("document.getElementById('log').textContent.length") < 20_000


def test_autoscroll_pauses_when_scrolled_up_and_resumes_at_the_bottom(pane) -> None:
    write(pane, 0, b"".join(b"first %d\n" % i for i in range(200)))
    pane.wait_for_function(
        "() => document.querySelector('#log .log-line:last-child .log-row')?.textContent === 'first 199'"
    )
    assert pane.is_hidden("#jump-to-bottom")

    pane.hover("#log")
    pane.mouse.wheel(0, -2000)  # the user scrolls up to read
    pane.wait_for_selector("#jump-to-bottom", state="visible")
    top_before = pane.evaluate("document.getElementById('log').scrollTop")
    write(pane, 0, b"".join(b"second %d\n" % i for i in range(200)))
    pane.wait_for_timeout(100)
    assert pane.evaluate("document.getElementById('log').scrollTop") == top_before  # not dragged down
    assert "second 199" not in texts(pane)

    pane.click("#jump-to-bottom")
    assert texts(pane)[-1] == "second 199"
    assert pane.is_hidden("#jump-to-bottom")
    write(pane, 0, b"third\n")
    pane.wait_for_function(
        "() => document.querySelector('#log .log-line:last-child .log-row')?.textContent === 'third'"
    )


def test_new_output_does_not_clear_a_selection_in_a_paused_log(pane) -> None:
    write(pane, 0, b"".join(b"line %d\n" % i for i in range(300)))
    pane.hover("#log")
    pane.mouse.wheel(0, -3000)
    pane.wait_for_selector("#jump-to-bottom", state="visible")
    pane.evaluate(
        """() => {
          const row = document.querySelector('#log .log-line:nth-child(12) .log-row');
          getSelection().selectAllChildren(row);
          window.selected = row.textContent;
        }"""
    )

    write(pane, 0, b"".join(b"more %d\n" % i for i in range(100)))
    pane.wait_for_timeout(100)

    assert pane.evaluate("getSelection().toString()") == pane.evaluate("window.selected")


# -- finding things: line numbers, search, markers ------------------------------------------------


def gutters(page) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('#log .log-ln')].map((g) => g.textContent)")


def test_every_line_has_its_number_as_a_link_that_is_not_copied_with_the_text(pane) -> None:
    write(pane, 0, b"alpha\nbeta\n")
    write(pane, 1, b"gamma\n")

    assert texts(pane) == ["alpha", "beta", "gamma"]  # the numbers are not in the rows' text
    assert gutters(pane) == ["1", "2", "3"]
    assert pane.get_attribute("#log .log-line:nth-child(2) .log-ln", "href") == "#L2"
    assert pane.evaluate("getComputedStyle(document.querySelector('#log .log-ln')).userSelect") == "none"
    pane.evaluate("getSelection().selectAllChildren(document.getElementById('log'))")
    assert "1" not in pane.evaluate("getSelection().toString()")


def test_search_covers_the_whole_output_not_only_the_rows_drawn(pane) -> None:
    lines = [f"row {i}" + (" Needle here" if i in (7, 30_000) else "") for i in range(40_000)]
    write(pane, 0, ("\n".join(lines) + "\n").encode())
    pane.evaluate("fixture.rows()")
    assert pane.locator("#log .log-line").count() < 200  # only a window of the rows is in the DOM

    assert pane.evaluate("fixture.find('needle')") == "1 of 2"  # no capital: case-insensitive
    assert pane.evaluate("fixture.step(1)") == "2 of 2"
    pane.evaluate("fixture.rows()")
    current = pane.evaluate("document.querySelector('#log mark.log-current').closest('.log-row').textContent")
    assert current == "row 30000 Needle here"
    assert pane.evaluate("fixture.step(1)") == "1 of 2"  # wraps around
    assert pane.evaluate("fixture.find('Needle here')") == "1 of 2"
    assert pane.evaluate("fixture.find('needle HERE')") == "no matches"  # a capital: exact case


def test_a_marker_line_is_drawn_apart_and_is_not_a_search_match(pane) -> None:
    write(pane, 0, b"kept\npartial")
    pane.evaluate("fixture.buffer.end(0); fixture.buffer.marker(0, '[stdout truncated here]')")

    assert texts(pane) == ["kept", "partial", "[stdout truncated here]"]
    assert pane.evaluate(
        "document.querySelector('#log .log-line:last-child .log-row').classList.contains('log-marker')"
    )
    assert pane.evaluate("fixture.find('truncated')") == "no matches"
