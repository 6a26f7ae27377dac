"""Background work enqueued by task name, once the current transaction commits.

The code that decides work is due (a settlement crossed an alert threshold, a large
export was requested) sits below the Celery tasks that do it, which import it in turn.
So it names the task instead of importing it, as Celery's signatures do, and the
layers keep pointing down. Without a broker (CELERY_TASK_ALWAYS_EAGER) the task runs
inline, still only after the commit.
"""

import logging
from functools import partial

from celery import current_app
from django.db import transaction

logger = logging.getLogger("gateway.core.queue")


def enqueue_on_commit(task_name: str, *args: object) -> None:
    """Run task `task_name` (e.g. "billing.tasks.alert_deliver") with `args` after this transaction commits."""
    transaction.on_commit(partial(_enqueue, task_name, args))


def _enqueue(task_name: str, args: tuple[object, ...]) -> None:
    # What asked for the work is committed and keeps its record of it (a queued export, an
    # undelivered alert, which the periodic redelivery picks up); a broker outage, or an inline
    # task's failure, must not turn the caller's committed success into an error.
    task = current_app.tasks[task_name]
    if current_app.conf.task_always_eager:
        try:
            # Inline, on the thread that committed. Not through delay(): eagerly, it marks "inside
            # a task" in a process-wide flag that is not thread-safe, and the embedded gateway runs
            # tasks on several threads at once (alerts of concurrent settlements), which can leave
            # the flag set for good; every later result.get() in the process then refuses to run.
            task.apply(args=args)
        except Exception:
            logger.warning("task %s%r failed inline", task_name, args, exc_info=True)
        return
    try:
        # Give up quickly on a broker that is down: this runs on the request's own thread.
        task.apply_async(args=args, retry=False)
    except Exception as exc:
        # One line, no traceback: during an outage every enqueue fails the same way.
        logger.warning(
            "task %s%r not enqueued, the broker is unreachable (%s: %s)", task_name, args, type(exc).__name__, exc
        )
