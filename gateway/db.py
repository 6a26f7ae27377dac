"""Running short database steps from the async hot path."""

from collections.abc import Callable
from functools import partial
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

P = ParamSpec("P")
R = TypeVar("R")


def _run_and_release(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    try:
        return fn(*args, **kwargs)
    finally:
        # Give the connection back (to the pool, with PostgreSQL) before the
        # request goes on to wait for a provider for seconds.
        connections.close_all()


async def db_step(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `fn` on a pooled worker thread, holding a connection only while it runs.

    thread_sensitive=False borrows a thread from a shared executor for the step
    alone, so a request waiting on its provider holds neither a thread nor a connection.
    """
    return await sync_to_async(partial(_run_and_release, fn, *args, **kwargs), thread_sensitive=False)()
