"""A NUL character in a query, a form field or the path is a 400 that names it, never a 500 from PostgreSQL."""

import pytest

from accounts.services import api_key_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    "path",
    [
        "/orgs/acme/usage/?model=a%00b",
        "/orgs/acme/usage/?end_user=%00",
        "/orgs/acme/usage/?cursor=%00",
        "/orgs/acme/audit/?action=%00",
        "/staff/usage/?org=%00",
        "/orgs/acme/usage/req-%00/",
    ],
)
def test_dashboard_pages_refuse_nul_in_parameters(people, as_user, path):
    response = as_user(people.stella).get(path)
    assert response.status_code == 400
    assert "NUL character" in response.content.decode()


def test_dashboard_forms_refuse_nul_in_fields(people, as_user):
    response = as_user(people.alice).post("/orgs/acme/keys/", {"name": "backend\x00"})
    assert response.status_code == 400
    assert "parameter 'name'" in response.content.decode()


@pytest.mark.parametrize("query", ["model=a%00b", "cursor=%00", "start=%00", "end_user=x%00"])
def test_usage_api_refuses_nul_in_parameters_as_json(people, client, query):
    key = api_key_create(organization=people.acme).plaintext
    response = client.get(f"/api/usage?{query}", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert "NUL character" in error["message"] and error["code"] == "invalid_parameter"
    assert error["param"] == query.split("=")[0]
