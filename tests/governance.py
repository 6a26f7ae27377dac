"""Helpers shared by the governance tests: cheap image requests, fired many at a time."""

import asyncio
from decimal import Decimal

import httpx

from billing.services import price_set

URL = "/v1/images/generations"
# The cheapest image to render locally; its price is set per test.
SMALL_IMAGE = {"model": "dall-e-2", "size": "256x256", "response_format": "b64_json", "prompt": "a small square"}


def small_image_price(usd: str) -> Decimal:
    return price_set(model="dall-e-2", quality="standard", size="256x256", unit_price=Decimal(usd)).unit_price


def bearer(plaintext: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plaintext}"}


async def post_many(
    client: httpx.AsyncClient, headers: dict[str, str], count: int, body: dict | None = None
) -> list[httpx.Response]:
    """`count` identical requests in flight at once."""
    payload = body or SMALL_IMAGE
    return list(await asyncio.gather(*(client.post(URL, json=payload, headers=headers) for _ in range(count))))


def statuses(responses: list[httpx.Response]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for response in responses:
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
    return counts
