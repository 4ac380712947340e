"""The New run form in Chromium against the real stack: a real code editor (Python highlighting,
Tab indents, line numbers, Ctrl+Enter runs), an error summary that takes the focus, and limits
bounded by the user's quotas."""

from __future__ import annotations

import re

import pytest

from tests.browser.test_run_page import TERMINAL, fill_code, wait_for_line, wait_for_status

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_code_typed_in_the_editor_is_highlighted_indented_and_run_with_ctrl_enter(logged_in) -> None:
    page = logged_in.page
    page.goto(logged_in.url("/submit/"))
    page.wait_for_selector(".cm-editor .cm-content")
    assert page.is_hidden("#id_code")  # the textarea stays the form's field, behind the editor

    page.click(".cm-editor .cm-content")
    page.keyboard.type("for i in range(2):", delay=15)
    page.keyboard.press("Enter")  # indented after the colon
    page.keyboard.type("print('line', i)", delay=15)
    page.keyboard.press("Enter")
    page.keyboard.press("Shift+Tab")  # back out of the loop
    page.keyboard.type("x = 1", delay=15)
    page.keyboard.press("Home")
    page.keyboard.press("Tab")  # Tab indents the line, it does not leave the editor
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("End")
    page.keyboard.press("Enter")
    page.keyboard.type("print('done', x)", delay=15)

    assert page.input_value("#id_code") == "for i in range(2):\n    print('line', i)\nx = 1\nprint('done', x)"
    assert page.locator(".cm-lineNumbers .cm-gutterElement").filter(has_text="4").count() == 1
    # Python highlighting: the keyword "for" is styled apart from the rest of its line.
    assert page.locator(".cm-line").first.locator("span").count() >= 2

    page.keyboard.press("Control+Enter")
    page.wait_for_url(re.compile(r".*/runs/\d+/$"))
    assert wait_for_status(page, *TERMINAL) == "succeeded"
    wait_for_line(page, "done 1")


def test_an_error_takes_the_focus_to_a_summary_that_links_to_the_field(logged_in) -> None:
    page = logged_in.page
    page.goto(logged_in.url("/submit/"))
    page.wait_for_selector(".cm-editor .cm-content")
    assert page.get_attribute("#id_memory_mb", "min") == "32"
    assert page.get_attribute("#id_memory_mb", "max") is not None

    fill_code(page, "print('hi')\n")
    page.fill("#id_wall_seconds", "0")
    page.click("form.submit-form button[type=submit]")

    page.wait_for_selector("#error-summary")
    assert page.evaluate("document.activeElement.id") == "error-summary"
    link = page.locator("#error-summary a").first
    assert link.get_attribute("href") == "#id_wall_seconds" and "must be between" in link.inner_text()
    link.click()
    assert page.evaluate("document.activeElement.id") == "id_wall_seconds"
    assert "print('hi')" in page.inner_text(".cm-content")  # what was typed is kept
