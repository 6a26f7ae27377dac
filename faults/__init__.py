"""`make faults`: the fault-injection suite (real PostgreSQL, Redis, uvicorn workers, Celery; a fake provider).

Not collected by `make test` (its testpath is `tests/`): each run starts and stops its own servers on spare ports.
"""
