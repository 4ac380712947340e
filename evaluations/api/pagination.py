"""Pages of API lists: cursors, which stay right while new runs arrive at the top of the list."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination

RUN_PAGE_SIZE = 50
RUN_PAGE_SIZE_MAX = 100


class RunCursorPagination(CursorPagination):
    """Newest first, as Run's default ordering; the id breaks ties between runs queued together."""

    ordering = ("-queued_at", "-id")
    page_size = RUN_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = RUN_PAGE_SIZE_MAX

    def get_paginated_response_schema(self, schema):
        link = {"type": "string", "format": "uri", "nullable": True}
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {
                "next": {**link, "description": "the next (older) page; null on the last page"},
                "previous": {**link, "description": "the previous (newer) page; null on the first page"},
                "results": schema,
            },
        }
