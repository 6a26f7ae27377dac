"""The drill's servers: one PostgreSQL, Redis and fake upstream for the session; gateways and Celery per drill."""

import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from faults.harness import Gateway, Postgres, Process, Redis, Upstream, base_env, seed_once

# Figures measured by the drills, printed at the end of the run (docs/operations.md quotes them).
FIGURES: list[str] = []
_RUN_DIR: list[Path] = []


@dataclass
class Stack:
    run_dir: Path
    logs: Path
    postgres: Postgres
    redis: Redis
    upstream: Upstream
    started: list = field(default_factory=list)

    def env(self, **overrides: str) -> dict[str, str]:
        return base_env(self.run_dir, self.upstream.port, **overrides)

    def gateway(self, name: str, env: dict[str, str], workers: int = 3) -> Gateway:
        gateway = Gateway(name, env, self.logs, workers=workers)
        self.started.append(gateway)
        return gateway

    def celery(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        celery = str(Path(sys.executable).parent / "celery")
        process = Process(name, [celery, "-A", "gateway", *argv], logs=self.logs, env=env)
        self.started.append(process)
        return process


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def servers() -> Iterator[Stack]:
    # A CI timeout's SIGTERM becomes an interrupt, so pytest still runs the finalizers that stop every server.
    signal.signal(signal.SIGTERM, _interrupt)
    run_dir = Path(tempfile.mkdtemp(prefix="imagegate-faults-"))
    _RUN_DIR.append(run_dir)
    # The postgres user runs the cluster under it and writes its log beside the others'.
    run_dir.chmod(0o755)
    logs = run_dir / "logs"
    logs.mkdir()
    logs.chmod(stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
    postgres = Postgres(run_dir, logs)
    redis = Redis(logs)
    upstream = None
    try:
        postgres.start()
        postgres.create_database()
        redis.start()
        upstream = Upstream(logs)
        stack = Stack(run_dir, logs, postgres, redis, upstream)
        seed_once(stack.env())
        yield stack
    finally:
        if upstream:
            upstream.process.stop()
        redis.stop()
        postgres.ensure_stopped()
        # The logs stay until the run's outcome is known (pytest_terminal_summary).
        for scratch in ("pg", "var"):
            shutil.rmtree(run_dir / scratch, ignore_errors=True)


@pytest.fixture
def stack(servers: Stack) -> Iterator[Stack]:
    """The session's servers, up (a failed drill may have left one down), and whatever a drill starts, stopped."""
    if not servers.postgres.started:
        servers.postgres.start()
    if servers.redis.process is None:
        servers.redis.start()
    servers.upstream.fault("ok")
    try:
        yield servers
    finally:
        for process in reversed(servers.started):
            process.stop()
        servers.started.clear()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if FIGURES:
        terminalreporter.section("fault drill figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
    for run_dir in _RUN_DIR:
        if exitstatus:
            terminalreporter.write_line(f"fault drill logs (one file per process): {run_dir / 'logs'}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
