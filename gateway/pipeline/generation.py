"""The image request pipeline: authenticate → validate → price → call provider → record.

Every database step is short: one statement on an async connection for the steps
every request takes (gateway.core.db.HotStatements, billing.ledger on PostgreSQL), a
borrowed thread for the rest (gateway.core.db.db_step). While the provider works, the request holds
only its coroutine.
"""

import asyncio
import base64
import logging
import math
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from accounts.callers import Caller, Door, caller_refusal
from billing.ledger import OpenedLineItem, SpendLimitExceeded, ledger
from billing.models import UsageLineItem
from billing.pricing import (
    Charge,
    ModelPricing,
    PricedRequest,
    PriceNotConfigured,
    Quote,
    price_charge,
    price_quote,
    token_bound,
)
from gateway.core.db import db_step
from gateway.core.errors import Flavor, GatewayError
from gateway.core.images import image_store, signed_image_path
from gateway.core.money import format_usd, quantize_usd
from gateway.pipeline.concurrency import Slot, concurrency_acquire, concurrency_release
from gateway.pipeline.context import CallContext, call_context_load
from gateway.pipeline.idempotency import (
    idempotency_abandon,
    idempotency_claim,
    idempotency_complete,
    idempotency_key_check,
    request_fingerprint,
)
from gateway.pipeline.legacy import is_retired, retired_refusal, successor_params
from gateway.pipeline.ratelimit import RateDecision, rate_limit_consume, rate_limit_refund
from gateway.pipeline.validation import (
    CatalogEntry,
    check_model_usable,
    end_user_of,
    end_user_require,
    parse_body,
    requested_model,
    validate_params,
)
from providers.base import (
    EDIT,
    GENERATE,
    ImageParams,
    InputImage,
    PartialImage,
    PartialImageSink,
    ProviderError,
    ProviderResult,
    TokenUsage,
)
from providers.cache import (
    CachedImage,
    CacheHit,
    CacheSettings,
    cache_key,
    cached_response_find,
    cached_response_store,
)
from providers.costs import list_cost
from providers.deadline import deadline_within
from providers.http import http_client
from providers.registry import ProviderNotConfigured, provider_for
from providers.routing import AttemptLog, PlannedAttempt, attempt_run

if TYPE_CHECKING:
    from gateway.pipeline.uploads import EditUpload

logger = logging.getLogger("gateway.pipeline.generation")

# Where a streamed request's events go, as (event type, event object); the endpoint writes them as SSE.
EventSink = Callable[[str, dict[str, Any]], Awaitable[None]]


class Deferral(Protocol):
    """What answers an admitted call in place of the provider: an async job's hand-over to its worker."""

    def take(self, payload: dict[str, Any]) -> None:
        """Take (and check) the request's fields that are the deferral's, never the provider's; GatewayError if bad."""

    async def __call__(
        self, generation: "ImageGeneration", context: CallContext, rate: RateDecision
    ) -> "GatewayResponse": ...


# The event types of OpenAI's image streams, by action.
EVENT_PREFIXES = {GENERATE: "image_generation", EDIT: "image_edit"}


@dataclass
class GatewayResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    # The answer went out as events (a streamed request); `body` is what an idempotent replay answers.
    streamed: bool = False


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


# Parameters kept on the line item beside the common ones (short values, never the prompt).
_OPTION_DETAILS = ("background", "output_format", "output_compression", "moderation", "complexity")
_DETAIL_TEXT_CHARS = 100


@dataclass(frozen=True)
class Attempt:
    """A planned attempt with what prices it: the model's prices, the request as priced, and the hold.

    `served` is the catalog entry that generates: the requested one, or a retired name's successor.
    """

    planned: PlannedAttempt
    pricing: ModelPricing
    priced: PricedRequest
    quote: Quote
    served: CatalogEntry
    translated: dict[str, str]


def _priced_request(entry: CatalogEntry, params: ImageParams) -> PricedRequest:
    return PricedRequest(
        action=params.action,
        input_images=tuple((image.width, image.height) for image in params.images),
        partial_images=params.partial_images,
        model=params.model,
        size=params.size,
        quality=params.quality,
        n=params.n,
        prompt=params.prompt,
        size_choices=entry.fixed_sizes,
        quality_choices=entry.fixed_qualities,
        size_classes=entry.size_classes,
        output_tokens=entry.output_tokens,
    )


def _provider_cost(attempt: Attempt, result: ProviderResult, images: int) -> Decimal | None:
    """What the call cost us: the provider's own figure, else its list rates for what it made (None: unknown)."""
    if result.provider_cost is not None:
        return result.provider_cost
    sent, served = attempt.planned.served, attempt.served
    usage = result.usage
    if usage is None and served.output_tokens:
        usage = token_bound(_priced_request(served, sent), images)  # not reported: what the catalog bounds it by
    return list_cost(
        served.list_rates,
        size=result.reported_size or sent.size,
        quality=result.reported_quality or sent.quality,
        images=images,
        usage=usage,
        classes=list(served.size_classes),
    )


class ImageGeneration:
    """One call to the image endpoint, from raw request to response."""

    def __init__(
        self,
        *,
        request_id: str,
        flavor: str,
        base_url: str,
        action: str = GENERATE,
        events: EventSink | None = None,
        client: str = "",
    ) -> None:
        self.request_id = request_id
        # The client's address, against which failed authentications are counted (accounts.throttle).
        self.client = client
        self.flavor = flavor
        self.base_url = base_url
        self.action = action
        # A streamed request's events go here; without a sink `stream: true` cannot be answered.
        self.events = events
        self.images: tuple[InputImage, ...] = ()
        self.mask: InputImage | None = None
        self.started = time.monotonic()
        # Everything sent upstream for this request ends this long after it started (an async job's worker
        # sets its own, longer one).
        self.deadline_seconds: float = settings.REQUEST_DEADLINE_SECONDS
        self.received_at = timezone.now()
        self.payload: dict[str, Any] = {}
        # Set by _open: the pending line item, and the details it was opened with.
        self.line_item: OpenedLineItem | None = None
        self.line_item_details: dict[str, Any] = {}
        # Set once the API key is known: who is calling.
        self.caller: Caller | None = None
        # Set by admit: the catalog name asked for (a model or a route); by _succeed: what was charged.
        self.model = ""
        self.charged = Decimal(0)
        # The organization's concurrency slot this call holds, while it holds one.
        self.slot: Slot | None = None

    async def run(
        self,
        *,
        api_key: str | None,
        body: bytes | None = None,
        idempotency_key: str | None = None,
        upload: "EditUpload | GatewayError | None" = None,
        defer: "Deferral | None" = None,
    ) -> GatewayResponse:
        """`body` is None when it was over the size limit; an edit comes as its `upload`, or why it was refused.

        With `defer` (an async job), admission ends with the line item opened and its spend held, and
        `defer` answers instead of the provider: the job's worker delivers and settles (`resume`).
        """
        try:
            return await self._run(
                api_key=api_key, body=body, idempotency_key=idempotency_key, upload=upload, defer=defer
            )
        finally:
            # However the call ends (answered, refused, failed, cancelled, its client gone), its slot is freed.
            if self.slot is not None:
                await asyncio.shield(concurrency_release(self.slot))

    async def _run(
        self,
        *,
        api_key: str | None,
        body: bytes | None,
        idempotency_key: str | None,
        upload: "EditUpload | GatewayError | None",
        defer: "Deferral | None",
    ) -> GatewayResponse:
        context, model, parse_error = await self.caller_context(api_key=api_key, body=body, upload=upload, defer=defer)
        claimed: str | None = None
        try:
            if parse_error is not None:
                raise parse_error
            plan, attempts = self.admit(context, model)
            if idempotency_key is not None:
                replay = await db_step(
                    idempotency_claim,
                    organization_id=context.caller.organization_id,
                    key=idempotency_key_check(idempotency_key),
                    fingerprint=request_fingerprint(self._fingerprinted()),
                    now=self.received_at,
                )
                if replay is not None:
                    budget = await self._budget(context)
                    headers = {**budget.headers(), "Idempotent-Replayed": "true"}
                    return GatewayResponse(status=replay.status, body=replay.body, headers=headers)
                claimed = idempotency_key
            # Images are consumed only after every check that needs no provider; a spend refusal
            # or a failed provider call below gives them back.
            rate = await rate_limit_consume(
                caller=context.caller, n=plan[0].planned.params.n, token=self.request_id, end_user=context.end_user
            )
            # Only a call the rate limits let through takes a slot (a replay calls no provider; an async job is
            # not counted: gateway.pipeline.concurrency); refused, it gives its images back.
            if defer is None:
                try:
                    self.slot = await concurrency_acquire(caller=context.caller, token=self.request_id)
                except GatewayError as error:
                    error.headers.update((await rate_limit_refund(decision=rate)).headers())
                    raise
        except GatewayError as error:
            await self._refuse(context, error, claimed)
            raise
        try:
            if defer is None:
                response = await self._generate(context, plan, attempts)
            else:
                response = await self._defer(context, plan[0], rate, defer)
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

    async def caller_context(
        self,
        *,
        api_key: str | None,
        body: bytes | None,
        upload: "EditUpload | GatewayError | None",
        defer: "Deferral | None" = None,
    ) -> tuple[CallContext, str, GatewayError | None]:
        """Who calls (refused here without a valid key, or for a caller that may not call) and the model asked
        for; a malformed request's error is returned, not raised, to be answered once the caller is known.
        `defer` (an async job) takes what it keeps of the request from the payload."""
        if not api_key:
            raise GatewayError(
                401, "invalid_api_key", "Missing API key. Send it as 'Authorization: Bearer <key>' or 'X-API-Key'."
            )
        parse_error: GatewayError | None = None
        model: str | None = None
        try:
            self.payload = self._request_payload(body, upload)
            if defer is not None:
                defer.take(self.payload)
            model = requested_model(self.payload)
        except GatewayError as error:
            parse_error = error
        context = await call_context_load(api_key, model, end_user_of(self.payload), client=self.client)
        if context is None:
            raise GatewayError(401, "invalid_api_key", "Invalid API key: unknown, revoked or expired.")
        self.caller = context.caller
        refusal = caller_refusal(context.caller, door=Door.IMAGES)
        if refusal is not None:
            raise refusal
        return context, model or "", parse_error

    def _request_payload(self, body: bytes | None, upload: "EditUpload | GatewayError | None") -> dict[str, Any]:
        if self.action == EDIT:
            if isinstance(upload, GatewayError):
                raise upload
            assert upload is not None
            self.images, self.mask = tuple(upload.images), upload.mask
            return upload.payload()
        if body is None:
            raise GatewayError(
                413,
                "request_too_large",
                f"The request body exceeds {settings.MAX_REQUEST_BODY_BYTES} bytes.",
            )
        return parse_body(body)

    def _fingerprinted(self) -> dict[str, Any]:
        """What makes two requests the same for an idempotency key: the fields, and an edit's files."""
        if self.action == GENERATE:
            return self.payload
        files = [*self.images, *([self.mask] if self.mask else [])]
        return {**self.payload, "files": [[f.size_bytes, f.width, f.height, f.content_type] for f in files]}

    async def _refuse(self, context: CallContext, error: GatewayError, claimed: str | None) -> None:
        """A refusal before the provider: record it, free the key, and tell the caller its budget."""
        if claimed is not None:
            await db_step(idempotency_abandon, organization_id=context.caller.organization_id, key=claimed)
        if "x-ratelimit-limit-images-minute" not in error.headers and error.status != 503:
            # When the limiter itself is unavailable, the refusal stands without budget headers.
            with suppress(GatewayError):
                budget = await self._budget(context)
                error.headers.update(budget.headers())
        await self._record_rejection(context, error)

    async def _budget(self, context: CallContext) -> RateDecision:
        """The caller's image budget, as the rate limit headers tell it; nothing is consumed."""
        return await rate_limit_consume(caller=context.caller, n=0, token=self.request_id, end_user=context.end_user)

    async def _give_back(
        self, context: CallContext, exc: BaseException, rate: RateDecision, claimed: str | None
    ) -> None:
        budget = await rate_limit_refund(decision=rate)
        if isinstance(exc, GatewayError):
            exc.headers.update(budget.headers())
        if claimed is not None:
            await db_step(idempotency_abandon, organization_id=context.caller.organization_id, key=claimed)

    def admit(self, context: CallContext, model: str) -> tuple[list[Attempt], AttemptLog]:
        """The attempts to make, in order; a route's candidates that cannot take this request are skipped."""
        end_user_require(self.payload, required=context.caller.requires_end_user)
        editor = ""
        if self.action == EDIT and context.entry is not None and not context.entry.edit and context.catalog:
            editor = context.catalog.editor_for(context.entry, self.received_at.date())
        entry = check_model_usable(context.entry, model, self.action, editor)
        requested = self.model = context.route or entry.name
        if not context.caller.allows_model(requested):
            raise GatewayError(403, "model_not_allowed", f"This API key may not use model {requested}.", param="model")
        plan: list[Attempt] = []
        attempts = AttemptLog()
        first_error: GatewayError | None = None
        for candidate, pricing in [(entry, context.pricing), *context.fallbacks]:
            try:
                plan.append(self._plan_attempt(context, candidate, pricing))
            except GatewayError as error:
                first_error = first_error or error
                attempts.skipped(candidate.name, error.message)
        if not plan:
            assert first_error is not None
            raise first_error
        return plan, attempts

    def _plan_attempt(self, context: CallContext, entry: CatalogEntry, pricing: ModelPricing) -> Attempt:
        """Validate and price the request as `entry`; a name retired upstream is sent to its successor."""
        params = validate_params(
            self.payload,
            entry,
            provider_required=self.flavor == Flavor.FLAT,
            images=self.images,
            mask=self.mask,
            action=self.action,
        )
        if params.stream and self.events is None:
            # Only an async job has no event sink: its answer is read from the job, never streamed.
            raise GatewayError(
                400,
                "invalid_parameter",
                "An async job (Prefer: respond-async) cannot stream: omit 'stream', or drop the Prefer header.",
                param="stream",
            )
        priced = _priced_request(entry, params)
        try:
            quote = price_quote(pricing, priced)
        except PriceNotConfigured as missing:
            raise GatewayError(400, "IMAGE_CONFIG_NOT_FOUND", missing.message, param="model") from None
        served, sent, translated = entry, None, {}
        if is_retired(entry, self.received_at.date()):
            successor = context.catalog.models.get(entry.successor) if context.catalog and entry.successor else None
            if successor is None or not entry.successor_enabled:
                raise retired_refusal(entry)
            served = successor[0]
            translation = successor_params(params, served)
            sent, translated = translation.params, translation.changes
        try:
            provider = provider_for(served.provider, served.name)
        except ProviderNotConfigured as exc:
            raise GatewayError(
                503,
                "provider_not_configured",
                f"Model {served.name} is served by provider '{exc.slug}', which is not configured on this gateway.",
            ) from None
        planned = PlannedAttempt(
            params=params,
            unit_price=quote.unit_price,
            provider=provider,
            upstream_model=served.upstream_model,
            hold=quote.hold,
            sent=sent,
            output_tokens=served.output_tokens,
        )
        return Attempt(
            planned=planned, pricing=pricing, priced=priced, quote=quote, served=served, translated=translated
        )

    def _request_details(self) -> dict[str, Any]:
        """What of the request is kept on the line item: parameters, never the prompt itself."""
        prompt = self.payload.get("prompt")
        # What a client typed is kept truncated: it is a record of the request, never a column of its own.
        details: dict[str, Any] = {
            key: value[:_DETAIL_TEXT_CHARS] if isinstance(value, str) else value
            for key in ("model", "n", "size", "quality", "style", "response_format", *_OPTION_DETAILS)
            if isinstance(value := self.payload.get(key), str | int)
        }
        if isinstance(prompt, str):
            details["prompt_chars"] = len(prompt)
        if self.action == EDIT:
            details["action"] = EDIT
            details["input_images"] = [f"{image.width}x{image.height}" for image in self.images]
            details["mask"] = self.mask is not None
        if self.payload.get("stream") is True:
            details["stream"] = True
            details["partial_images"] = self.payload.get("partial_images") or 0
        details["api"] = self.flavor
        return details

    async def _record_rejection(
        self, context: CallContext, error: GatewayError, *, opened_id: int | None = None
    ) -> None:
        payload = self.payload
        await ledger().line_item_refuse(
            opened_id=opened_id,
            request_id=self.request_id,
            created_at=self.received_at,
            organization_id=context.caller.organization_id,
            api_key_id=context.caller.api_key_id,
            project_id=context.caller.project_id,
            status=UsageLineItem.Status.REJECTED,
            # A model the catalog does not have is recorded as none: what the client named stays in `details`.
            model=context.entry.name if context.entry else "",
            provider=context.entry.provider if context.entry else "",
            size=str(payload.get("size") or "")[:16],
            quality=str(payload.get("quality") or "")[:16],
            n=payload["n"] if isinstance(payload.get("n"), int) and 0 <= payload["n"] < 32768 else 0,
            end_user=end_user_of(payload),
            error_code=error.code,
            http_status=error.status,
            latency_ms=_elapsed_ms(self.started),
            details={**self._request_details(), "error": error.message[:500]},
        )

    async def _generate(self, context: CallContext, plan: list[Attempt], attempts: AttemptLog):
        first = plan[0].planned
        streamed = first.params.stream
        # An edit's answer depends on its images, a stream's on being watched: neither is served from the cache.
        cache = context.cache if self.action == GENERATE and not streamed else None
        key = cache_key(
            organization_id=context.caller.organization_id,
            model=context.route or first.params.model,
            params=first.params,
        )
        if cache is not None:
            hit = await db_step(cached_response_find, organization_id=context.caller.organization_id, key=key)
            if hit is not None:
                return await self._serve_cached(context, first.params, hit, cache)
        await self._open_for(context, plan[0])
        return await self._deliver(context, plan, attempts, cache=cache, stored_key=key)

    async def _open_for(self, context: CallContext, first: Attempt) -> None:
        await self._open(
            context,
            first.planned.params,
            hold=first.quote.hold,
            unit_price=first.planned.unit_price,
            provider_slug=first.planned.provider.slug,
        )

    async def _defer(self, context: CallContext, first: Attempt, rate: RateDecision, defer: "Deferral"):
        """Open the line item with its hold, then hand the admitted call over; a failed hand-over closes it at 0."""
        await self._open_for(context, first)
        try:
            return await defer(self, context, rate)
        except BaseException:
            await asyncio.shield(self._fail(status=500, code="internal_error"))
            raise

    async def resume(self, context: CallContext, rate: RateDecision) -> GatewayResponse:
        """The second half of a deferred call, on a worker: plan it again, call the provider, settle, answer.

        `self.line_item` is the one opened at admission; its hold is renewed at today's price (a price may
        have changed while the job waited), all or nothing. A plan that no longer holds (the model was
        deactivated meanwhile, a cap has no room left) fails the line item; any failure gives the images back,
        as a synchronous call does.
        """
        try:
            try:
                plan, attempts = self.admit(context, requested_model(self.payload) or "")
                await self._reserve_for(plan[0], context)
            except (GatewayError, _SpendRefusedAttempt) as error:
                await self._fail(status=error.status, code=error.code, details={"error": error.message[:500]})
                raise error.refusal if isinstance(error, _SpendRefusedAttempt) else error from None
            return await self._deliver(context, plan, attempts, cache=None, stored_key="")
        except BaseException as exc:
            await asyncio.shield(self._give_back(context, exc, rate, None))
            raise

    async def _deliver(
        self,
        context: CallContext,
        plan: list[Attempt],
        attempts: AttemptLog,
        *,
        cache: CacheSettings | None,
        stored_key: str,
    ) -> GatewayResponse:
        """With the line item open: the provider call (and fallbacks), the images stored, the settlement, the body."""
        first = plan[0].planned
        streamed = first.params.stream
        try:
            attempt, result = await self._first_delivery(context, plan, attempts)
            # Stored when a URL or the cache needs them, or the request streamed (its client may be gone);
            # b64_json alone is answered from memory.
            hosted = first.params.response_format == "url" or cache is not None or streamed
            images = await asyncio.to_thread(self._host_images, result) if hosted else []
        except ProviderError as exc:
            await self._fail(
                status=exc.status,
                code=exc.code,
                details={
                    "upstream_status": exc.upstream_status,
                    "error": exc.message[:500],
                    "attempts": attempts.records,
                },
            )
            if isinstance(exc, _SpendRefusedAttempt):
                raise exc.refusal from None
            raise GatewayError(exc.status, exc.code, exc.message, headers=_retry_headers(exc)) from exc
        except BaseException:
            # Anything unexpected (or a cancelled request) still settles the line item at zero.
            await asyncio.shield(self._fail(status=500, code="internal_error"))
            raise
        params = attempt.planned.params
        delivered = len(result.images)
        assert self.line_item is not None
        charge = price_charge(
            attempt.pricing,
            attempt.priced,
            attempt.quote,
            images=delivered,
            usage=result.usage,
            reported_size=result.reported_size if attempt.planned.sent is None else "",
            reported_quality=result.reported_quality if attempt.planned.sent is None else "",
            held=self.line_item.reserved,
        )
        provider_cost = _provider_cost(attempt, result, delivered)
        details: dict[str, Any] = {
            "images_delivered": delivered,
            "upstream_request_id": result.upstream_request_id,
            "attempts": attempts.records,
            **charge.notes,
        }
        if provider_cost is None:
            details["provider_cost_unknown"] = True
        if attempt.planned.sent is not None:
            details["model_used"] = attempt.served.name
            details["translated"] = attempt.translated
        if streamed:
            details["stored_images"] = [image.name for image in images]
        latency_ms = await self._succeed(
            charge=charge,
            model=params.model,
            provider=attempt.planned.provider.slug,
            provider_cost=provider_cost or Decimal(0),
            details=details,
        )
        if cache is not None and images:
            await db_step(
                cached_response_store,
                organization_id=context.caller.organization_id,
                key=stored_key,
                model=params.model,
                provider=attempt.planned.provider.slug,
                request_id=self.request_id,
                images=images,
                ttl=cache.ttl,
            )
        cost = quantize_usd(charge.cost)
        perf = self._perf(
            attempt.planned.provider.slug,
            params,
            delivered,
            cost,
            latency_ms,
            model_used=attempt.served.name,
            size=charge.size,
            quality=charge.quality,
        )
        if len(attempts.records) > 1:
            perf["attempts"] = attempts.records
        if hosted and not streamed:
            data = await asyncio.to_thread(self._image_data, images, params.response_format)
        else:
            data = [_inline_image(image.data, image.revised_prompt) for image in result.images]
        body: dict[str, Any] = {"created": int(self.received_at.timestamp()), "data": data}
        body |= _echoed(attempt.planned.served, charge)
        if result.usage is not None:
            body["usage"] = openai_usage(result.usage)
        body["perf"] = perf
        if streamed:
            await self._stream_completed(body)
        return GatewayResponse(status=200, body=body, streamed=streamed)

    def _event(self, kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        """One event of OpenAI's image stream, with the fields every event of it carries."""
        event_type = f"{EVENT_PREFIXES[self.action]}.{kind}"
        return event_type, {"type": event_type, "created_at": int(time.time()), **fields}

    def _stream_formats(self, params: ImageParams) -> dict[str, Any]:
        return {
            "background": params.options.get("background", "auto"),
            "output_format": params.options.get("output_format", "png"),
        }

    def _partial_sink(self, params: ImageParams) -> PartialImageSink | None:
        """Where a streamed attempt's partial images go: out as events, as they arrive."""
        events = self.events
        if not params.stream or events is None:
            return None

        async def partial_image(partial: PartialImage) -> None:
            await events(
                *self._event(
                    "partial_image",
                    b64_json=partial.b64_json,
                    partial_image_index=partial.index,
                    size=params.size,
                    quality=params.quality,
                    **self._stream_formats(params),
                )
            )

        return partial_image

    async def _stream_completed(self, body: dict[str, Any]) -> None:
        """One completed event per image: its base64, and the request's usage and perf (the same on each)."""
        assert self.events is not None
        echoed = {name: body[name] for name in ("size", "quality", "background", "output_format") if name in body}
        echoed.setdefault("background", "auto")
        echoed.setdefault("output_format", "png")
        for item in body["data"]:
            fields = {**item, **echoed, "perf": body["perf"]}
            if "usage" in body:
                fields["usage"] = body["usage"]
            await self.events(*self._event("completed", **fields))

    async def _first_delivery(
        self, context: CallContext, plan: list[Attempt], attempts: AttemptLog
    ) -> tuple[Attempt, ProviderResult]:
        """Try each planned model in order; each attempt holds its own price against the caps.

        Raises the last attempt's error, or the first one that forbids a fallback
        (a content-policy refusal: another model would be asked the same prompt).
        """
        with deadline_within(max(0.0, self.deadline_seconds - (time.monotonic() - self.started))):
            return await self._attempts_run(context, plan, attempts)

    async def _attempts_run(
        self, context: CallContext, plan: list[Attempt], attempts: AttemptLog
    ) -> tuple[Attempt, ProviderResult]:
        for attempt in plan:
            try:
                if attempt is not plan[0]:
                    await self._reserve_for(attempt, context)
                result = await attempt_run(
                    attempt.planned,
                    request_id=self.request_id,
                    client=http_client(),
                    on_partial=self._partial_sink(attempt.planned.params),
                )
            except ProviderError as exc:
                attempts.failed(attempt.planned, exc)
                if not exc.allows_fallback or attempt is plan[-1]:
                    raise
            else:
                attempts.succeeded(attempt.planned, result)
                return attempt, result
        raise AssertionError("a plan always has at least one attempt")

    async def _reserve_for(self, attempt: Attempt, context: CallContext) -> None:
        """A fallback attempt holds its own price against the caps, in place of the previous attempt's hold."""
        assert self.line_item is not None
        if not context.caller.has_spend_limits:
            return
        try:
            self.line_item = await ledger().reservation_replace(
                opened=self.line_item,
                organization_id=context.caller.organization_id,
                api_key_id=context.caller.api_key_id,
                project_id=context.caller.project_id,
                end_user=attempt.planned.params.end_user,
                amount=quantize_usd(attempt.quote.hold),
                now=self.received_at,
            )
        except SpendLimitExceeded as refusal:
            raise _SpendRefusedAttempt(spend_refusal(refusal, self.flavor)) from None

    async def _serve_cached(
        self, context: CallContext, params: ImageParams, hit: CacheHit, cache: CacheSettings
    ) -> GatewayResponse:
        """Serve stored images again, with no provider call, at the organization's cache price."""
        cost = quantize_usd(cache.price_per_image * len(hit.images))
        await self._open(
            context,
            params,
            hold=cost,
            unit_price=cache.price_per_image,
            provider_slug=hit.provider,
            model=hit.model,
            n=len(hit.images),
        )
        latency_ms = await self._succeed(
            charge=Charge(
                cost=cost,
                unit_price=cache.price_per_image,
                size=params.size,
                quality=params.quality,
                tokens={},
                notes={},
            ),
            details={"cached": True, "cache_source_request_id": hit.source_request_id},
        )
        perf = self._perf(hit.provider, params, len(hit.images), cost, latency_ms, model_used=hit.model)
        perf["cached"] = True
        data = await asyncio.to_thread(self._image_data, hit.images, params.response_format)
        return GatewayResponse(
            status=200, body={"created": int(self.received_at.timestamp()), "data": data, "perf": perf}
        )

    def _perf(
        self,
        provider: str,
        params: ImageParams,
        n: int,
        cost: Decimal,
        latency_ms: int,
        *,
        model_used: str = "",
        size: str = "",
        quality: str = "",
    ) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "provider": provider,
            "model_used": model_used or params.model,
            "size": size or params.size,
            "quality": quality or params.quality,
            "n": n,
            "cost_usd": format_usd(cost),
            "latency_ms": latency_ms,
        }

    async def _open(
        self,
        context: CallContext,
        params: ImageParams,
        *,
        hold: Decimal,
        unit_price: Decimal,
        provider_slug: str,
        model: str = "",
        n: int = 0,
    ) -> None:
        """Before the provider is called: the pending line item and the spend reservation, the most it may cost."""
        n = n or params.n
        self.line_item_details = self._request_details()
        try:
            self.line_item = await ledger().line_item_open(
                amount=quantize_usd(hold),
                check_caps=context.caller.has_spend_limits,
                request_id=self.request_id,
                created_at=self.received_at,
                organization_id=context.caller.organization_id,
                api_key_id=context.caller.api_key_id,
                project_id=context.caller.project_id,
                status=UsageLineItem.Status.PENDING,
                model=model or params.model,
                provider=provider_slug,
                size=params.size,
                quality=params.quality,
                n=n,
                end_user=params.end_user,
                unit_price=unit_price,
                cost=Decimal(0),
                details=self.line_item_details,
            )
        except SpendLimitExceeded as refusal:
            error = spend_refusal(refusal, self.flavor)
            await self._record_rejection(context, error, opened_id=refusal.line_item_id)
            raise error from None

    async def _succeed(
        self,
        *,
        charge: Charge,
        details: dict,
        model: str | None = None,
        provider: str | None = None,
        provider_cost: Decimal | None = None,
    ) -> int:
        """The provider delivered: charge what was delivered, to the model that delivered it. Returns the latency."""
        latency_ms = _elapsed_ms(self.started)
        await self._settle(
            status=UsageLineItem.Status.SUCCEEDED,
            cost=charge.cost,
            http_status=200,
            latency_ms=latency_ms,
            model=model,
            provider=provider,
            unit_price=charge.unit_price,
            size=charge.size,
            quality=charge.quality,
            tokens=charge.tokens,
            provider_cost=provider_cost,
            details=details,
        )
        self.charged = charge.cost
        return latency_ms

    async def _fail(self, *, status: int, code: str, details: dict | None = None) -> None:
        """The provider call failed: the line item costs nothing and its reservation is released."""
        await self._settle(
            status=UsageLineItem.Status.FAILED,
            cost=Decimal(0),
            http_status=status,
            latency_ms=_elapsed_ms(self.started),
            error_code=code,
            details=details or {},
        )

    async def _settle(self, *, details: dict, **close: Any) -> None:
        assert self.line_item is not None
        await ledger().line_item_settle(opened=self.line_item, details={**self.line_item_details, **details}, **close)

    def _host_images(self, result: ProviderResult) -> list[CachedImage]:
        """Store every delivered image, whatever form the provider sent it in; the gateway serves it from now on."""
        day = self.received_at.strftime("%Y/%m/%d")
        return [
            CachedImage(
                name=image_store(
                    data=image.data,
                    content_type=image.content_type,
                    request_id=self.request_id,
                    index=index,
                    day=day,
                ),
                revised_prompt=image.revised_prompt,
            )
            for index, image in enumerate(result.images)
        ]

    def _image_data(self, images: list[CachedImage], response_format: str) -> list[dict[str, str]]:
        """The `data` array: each hosted image behind a signed URL, or inlined as base64."""
        if response_format == "b64_json":
            items = []
            for image in images:
                with default_storage.open(image.name, "rb") as stored:
                    items.append(_inline_image(stored.read(), image.revised_prompt))
            return items
        return [
            {"url": self.base_url + signed_image_path(image.name)}
            | ({"revised_prompt": image.revised_prompt} if image.revised_prompt else {})
            for image in images
        ]


def _echoed(sent: ImageParams, charge: Charge) -> dict[str, Any]:
    """What OpenAI's image responses echo of the request: the size and quality made, and the format options."""
    echoed: dict[str, Any] = {"size": charge.size, "quality": charge.quality}
    echoed |= {name: sent.options[name] for name in ("background", "output_format") if name in sent.options}
    return echoed


def openai_usage(usage: TokenUsage) -> dict[str, Any]:
    """A provider's token usage in the shape of OpenAI's `usage` object."""
    text = usage.text_input + usage.cached_text_input
    image = usage.image_input + usage.cached_image_input
    output = usage.image_output + usage.text_output
    input_details = {"text_tokens": text, "image_tokens": image}
    if usage.cached_text_input or usage.cached_image_input:
        input_details["cached_tokens"] = usage.cached_text_input + usage.cached_image_input
    shaped: dict[str, Any] = {
        "input_tokens": text + image,
        "input_tokens_details": input_details,
        "output_tokens": output,
        "total_tokens": text + image + output,
    }
    if usage.text_output:
        shaped["output_tokens_details"] = {"image_tokens": usage.image_output, "text_tokens": usage.text_output}
    return shaped


def _inline_image(data: bytes, revised_prompt: str | None) -> dict[str, str]:
    item = {"b64_json": base64.b64encode(data).decode()}
    if revised_prompt:
        item["revised_prompt"] = revised_prompt
    return item


def _retry_headers(error: ProviderError) -> dict[str, str]:
    """Tell the client when to come back: the provider's hint, or a second for an upstream 429 without one."""
    if error.retry_after is not None:
        return {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
    if error.status == 429:
        return {"Retry-After": "1"}
    return {}


# A cap that starts afresh within this many seconds is worth waiting for: its refusal says when.
SPEND_RESET_WAIT_SECONDS = 60


def spend_refusal(refusal: SpendLimitExceeded, flavor: str) -> GatewayError:
    """A spend cap without room, as each flavour answers it.

    OpenAI's answers as OpenAI does for an exhausted quota: 429 `insufficient_quota`, which the official
    SDK raises as RateLimitError; `x-should-retry: false` stops its retries, which could only fail again,
    unless the cap resets within a minute, when `Retry-After` says how long to wait instead. The flat
    flavour answers 402 `spend_limit_exceeded`, as it always has.
    """
    if flavor == Flavor.FLAT:
        return GatewayError(402, "spend_limit_exceeded", refusal.message)
    wait = None if refusal.resets_at is None else (refusal.resets_at - timezone.now()).total_seconds()
    if wait is not None and wait <= SPEND_RESET_WAIT_SECONDS:
        headers = {"Retry-After": str(max(1, math.ceil(wait)))}
    else:
        headers = {"x-should-retry": "false"}
    return GatewayError(429, "insufficient_quota", refusal.message, headers=headers)


class _SpendRefusedAttempt(ProviderError):
    """A fallback attempt a cap has no room for: the chain goes on as after a failure, and when it was the
    last attempt the client gets `refusal`, the answer a cap gives when the request opens."""

    def __init__(self, refusal: GatewayError) -> None:
        super().__init__(refusal.message, code=refusal.code, status=refusal.status, permanent=True)
        self.refusal = refusal
