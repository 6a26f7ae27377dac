"""Typed readers for settings that come from environment variables.

Each helper fails loudly on nonsense instead of silently picking a default,
so a typo in a deployment shows up at start-up, not as odd behaviour later.
"""

import ipaddress
import os
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None


def env_decimal(name: str, default: str) -> Decimal:
    raw = os.environ.get(name, default)
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be a decimal number, got {raw!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str) -> list[str]:
    """Comma-separated CIDR networks (10.0.0.0/8, fd00::/8, or a lone address); raises on anything else."""
    networks = env_list(name)
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {network!r} is not a CIDR network, e.g. 10.0.0.0/8") from None
    return networks


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def served_base_url_file():
    """Where `make run` notes the address it serves on, for commands run later by hand in another shell."""
    return settings.VAR_DIR / "served_base_url"


def local_base_url() -> str:
    """Where people reach this gateway: PUBLIC_BASE_URL, else the address `make run` serves on.

    `make run` passes its PORT to the commands it runs (`demo_setup` notes the address in VAR_DIR);
    a command run by hand later reads that note, unless PORT is set for it.
    """
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL
    noted = served_base_url_file()
    if "PORT" not in os.environ and noted.exists():
        return noted.read_text().strip()
    return f"http://127.0.0.1:{env_int('PORT', 8000)}"
