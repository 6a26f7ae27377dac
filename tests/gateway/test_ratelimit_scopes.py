"""Which scopes a request is counted in: the organization, and the key, its project and its end user with limits."""

from dataclasses import dataclass

import pytest

from accounts.callers import Caller
from gateway.pipeline.ratelimit import local_limiter, redis_limiter
from gateway.pipeline.ratelimit.rules import RateLimiter, scopes_for

CALLER = Caller(
    api_key_id=7,
    api_key_prefix="igw-AbCd1234",
    allowed_models=(),
    organization_id=3,
    organization_slug="acme",
    tier_name="Pro",
    images_per_minute=30,
    images_per_day=1000,
)


@dataclass(frozen=True)
class Rates:
    end_user: str
    images_per_minute: int | None
    images_per_day: int | None


def test_the_organization_alone_when_nothing_else_has_limits():
    project = Caller(**{**CALLER.__dict__, "project_id": 5, "project_name": "design"})
    assert [scope.key for scope in scopes_for(project, Rates("alice", None, None))] == ["rl:o:3"]
    assert [scope.key for scope in scopes_for(CALLER, None)] == ["rl:o:3"]


def test_the_project_and_the_end_user_each_get_a_scope_falling_back_to_the_organization():
    caller = Caller(**{**CALLER.__dict__, "project_id": 5, "project_name": "design", "project_images_per_day": 200})
    org, project, user = scopes_for(caller, Rates("alice", 3, None))
    assert (project.key, project.label, project.per_minute, project.per_day) == ("rl:p:5", "project 'design'", 30, 200)
    assert user.key.startswith("rl:u:3:") and (user.per_minute, user.per_day) == (3, 1000)
    assert user.label == "end user 'alice' of organization 'acme'"


def test_an_end_user_key_is_bounded_and_distinct_per_end_user_and_organization():
    long_one = scopes_for(CALLER, Rates("x" * 256, 3, None))[1].key
    assert len(long_one) == len("rl:u:3:") + 24
    assert scopes_for(CALLER, Rates("bob", 3, None))[1].key != scopes_for(CALLER, Rates("alice", 3, None))[1].key
    other_org = Caller(**{**CALLER.__dict__, "organization_id": 4})
    assert scopes_for(other_org, Rates("alice", 3, None))[1].key != scopes_for(CALLER, Rates("alice", 3, None))[1].key


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(redis_limiter, marks=pytest.mark.redis, id="redis"),
        pytest.param(local_limiter, id="in-process"),
    ],
)
async def test_four_scopes_are_checked_and_consumed_together(backend: RateLimiter):
    caller = Caller(
        **{
            **CALLER.__dict__,
            "key_images_per_minute": 10,
            "project_id": 5,
            "project_name": "p",
            "project_images_per_minute": 5,
        }
    )
    alice = scopes_for(caller, Rates("alice", 2, None))
    bob = scopes_for(caller, Rates("bob", 2, None))
    assert len(alice) == 4
    assert (await backend.consume(alice, 2, "a1")).allowed
    refused = await backend.consume(alice, 1, "a2")
    assert (refused.refused_scope, refused.refused_window) == (alice[3], "minute")
    assert refused.minute.remaining == 0 and refused.minute.limit == 2
    assert (await backend.consume(bob, 2, "b1")).allowed
    # The project (5 a minute) now has 1 left, shared by both end users: bob's next two are refused whole by it.
    project_full = await backend.consume(bob, 2, "b2")
    assert not project_full.allowed and project_full.refused_scope == bob[2]
    assert (await backend.consume(bob, 0, "b3")).minute.remaining == 0
