"""The real processes of a fault drill, each started and stopped by the suite, and the client that records answers.

Everything lives under one run directory (printed when a drill fails): `logs/` (one file per process, kept),
PostgreSQL's data directory, the gateway's VAR_DIR. Every wait has a timeout; every process is started in its
own session and stopped with its whole group, by the fixtures' finalizers and by atexit if they never run.
"""

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path(os.environ.get("FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_PORT = int(os.environ.get("FAULTS_PG_PORT", "55432"))
REDIS_PORT = int(os.environ.get("FAULTS_REDIS_PORT", "56379"))
DATABASE = "imagegate_faults"
DATABASE_URL = f"postgres://postgres@127.0.0.1:{PG_PORT}/{DATABASE}"
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
UPSTREAM_KEY = "sk-fault"
# A live model the fake serves, priced per image by the seed so every charge is exact.
BODY = {"model": "gpt-image-2", "size": "1024x1024", "quality": "low", "prompt": "fault drill"}
UNIT_PRICE = "0.04"

_running: list["Process"] = []


def port_free(port: int) -> bool:
    """Whether nothing listens on `port` (connections of a stopped server lingering in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.1) -> float:
    """Poll `check` until it is true; returns the seconds it took, raises TimeoutError naming `what`."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(OSError, httpx.HTTPError):  # not answering yet
            if check():
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


class Process:
    """One child process in its own session, logging to logs/<name>.log; stop() ends its whole group."""

    def __init__(self, name: str, argv: list[str], *, logs: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        log = self.log_path.open("ab")
        log.write(f"--- started {time.strftime('%H:%M:%S')}: {' '.join(argv)}\n".encode())
        log.flush()
        self.popen = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        _running.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):  # already gone: nothing to stop
                try:
                    os.killpg(self.pid, sig)
                    self.popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(self.pid, signal.SIGKILL)
                    self.popen.wait(timeout=10)
        if self in _running:
            _running.remove(self)


@atexit.register
def _stop_everything() -> None:
    for process in list(_running):
        process.stop(signal.SIGKILL, timeout=10)


def _run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


class Postgres:
    """A throwaway cluster in run_dir/pg, owned by the postgres user, on PG_PORT."""

    def __init__(self, run_dir: Path, logs: Path) -> None:
        self.data = run_dir / "pg"
        self.log = logs / "postgres.log"
        self.data.mkdir()
        shutil.chown(self.data, "postgres", "postgres")
        # pg_ctl detaches the server from us: stop it at exit even when no finalizer ran.
        atexit.register(self.ensure_stopped)
        initdb = (PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        self._as_postgres(*initdb)
        self.started = False

    def _as_postgres(self, *argv) -> str:
        return _run(["runuser", "-u", "postgres", "--", *map(str, argv)])

    def start(self) -> None:
        if not port_free(PG_PORT):
            raise RuntimeError(f"port {PG_PORT} is taken: set FAULTS_PG_PORT to a free one")
        options = f"-p {PG_PORT} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "60", "start")
        self.started = True

    def stop(self) -> None:
        """A clean but abrupt stop: open connections are cut, as when the database goes away."""
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop")
        self.started = False

    def ensure_stopped(self) -> None:
        if self.started or (self.data / "postmaster.pid").exists():
            subprocess.run(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ],
                capture_output=True,
                timeout=60,
            )
            self.started = False

    def create_database(self) -> None:
        _run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(PG_PORT),
                DATABASE,
            ]
        )


class Redis:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.process: Process | None = None

    def start(self) -> None:
        if not port_free(REDIS_PORT):
            raise RuntimeError(f"port {REDIS_PORT} is taken: set FAULTS_REDIS_PORT to a free one")
        argv = ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = Process("redis", argv, logs=self.logs)

        def answers() -> bool:
            with socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        wait_until("redis-server answering PING", answers, 15)

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None


def base_env(run_dir: Path, upstream_port: int, **overrides: str) -> dict[str, str]:
    """The gateway's production environment for a drill; `overrides` are a scenario's settings."""
    keep = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {
        **keep,
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "DEBUG": "false",
        "SECRET_KEY": "fault-drill-" + "x" * 50,
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "VAR_DIR": str(run_dir / "var"),
        "LOCAL_PROVIDER_FALLBACK": "false",
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
        "PROVIDER_TIMEOUT_SECONDS": "4",
        # The one deadline a request may take upstream, retries and fallbacks included.
        "REQUEST_DEADLINE_SECONDS": "4",
        "PROVIDER_BREAKER_THRESHOLD": "3",
        "PROVIDER_BREAKER_COOLDOWN_SECONDS": "5",
        "SPEND_RESERVATION_TIMEOUT_SECONDS": "10",
        # Each web process sweeps this often, so a killed worker's hold goes within the timeout and one sweep.
        "SPEND_RESERVATION_SWEEP_SECONDS": "2",
        "LOG_LEVEL": "warning",
        **overrides,
    }


def django_run(env: dict[str, str], script: str, timeout: float = 120) -> str:
    """Run `script` in a fresh Python with Django set up against the drill's database; returns its stdout."""
    return _run([sys.executable, "-c", "import django\ndjango.setup()\n" + script], env=env, timeout=timeout)


SEED = """
import json, secrets
from decimal import Decimal
from accounts.services import api_key_create, org_create, org_tier_set
from billing.limits import spend_limit_set
suffix = secrets.token_hex(3)
out = {}
for name, per_minute in %s:
    org = org_create(slug=f"{name}-{suffix}", tier_slug="free")
    org_tier_set(organization=org, tier_slug="enterprise", images_per_minute=per_minute, images_per_day=10**9)
    # A daily cap it never reaches: every request holds a reservation against it.
    spend_limit_set(organization=org, key_prefix=None, period="day", amount=Decimal("1000000"))
    out[name] = {"id": org.id, "key": api_key_create(organization=org).plaintext}
print(json.dumps(out))
"""


def seed_once(env: dict[str, str]) -> None:
    """Migrate, seed the catalog, and price gpt-image-2 per image (its token price removed)."""
    _run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], env=env, timeout=300)
    django_run(
        env,
        "from decimal import Decimal\n"
        "from gateway.seed import seed_defaults\n"
        "from billing.models import TokenPrice\n"
        "from billing.services import price_set\n"
        "seed_defaults()\n"
        "TokenPrice.objects.filter(model__name='gpt-image-2').delete()\n"
        f"price_set(model='gpt-image-2', quality='low', size='1024x1024', unit_price=Decimal('{UNIT_PRICE}'))\n",
    )


@dataclass(frozen=True)
class Org:
    id: int
    key: str


def seed_orgs(env: dict[str, str], **per_minute: int) -> dict[str, Org]:
    """Fresh organizations (a new slug each run) with these images-per-minute limits, each with a capped key."""
    out = json.loads(django_run(env, SEED % (list(per_minute.items()),)).strip().splitlines()[-1])
    return {name: Org(**values) for name, values in out.items()}


def sweep(env: dict[str, str]) -> int:
    """The ledger's sweep as it runs one timeout from now: every request of the drill has been answered or lost
    by then, so whatever it still holds belongs to no live request."""
    script = (
        "from datetime import timedelta\n"
        "from django.conf import settings\n"
        "from django.utils import timezone\n"
        "from billing.ledger import ledger\n"
        "later = timezone.now() + timedelta(seconds=settings.SPEND_RESERVATION_TIMEOUT_SECONDS + 1)\n"
        "print(ledger().reservations_sweep(now=later))\n"
    )
    return int(django_run(env, script).split()[-1])


class Upstream:
    def __init__(self, logs: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "faults.upstream", "--port", str(self.port), "--api-key", UPSTREAM_KEY]
        self.process = Process("upstream", argv, logs=logs)
        wait_until("the fake upstream", lambda: httpx.get(f"{self.url}/_stats", timeout=1).status_code == 200, 30)

    def fault(self, mode: str, seconds: float = 3600) -> None:
        httpx.post(f"{self.url}/_fault", json={"mode": mode, "seconds": seconds}, timeout=5).raise_for_status()

    def calls(self) -> int:
        return httpx.get(f"{self.url}/_stats", timeout=5).json()["calls"]


class Gateway:
    """`make serve`'s server (uvicorn, several workers, production settings) on a free port."""

    def __init__(self, name: str, env: dict[str, str], logs: Path, workers: int = 3) -> None:
        # One worker would make uvicorn serve in its own process, with no worker to kill or count.
        assert workers >= 2, "a drill's gateway runs several workers, as in production"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            f"{ROOT}/.venv/bin/uvicorn" if (ROOT / ".venv/bin/uvicorn").exists() else "uvicorn",
            "gateway.asgi:application",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", str(workers),
            "--no-access-log",
            "--log-level", "warning",
            "--http", "gateway.server:HeaderGuardedProtocol",
        ]  # fmt: skip
        self.workers = workers
        # As `make serve` exports it: each worker takes its share of the rate limits while Redis is down.
        self.process = Process(name, argv, logs=logs, env={"WEB_CONCURRENCY": str(workers), **env})
        wait_until(f"{name} /healthz", lambda: httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200, 90)
        wait_until(f"{name}'s {workers} workers", lambda: len(self.worker_pids()) == workers, 60)

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (the supervisor's spawned children)."""
        found = []
        for pid in _children(self.process.pid):
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
            except OSError:
                continue
        return found

    def open_connections(self, pid: int) -> int:
        """Established client connections to the gateway held by worker `pid` (its requests in flight)."""
        inodes = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == self.port and fields[3] == "01":
                inodes.add(fields[9])
        held = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            held += target.startswith("socket:[") and target[8:-1] in inodes
        return held

    def stop(self) -> None:
        self.process.stop()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        return found
    return found + [c for p in found for c in _children(p)]


@dataclass(frozen=True)
class Answer:
    """One request of a drill as the client saw it: sent at `sent` (monotonic), answered `elapsed` seconds later."""

    org: str
    sent: float
    elapsed: float
    status: int | None  # None: no answer (the connection was lost)
    request_id: str = ""
    code: str = ""
    retry_after: str | None = None
    error: str = ""


class Client:
    """Sends image requests through the gateway and records every answer."""

    def __init__(self, gateway: Gateway, orgs: dict[str, Org], timeout: float = 60) -> None:
        self.gateway = gateway
        self.orgs = orgs
        self.answers: list[Answer] = []
        self._http = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=100))
        # A new connection per request, so the kernel spreads one client's requests over every worker.
        self._fresh = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0))

    async def close(self) -> None:
        await self._http.aclose()
        await self._fresh.aclose()

    async def send(self, org: str, body: dict | None = None, *, fresh: bool = False) -> Answer:
        sent = time.monotonic()
        headers = {"Authorization": f"Bearer {self.orgs[org].key}"}
        try:
            response = await (self._fresh if fresh else self._http).post(
                f"{self.gateway.url}/v1/images/generations", json=body or BODY, headers=headers
            )
        except httpx.HTTPError as exc:
            answer = Answer(org, sent, time.monotonic() - sent, None, error=f"{type(exc).__name__}: {exc}")
        else:
            try:
                code = (response.json().get("error") or {}).get("code") or ""
            except ValueError:
                code = "<not json>"
            answer = Answer(
                org,
                sent,
                time.monotonic() - sent,
                response.status_code,
                response.headers.get("x-request-id", ""),
                code,
                response.headers.get("retry-after"),
            )
        self.answers.append(answer)
        return answer

    async def loop(self, org: str, until: Callable[[], bool], pause: float = 0.0, fresh: bool = False) -> None:
        """One client sending request after request (with `pause` between) until `until()` is true."""
        while not until():
            await self.send(org, fresh=fresh)
            if pause:
                await asyncio.sleep(pause)
