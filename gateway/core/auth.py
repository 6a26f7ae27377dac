"""Reading the API key from a request: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from django.http import HttpRequest


def api_key_from_headers(*, authorization: str, x_api_key: str) -> str | None:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return x_api_key.strip() or None


def api_key_from_request(request: HttpRequest) -> str | None:
    return api_key_from_headers(
        authorization=request.headers.get("Authorization", ""), x_api_key=request.headers.get("X-API-Key", "")
    )
