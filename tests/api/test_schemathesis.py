"""Schemathesis over every operation of the OpenAPI document at /api/schema/, image endpoints included.

The app runs in this process (schemathesis' ASGI client); every case is checked for a 5xx, a status the document
does not list, a content type it does not list and a body or header that does not conform. Cases are generated
both to fit the document and to break it (hostile input). They carry a valid key of an organization whose limits
never stand in the way, so they reach validation, and the local provider renders what is valid; the key-less and
bad-key cases are played once per operation below.
"""

import os
import re
import zlib
from decimal import Decimal

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.services import api_key_create, org_tier_set
from billing.services import price_set
from gateway.asgi import application
from tests.governance import SMALL_IMAGE, small_image_price

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# SCHEMATHESIS_CASES lowers it for a quick local run; CI runs the full count.
CASES_PER_OPERATION = int(os.environ.get("SCHEMATHESIS_CASES", "500"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture
def api_key(make_org) -> str:
    """A key of an organization with generous limits, priced for the small images the cases ask for."""
    small_image_price("0.01")
    price_set(model="dall-e-2", quality="standard", size="512x512", unit_price=Decimal("0.01"))
    organization = make_org("fuzz")
    org_tier_set(organization=organization, tier_slug="enterprise", images_per_minute=10**6, images_per_day=10**7)
    return api_key_create(organization=organization, name="schemathesis").plaintext


def _schema():
    # The document /api/schema/ serves (drf-spectacular with its hooks), called in this process.
    loaded = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    loaded.app = application
    return loaded


schema = _schema()


@schema.parametrize()
@settings(
    max_examples=CASES_PER_OPERATION,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms(case, api_key):
    if case.operation.path.endswith("/images/generations") and isinstance(case.body, dict):
        if zlib.crc32(repr(case.body).encode()) % 2:
            # Half the generation cases become a small, valid image with the generated prompt, so the local
            # provider renders and the ledger settles; the flat flavour also names the provider.
            prompt = case.body.get("prompt")
            flat = {"provider": "openai"} if case.operation.path.startswith("/api/") else {}
            drawn = {"prompt": prompt} if isinstance(prompt, str) and prompt.strip() else {}
            case.body = {**SMALL_IMAGE, **flat, **drawn}
    case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"}, checks=CHECKS)


@pytest.mark.parametrize("authorization", [None, "Bearer igw-not-a-real-key", "Basic Zm9vOmJhcg=="])
def test_refused_keys_conform_at_every_operation(seeded, authorization):
    for result in schema.get_all_operations():
        operation = result.ok()
        case = operation.Case(path_parameters={name: "x" for name in re.findall(r"{(\w+)}", operation.path)})
        headers = {"Authorization": authorization} if authorization else {}
        response = case.call(headers=headers)
        assert response.status_code == 401, (operation.label, response.status_code, response.text[:300])
        case.validate_response(response, checks=CHECKS)
