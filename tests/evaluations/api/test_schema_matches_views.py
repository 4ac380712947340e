"""docs/openapi.yaml is the schema the views make and the site serves: a view that changes without
the committed schema following fails here, with the command that brings it up to date."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest
from django.core.management import call_command

from evaluations.api import urls as api_urls

COMMITTED = Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml"
REGENERATE = "run `make openapi` (manage.py spectacular --file docs/openapi.yaml --validate) and commit it"


def _differences(committed: str, generated: str) -> str:
    lines = difflib.unified_diff(
        committed.splitlines(), generated.splitlines(), "docs/openapi.yaml", "generated", lineterm="", n=2
    )
    return "\n".join(list(lines)[:80])


def test_the_committed_schema_is_the_one_the_views_make(tmp_path):
    generated = tmp_path / "openapi.yaml"
    # --validate and --fail-on-warn: an invalid schema, or a view drf-spectacular cannot read, fails too.
    call_command("spectacular", "--file", str(generated), "--validate", "--fail-on-warn")

    committed, made = COMMITTED.read_text(), generated.read_text()
    assert made == committed, f"docs/openapi.yaml is out of date: {REGENERATE}\n{_differences(committed, made)}"


@pytest.mark.django_db
def test_the_site_serves_the_committed_schema_to_anyone(anonymous_client):
    yaml = anonymous_client.get("/api/schema/")
    as_json = anonymous_client.get("/api/schema/?format=json")

    assert yaml.status_code == as_json.status_code == 200
    assert yaml.content.decode() == COMMITTED.read_text(), f"the served schema differs: {REGENERATE}"
    routes = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", f"/api/v1/{p.pattern}") for p in api_urls.urlpatterns if p.name}
    assert as_json.json()["paths"].keys() == routes
