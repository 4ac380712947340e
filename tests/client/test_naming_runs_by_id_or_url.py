"""A run or batch is named on the command line by its id or by a URL pasted from the browser."""

from __future__ import annotations

import argparse

import pytest
from crucible.arguments import object_id


@pytest.mark.parametrize(
    "text",
    ["42", " 42 ", "http://127.0.0.1:8000/runs/42/", "https://crucible.example.org/api/v1/runs/42", "/runs/42/#logs"],
)
def test_a_run_is_its_id_or_any_url_ending_in_runs_and_the_id(text):
    assert object_id("runs")(text) == 42


@pytest.mark.parametrize("text", ["", "-1", "4x", "http://h/batches/42/", "http://h/runs/42/extra/", "http://h/runs/"])
def test_anything_else_is_refused_as_a_usage_error(text):
    with pytest.raises(argparse.ArgumentTypeError):
        object_id("runs")(text)
