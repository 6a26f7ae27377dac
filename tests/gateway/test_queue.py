"""Background work enqueued by task name (gateway.core.queue) finds its task in every process, not only in Celery's."""

import subprocess
import sys

from billing.alerts import DELIVERY_TASK
from billing.usage.exports import EXPORT_TASK
from gateway.pipeline.jobs import CALLBACK_TASK, RUN_TASK

# What a web worker or a command does at start; then which of the task names it was given it does not know.
_MISSING = (
    "import sys, django; django.setup(); from celery import current_app; "
    "print(' '.join(sorted(set(sys.argv[1:]) - set(current_app.tasks))))"
)


def test_a_fresh_process_knows_every_task_enqueued_by_name_or_scheduled(settings):
    # A fresh process: this one has imported billing.tasks through the tests already.
    scheduled = (entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values())
    names = {DELIVERY_TASK, EXPORT_TASK, RUN_TASK, CALLBACK_TASK, *scheduled}
    missing = subprocess.run(
        [sys.executable, "-c", _MISSING, *sorted(names)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert missing == "", f"tasks a web process would fail to enqueue: {missing}"
