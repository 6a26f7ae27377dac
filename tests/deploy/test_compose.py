"""docker/compose.yml: valid against the Compose specification's JSON schema, and every variable documented.

tests/deploy/compose-spec.json is the schema published by the Compose specification (github.com/compose-spec,
schema/compose-spec.json at commit 170098ba, June 2026), the one `docker compose config` validates with.
"""

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.deploy.files import DOCKER, REPO, env_example

COMPOSE = DOCKER / "compose.yml"
SCHEMA = json.loads((Path(__file__).parent / "compose-spec.json").read_text())

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}; `$$` is a literal dollar.
_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
# What the settings read: env_str("NAME", ...), env_bool(\n    "NAME", ...) and the like.
_SETTING_READ = re.compile(r"\benv_(?:str|int|bool|decimal|list|choice)\(\s*\"([A-Z][A-Z0-9_]*)\"")
# The providers' credentials and base URLs (providers/*.py: key_variable = "OPENAI_API_KEY").
_PROVIDER_VARIABLE = re.compile(r"\b(?:key_variable|base_url_variable)\s*=\s*\"([A-Z][A-Z0-9_]*)\"")


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's interpolation, enough for our file: a required variable missing is an error, as in compose."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.groups()
        value = values.get(name)
        if operator in (":?", "?") and not value:
            raise KeyError(f"{name} is required: {argument}")
        if operator in (":-", "-") and not value:
            return argument
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def compose_variables() -> set[str]:
    return {match.group(1) for match in _INTERPOLATION.finditer(COMPOSE.read_text()) if match.group(1)}


def filled_example() -> dict[str, str]:
    """docker/.env.example's active values, with the secrets an operator must fill in filled in."""
    values = {name: value for name, value in env_example().items() if value is not None}
    values |= {"SECRET_KEY": "s" * 50, "POSTGRES_PASSWORD": "a-long-password"}
    return values


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), filled_example()))


def test_the_compose_file_is_valid_against_the_compose_specification(compose):
    jsonschema.Draft7Validator(SCHEMA).validate(compose)


def test_the_validation_catches_a_misspelt_key(compose):
    broken = {**compose, "services": {**compose["services"], "web": {**compose["services"]["web"], "helthcheck": {}}}}
    with pytest.raises(jsonschema.ValidationError, match="helthcheck"):
        jsonschema.Draft7Validator(SCHEMA).validate(broken)


def test_a_required_secret_left_empty_stops_compose():
    values = filled_example() | {"SECRET_KEY": ""}
    with pytest.raises(KeyError, match="SECRET_KEY"):
        interpolate(COMPOSE.read_text(), values)


def test_the_services_and_their_health_checks(compose):
    services = compose["services"]
    assert {"web", "worker", "beat", "postgres", "redis", "migrate"} <= set(services)
    for name in ("postgres", "redis", "worker"):
        assert services[name]["healthcheck"]["test"], f"{name} has a health check"
    # web's is the image's HEALTHCHECK (test_dockerfile.py); it must not be switched off here.
    assert not services["web"].get("healthcheck", {}).get("disable")
    for name in ("web", "worker", "beat"):
        waits_for = services[name]["depends_on"]
        assert waits_for["migrate"]["condition"] == "service_completed_successfully", name
        assert waits_for["postgres"]["condition"] == "service_healthy", name
    assert "migrate" in services["migrate"]["entrypoint"][-1]


def test_data_and_media_are_on_named_volumes(compose):
    named = set(compose["volumes"])
    mounted = {
        name: {volume.split(":")[0] for volume in service.get("volumes", [])}
        for name, service in compose["services"].items()
    }
    assert mounted["postgres"] <= named and mounted["postgres"]
    assert mounted["redis"] <= named and mounted["redis"]
    assert mounted["web"] <= named and mounted["web"], "hosted images live on a named volume"


def test_every_variable_the_compose_file_uses_is_documented():
    undocumented = compose_variables() - set(env_example())
    assert not undocumented, f"add these to docker/.env.example: {sorted(undocumented)}"


def test_every_setting_and_provider_variable_is_documented():
    """Fails when someone adds a setting to gateway/settings.py (or a provider) without its line in .env.example."""
    read = set(_SETTING_READ.findall((REPO / "gateway" / "settings.py").read_text()))
    for module in (REPO / "providers").glob("*.py"):
        read |= set(_PROVIDER_VARIABLE.findall(module.read_text()))
    assert {"SECRET_KEY", "LOCAL_PROVIDER_FALLBACK", "OPENAI_API_KEY"} <= read, "the patterns still find settings"
    undocumented = read - set(env_example())
    assert not undocumented, f"add these to docker/.env.example, each with a comment: {sorted(undocumented)}"
