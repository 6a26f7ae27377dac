"""Paths and readers shared by the deployment tests."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
ENV_EXAMPLE = DOCKER / ".env.example"

# `NAME=value`, active or commented out (a commented line documents a variable left at its default).
_ENV_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")


def env_example() -> dict[str, str | None]:
    """Every variable docker/.env.example documents: its value when the line is active, None when commented out."""
    documented: dict[str, str | None] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = _ENV_LINE.match(line.strip())
        if match:
            documented[match.group(1)] = None if line.lstrip().startswith("#") else match.group(2)
    return documented
