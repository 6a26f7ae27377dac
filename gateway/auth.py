"""Reading the API key from a request: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from django.http import HttpRequest


def api_key_from_request(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    x_api_key = request.headers.get("X-API-Key", "").strip()
    return x_api_key or None
