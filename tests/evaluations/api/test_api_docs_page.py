"""/api/docs/: Swagger UI on the served schema, from vendored files (no CDN), started by a static
script (no inline code), and linked from the site's menu."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db


def test_the_docs_page_loads_swagger_ui_from_static_files_on_the_served_schema(client) -> None:
    page = client.get("/api/docs/")

    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-schema-url="/api/schema/?format=json"' in html
    sources = re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="([^"]+\.(?:js|css))"', html)
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in sources
    assert "/static/js/api_docs.js" in sources
    assert all(source.startswith("/static/") for source in sources), sources
    for source in sources:
        assert finders.find(source.removeprefix("/static/")), f"{source} is not in static/"
    inline = [code for code in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S) if code.strip()]
    assert inline == []


def test_the_menu_links_the_docs_page(client) -> None:
    assert 'href="/api/docs/"' in client.get("/runs/").content.decode()
