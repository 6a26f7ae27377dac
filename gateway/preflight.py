"""`python3 gateway/preflight.py` (stdlib only, run by `make test` first).

Stops at once, with instructions, when PostgreSQL or Redis is unreachable.
"""

import os
import socket
import sys
from urllib.parse import urlparse

HOW_TO_START = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def main() -> int:
    targets = {
        "PostgreSQL": (os.environ.get("DATABASE_URL", ""), 5432),
        "Redis": (os.environ.get("REDIS_URL", ""), 6379),
    }
    failed = False
    for name, (url, default_port) in targets.items():
        parsed = urlparse(url)
        if not url or parsed.scheme.startswith("sqlite"):
            print(f"{name}: no URL set ({'DATABASE_URL' if name == 'PostgreSQL' else 'REDIS_URL'})", file=sys.stderr)
            failed = True
            continue
        host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
        if not _reachable(host, port):
            print(
                f"{name} is not reachable at {host}:{port} ({url}).\n"
                f"  Start it, e.g.: {HOW_TO_START[name]}\n"
                f"  or point {'DATABASE_URL' if name == 'PostgreSQL' else 'REDIS_URL'} at a running server.",
                file=sys.stderr,
            )
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
