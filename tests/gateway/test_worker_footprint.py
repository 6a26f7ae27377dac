"""What a web worker loads at start: every process pays for it, so capacity per machine does (docs/operations.md)."""

import json
import os
import subprocess
import sys

from django.conf import settings

# Loaded as uvicorn loads the app in each worker, then what a worker imports for its tasks at start.
_WORKER = """
import json, sys
import gateway.asgi
print(json.dumps(sorted(name for name in sys.modules if name.partition(".")[0] in {heavy})))
"""
# Libraries only a rare request or a background task needs, each tens of MB resident once imported.
HEAVY = ("pyarrow",)


def test_a_web_worker_starts_without_the_libraries_only_exports_need():
    result = subprocess.run(
        [sys.executable, "-c", _WORKER.format(heavy=set(HEAVY))],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "gateway.settings"},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout.splitlines()[-1]) == []
