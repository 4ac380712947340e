"""How the websocket consumers call the database (and other blocking code) from the event loop."""

from __future__ import annotations

from channels.db import database_sync_to_async


def in_thread(func):
    """`func` as a coroutine function run on the event loop's pool of threads, closing stale
    database connections around it as channels does. Not channels' default of one thread for every
    socket of the process: under load, handshakes waited for it past daphne's timeout."""
    return database_sync_to_async(func, thread_sensitive=False)
