"""The image request pipeline: authenticate → validate → price → call provider → record.

Every database step is short and runs on a borrowed thread (gateway.db.db_step);
while the provider works, the request holds only its coroutine.
"""

import asyncio
import base64
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from accounts.services import api_key_authenticate
from billing.models import ModelSpec, PriceConfig, UsageLineItem
from billing.money import format_usd, quantize_usd
from billing.services import line_item_create
from billing.spend import SpendLimitExceeded, line_item_open, line_item_settle
from gateway.db import db_step
from gateway.errors import Flavor, GatewayError
from gateway.idempotency import (
    idempotency_abandon,
    idempotency_claim,
    idempotency_complete,
    idempotency_key_check,
    request_fingerprint,
)
from gateway.images import image_store, signed_image_path
from gateway.ratelimit import RateDecision, rate_limit_consume, rate_limit_refund
from gateway.validation import (
    CatalogEntry,
    ImageParams,
    check_model_usable,
    parse_body,
    requested_model,
    validate_params,
)
from providers.base import ImageJob, ProviderError, ProviderResult
from providers.http import http_client
from providers.registry import ProviderNotConfigured, provider_for

logger = logging.getLogger("gateway.pipeline")


@dataclass(frozen=True)
class Caller:
    """Who is calling, as far as the pipeline needs to know, detached from the ORM."""

    api_key_id: int
    api_key_prefix: str
    allowed_models: tuple[str, ...]
    organization_id: int
    organization_slug: str
    tier_name: str
    images_per_minute: int
    images_per_day: int
    key_images_per_minute: int | None = None
    key_images_per_day: int | None = None

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models


@dataclass
class CallContext:
    """Everything phase one loaded: the caller, the catalog entry and its prices."""

    caller: Caller
    entry: CatalogEntry | None
    prices: dict[tuple[str, str], Decimal] = field(default_factory=dict)


@dataclass
class GatewayResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def catalog_entry(spec: ModelSpec) -> CatalogEntry:
    return CatalogEntry(
        name=spec.name,
        provider=spec.provider,
        upstream_model=spec.upstream_model or spec.name,
        supports_images=spec.supports_images,
        suggested_model=spec.suggested_model,
        sizes=tuple(spec.sizes),
        qualities=tuple(spec.qualities),
        styles=tuple(spec.styles),
        default_size=spec.default_size or (spec.sizes[0] if spec.sizes else "1024x1024"),
        default_quality=spec.default_quality or (spec.qualities[0] if spec.qualities else "standard"),
        max_n=spec.max_n,
        max_prompt_length=spec.max_prompt_length,
    )


def caller_from_key(plaintext: str) -> Caller | None:
    api_key = api_key_authenticate(plaintext)
    if api_key is None:
        return None
    org = api_key.organization
    return Caller(
        api_key_id=api_key.pk,
        api_key_prefix=api_key.prefix,
        allowed_models=tuple(api_key.allowed_models),
        organization_id=org.pk,
        organization_slug=org.slug,
        tier_name=org.tier.name,
        images_per_minute=org.images_per_minute,
        images_per_day=org.images_per_day,
        key_images_per_minute=api_key.images_per_minute,
        key_images_per_day=api_key.images_per_day,
    )


def load_call_context(plaintext: str, model: str | None) -> CallContext | None:
    """Phase one, in one database step: the key, the model's catalog entry and its prices."""
    caller = caller_from_key(plaintext)
    if caller is None:
        return None
    context = CallContext(caller=caller, entry=None)
    if model is not None:
        spec = ModelSpec.objects.filter(name=model, is_active=True).first()
        if spec is not None:
            context.entry = catalog_entry(spec)
            context.prices = {
                (quality, size): price
                for quality, size, price in PriceConfig.objects.filter(model=spec).values_list(
                    "quality", "size", "unit_price"
                )
            }
    return context


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _unit_price(context: CallContext, params: ImageParams) -> Decimal:
    price = context.prices.get((params.quality, params.size))
    if price is None:
        raise GatewayError(
            400,
            "IMAGE_CONFIG_NOT_FOUND",
            f"Image pricing not configured for model '{params.model}' ({params.quality}, {params.size})",
            param="model",
        )
    return price


class ImageGeneration:
    """One call to the image endpoint, from raw request to response."""

    def __init__(self, *, request_id: str, flavor: str, base_url: str) -> None:
        self.request_id = request_id
        self.flavor = flavor
        self.base_url = base_url
        self.started = time.monotonic()
        self.received_at = timezone.now()
        self.payload: dict[str, Any] = {}

    async def run(
        self, *, api_key: str | None, body: bytes | None, idempotency_key: str | None = None
    ) -> GatewayResponse:
        """`body` is None when it was over the size limit."""
        if not api_key:
            raise GatewayError(
                401, "invalid_api_key", "Missing API key. Send it as 'Authorization: Bearer <key>' or 'X-API-Key'."
            )
        parse_error: GatewayError | None = None
        model: str | None = None
        try:
            if body is None:
                raise GatewayError(
                    413,
                    "request_too_large",
                    f"The request body exceeds {settings.MAX_REQUEST_BODY_BYTES} bytes.",
                )
            self.payload = parse_body(body)
            model = requested_model(self.payload)
        except GatewayError as error:
            parse_error = error
        context = await db_step(load_call_context, api_key, model)
        if context is None:
            raise GatewayError(401, "invalid_api_key", "Invalid API key: unknown, revoked or expired.")
        claimed: str | None = None
        try:
            if parse_error is not None:
                raise parse_error
            params, unit_price, provider = self._admit(context, model or "")
            if idempotency_key is not None:
                replay = await db_step(
                    idempotency_claim,
                    organization_id=context.caller.organization_id,
                    key=idempotency_key_check(idempotency_key),
                    fingerprint=request_fingerprint(self.payload),
                    now=self.received_at,
                )
                if replay is not None:
                    budget = await rate_limit_consume(caller=context.caller, n=0, token=self.request_id)
                    headers = {**budget.headers(), "Idempotent-Replayed": "true"}
                    return GatewayResponse(status=replay.status, body=replay.body, headers=headers)
                claimed = idempotency_key
            # Images are consumed only after every check that needs no provider; a spend refusal
            # or a failed provider call below gives them back.
            rate = await rate_limit_consume(caller=context.caller, n=params.n, token=self.request_id)
        except GatewayError as error:
            await self._refuse(context, error, claimed)
            raise
        try:
            response = await self._generate(context, params, unit_price, provider)
        except BaseException as exc:
            # A refused or failed call gives its images back and frees its idempotency key.
            await asyncio.shield(self._give_back(context, exc, rate, claimed))
            raise
        response.headers.update(rate.headers())
        if claimed is not None:
            await db_step(
                idempotency_complete,
                organization_id=context.caller.organization_id,
                key=claimed,
                status=response.status,
                body=response.body,
            )
        return response

    async def _refuse(self, context: CallContext, error: GatewayError, claimed: str | None) -> None:
        """A refusal before the provider: record it, free the key, and tell the caller its budget."""
        if claimed is not None:
            await db_step(idempotency_abandon, organization_id=context.caller.organization_id, key=claimed)
        if "x-ratelimit-limit-images-minute" not in error.headers and error.status != 503:
            try:
                budget = await rate_limit_consume(caller=context.caller, n=0, token=self.request_id)
                error.headers.update(budget.headers())
            except GatewayError:
                pass  # the limiter itself is unavailable; the refusal stands without budget headers
        await self._record_rejection(context, error)

    async def _give_back(
        self, context: CallContext, exc: BaseException, rate: RateDecision, claimed: str | None
    ) -> None:
        budget = await rate_limit_refund(decision=rate)
        if isinstance(exc, GatewayError):
            exc.headers.update(budget.headers())
        if claimed is not None:
            await db_step(idempotency_abandon, organization_id=context.caller.organization_id, key=claimed)

    def _admit(self, context: CallContext, model: str):
        entry = check_model_usable(context.entry, model)
        if not context.caller.allows_model(entry.name):
            raise GatewayError(403, "model_not_allowed", f"This API key may not use model {entry.name}.", param="model")
        params = validate_params(self.payload, entry, provider_required=self.flavor == Flavor.FLAT)
        unit_price = _unit_price(context, params)
        try:
            provider = provider_for(entry.provider)
        except ProviderNotConfigured as exc:
            raise GatewayError(
                503,
                "provider_not_configured",
                f"Model {entry.name} is served by provider '{exc.slug}', which is not configured on this gateway.",
            ) from None
        return params, unit_price, provider

    def _request_details(self) -> dict[str, Any]:
        """What of the request is kept on the line item: parameters, never the prompt itself."""
        prompt = self.payload.get("prompt")
        details: dict[str, Any] = {
            key: self.payload[key]
            for key in ("model", "n", "size", "quality", "style", "response_format")
            if key in self.payload and isinstance(self.payload[key], str | int)
        }
        if isinstance(prompt, str):
            details["prompt_chars"] = len(prompt)
        details["api"] = self.flavor
        return details

    async def _record_rejection(self, context: CallContext, error: GatewayError) -> None:
        payload = self.payload
        await db_step(
            line_item_create,
            request_id=self.request_id,
            created_at=self.received_at,
            organization_id=context.caller.organization_id,
            api_key_id=context.caller.api_key_id,
            status=UsageLineItem.Status.REJECTED,
            model=str(payload.get("model") or "")[:100] if context.entry is None else context.entry.name,
            provider=context.entry.provider if context.entry else "",
            size=str(payload.get("size") or "")[:16],
            quality=str(payload.get("quality") or "")[:16],
            n=payload["n"] if isinstance(payload.get("n"), int) and 0 <= payload["n"] < 32768 else 0,
            end_user=str(payload.get("user") or "")[:256],
            error_code=error.code,
            http_status=error.status,
            latency_ms=_elapsed_ms(self.started),
            details={**self._request_details(), "error": error.message[:500]},
        )

    async def _generate(self, context: CallContext, params: ImageParams, unit_price: Decimal, provider):
        assert context.entry is not None
        line_item_id = await self._open(context, params, unit_price, provider.slug)
        job = ImageJob(
            request_id=self.request_id,
            model=params.model,
            upstream_model=context.entry.upstream_model,
            prompt=params.prompt,
            n=params.n,
            size=params.size,
            quality=params.quality,
            style=params.style,
            end_user=params.end_user,
        )
        try:
            result = await provider.generate(job, http_client())
            if not result.images:
                raise ProviderError(
                    "The provider returned no images (all were filtered).",
                    code="content_policy_violation",
                    status=400,
                    permanent=True,
                )
            data = await asyncio.to_thread(self._image_data, result, params.response_format)
        except ProviderError as exc:
            await self._fail(
                line_item_id,
                status=exc.status,
                code=exc.code,
                details={"upstream_status": exc.upstream_status, "error": exc.message[:500]},
            )
            raise GatewayError(exc.status, exc.code, exc.message) from exc
        except BaseException:
            # Anything unexpected (or a cancelled request) still settles the line item at zero.
            await asyncio.shield(self._fail(line_item_id, status=500, code="internal_error"))
            raise
        delivered = len(result.images)
        cost = quantize_usd(unit_price * delivered)
        latency_ms = await self._succeed(
            line_item_id,
            cost=cost,
            details={"images_delivered": delivered, "upstream_request_id": result.upstream_request_id},
        )
        return GatewayResponse(
            status=200,
            body={
                "created": int(self.received_at.timestamp()),
                "data": data,
                "perf": {
                    "request_id": self.request_id,
                    "provider": provider.slug,
                    "model_used": params.model,
                    "size": params.size,
                    "quality": params.quality,
                    "n": delivered,
                    "cost_usd": format_usd(cost),
                    "latency_ms": latency_ms,
                },
            },
        )

    async def _open(self, context: CallContext, params: ImageParams, unit_price: Decimal, provider_slug: str) -> int:
        """Before the provider is called: the pending line item and the spend reservation for all n images."""
        try:
            return await db_step(
                line_item_open,
                amount=quantize_usd(unit_price * params.n),
                request_id=self.request_id,
                created_at=self.received_at,
                organization_id=context.caller.organization_id,
                api_key_id=context.caller.api_key_id,
                status=UsageLineItem.Status.PENDING,
                model=params.model,
                provider=provider_slug,
                size=params.size,
                quality=params.quality,
                n=params.n,
                end_user=params.end_user,
                unit_price=unit_price,
                cost=Decimal(0),
                details=self._request_details(),
            )
        except SpendLimitExceeded as refusal:
            error = GatewayError(402, "spend_limit_exceeded", refusal.message)
            await self._record_rejection(context, error)
            raise error from None

    async def _succeed(self, line_item_id: int, *, cost: Decimal, details: dict) -> int:
        """The provider delivered: charge what was delivered. Returns the latency recorded."""
        latency_ms = _elapsed_ms(self.started)
        await db_step(
            line_item_settle,
            line_item_id=line_item_id,
            status=UsageLineItem.Status.SUCCEEDED,
            cost=cost,
            http_status=200,
            latency_ms=latency_ms,
            details=details,
        )
        return latency_ms

    async def _fail(self, line_item_id: int, *, status: int, code: str, details: dict | None = None) -> None:
        """The provider call failed: the line item costs nothing and its reservation is released."""
        await db_step(
            line_item_settle,
            line_item_id=line_item_id,
            status=UsageLineItem.Status.FAILED,
            cost=Decimal(0),
            http_status=status,
            latency_ms=_elapsed_ms(self.started),
            error_code=code,
            details=details,
        )

    def _image_data(self, result: ProviderResult, response_format: str) -> list[dict[str, str]]:
        """The `data` array: each image hosted behind a signed URL, or inlined as base64."""
        day = self.received_at.strftime("%Y/%m/%d")
        items = []
        for index, image in enumerate(result.images):
            item: dict[str, str] = {}
            if response_format == "b64_json":
                item["b64_json"] = base64.b64encode(image.data).decode()
            else:
                name = image_store(
                    data=image.data,
                    content_type=image.content_type,
                    request_id=self.request_id,
                    index=index,
                    day=day,
                )
                item["url"] = self.base_url + signed_image_path(name)
            if image.revised_prompt:
                item["revised_prompt"] = image.revised_prompt
            items.append(item)
        return items
