"""Accounts' operator commands: organizations and API keys, clear errors and non-zero exits."""

import subprocess
import sys

import pytest
from django.core.management.base import CommandError

from accounts.models import ApiKey, Organization
from accounts.services import hash_api_key
from tests.conftest import run

pytestmark = pytest.mark.django_db


def test_create_org_and_errors(defaults):
    assert "Created organization 'acme'" in run("create_org", "acme", "--name", "Acme Inc", "--tier", "pro")
    assert Organization.objects.get(slug="acme").tier.slug == "pro"
    with pytest.raises(CommandError, match="already exists"):
        run("create_org", "acme")
    with pytest.raises(CommandError, match="Unknown tier 'gold'"):
        run("create_org", "other", "--tier", "gold")
    with pytest.raises(CommandError, match="not a valid slug"):
        run("create_org", "Not A Slug")


def test_create_api_key_prints_key_alone_on_last_line(defaults):
    run("create_org", "acme")
    output = run("create_api_key", "--org", "acme", "--name", "ci", "--expires-days", "30", "--models", "dall-e-3")
    plaintext = output.strip().splitlines()[-1]
    key = ApiKey.objects.get(prefix=plaintext[:12])
    assert key.key_hash == hash_api_key(plaintext)
    assert key.name == "ci" and key.allowed_models == ["dall-e-3"] and key.expires_at is not None
    with pytest.raises(CommandError, match="Unknown image model"):
        run("create_api_key", "--org", "acme", "--models", "dall-e-9")
    with pytest.raises(CommandError, match="Unknown organization 'nope'"):
        run("create_api_key", "--org", "nope")


def test_revoke_api_key(defaults):
    run("create_org", "acme")
    plaintext = run("create_api_key", "--org", "acme").strip().splitlines()[-1]
    prefix = ApiKey.objects.get().prefix
    assert "Revoked" in run("revoke_api_key", prefix)
    assert ApiKey.objects.get().revoked_at is not None
    with pytest.raises(CommandError, match="No API key with prefix"):
        run("revoke_api_key", "igw-unknown1")
    assert plaintext.startswith(prefix)


def test_bad_arguments_exit_non_zero_with_a_clear_message():
    result = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", "--org", "x", "--expires-days", "soon"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "not a whole number of days" in result.stderr
