"""`manage.py check --deploy` passes with production settings, from the environment as a container gets them."""

import os
import secrets
import subprocess
import sys

import pytest

from tests.deploy.files import REPO

PG_URL = "postgres://postgres@127.0.0.1:5432/imagegate"


def manage(*args: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    """manage.py in a fresh process with only these settings (plus PATH), as the image runs it."""
    database_url = os.environ.get("DATABASE_URL", "")
    environment = {
        "PATH": os.environ["PATH"],
        "VAR_DIR": str(tmp_path),
        # check --deploy opens no connection; the URL only makes the settings those of a PostgreSQL deployment.
        "DATABASE_URL": database_url if database_url.startswith("postgres") else PG_URL,
        "REDIS_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
        **env,
    }
    return subprocess.run(  # noqa: S603 (our own manage.py)
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def production() -> dict[str, str]:
    return {
        "PRODUCTION": "true",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "gateway.example.com,localhost",
    }


def test_check_deploy_passes_with_production_settings(production, tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path, **production)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout


def test_without_the_production_switch_check_deploy_fails(production, tmp_path):
    """What PRODUCTION turns on: without it, a DEBUG=false gateway over plain HTTP (as `make serve`) is flagged."""
    del production["PRODUCTION"]
    result = manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path, **production)
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr, f"{warning} (HSTS, SSL redirect, secure cookies) expected"


def test_production_refuses_to_start_without_a_secret_key(production, tmp_path):
    del production["SECRET_KEY"]
    result = manage("check", tmp_path=tmp_path, **production)
    assert result.returncode != 0 and "set SECRET_KEY" in result.stderr
    assert not (tmp_path / "secret_key").exists(), "no per-container key is generated in production"


def test_production_refuses_to_start_with_debug_on(production, tmp_path):
    result = manage("check", tmp_path=tmp_path, **production | {"DEBUG": "true"})
    assert result.returncode != 0 and "DEBUG must be off" in result.stderr
