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
