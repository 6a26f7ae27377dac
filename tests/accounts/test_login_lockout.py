"""Dashboard sign-ins lock out after repeated wrong passwords (django-axes), per username and address."""

from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from tests.people import PASSWORD

pytestmark = pytest.mark.django_db

ATTACKER = "203.0.113.50"


def sign_in(client, password: str, address: str = ATTACKER, username: str = "alice"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)


def test_thirty_wrong_passwords_lock_the_sign_in_and_the_right_one_is_refused_while_locked(people, client):
    answers = [sign_in(client, f"guess-{attempt}").status_code for attempt in range(30)]
    limit = settings.AXES_FAILURE_LIMIT
    # Wrong passwords are shown the form again until the limit; from then on, the lockout page.
    assert answers[: limit - 1] == [200] * (limit - 1)
    assert set(answers[limit:]) == {429}
    locked = sign_in(client, PASSWORD)
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    assert "_auth_user_id" not in client.session


def test_the_lock_is_per_address_and_username(people, client):
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, f"guess-{attempt}")
    assert sign_in(client, PASSWORD).status_code == 429
    # alice from her own address, and bob from the attacker's, still sign in.
    assert sign_in(client, PASSWORD, address="198.51.100.20").status_code == 302
    client.logout()
    assert sign_in(client, PASSWORD, username="bob").status_code == 302


def test_the_lock_ends_after_the_cool_off(people, client):
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, f"guess-{attempt}")
    assert sign_in(client, PASSWORD).status_code == 429
    with time_machine.travel(timezone.now() + settings.AXES_COOLOFF_TIME + timedelta(seconds=1)):
        assert sign_in(client, PASSWORD).status_code == 302


def test_an_operator_unlocks_at_once(people, client):
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, f"guess-{attempt}")
    assert sign_in(client, PASSWORD).status_code == 429
    call_command("axes_reset_username", "alice")
    assert sign_in(client, PASSWORD).status_code == 302
