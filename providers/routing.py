"""Routing a request: which models to try in which order, and running one attempt.

A requested name is either a catalog model (one attempt) or a FallbackRoute
(one attempt per listed model, in order). The pipeline walks the plan, moving
on after any failure but a content-policy refusal, and charges only the attempt
that delivered; every attempt is recorded on the line item.
"""

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from providers.base import EDIT, ImageJob, ImageParams, PartialImageSink, Provider, ProviderError, ProviderResult
from providers.breaker import breaker_for, circuit_open_error
from providers.deadline import deadline_check, deadline_passed_error, time_left

# Beyond these a provider's report is garbage, not a bill (a million tokens is already ~$30 of images).
MAX_TOKENS = 100_000_000
MAX_PROVIDER_COST = Decimal(10_000)


@dataclass(frozen=True)
class PlannedAttempt:
    """One model to try: its validated parameters, its own price and its provider.

    `sent` is what the provider is asked when it differs from what was requested (a name retired
    upstream, served by its successor); `hold` is the most the attempt may cost.
    """

    params: ImageParams
    unit_price: Decimal
    provider: Provider
    upstream_model: str
    hold: Decimal = Decimal(0)
    sent: ImageParams | None = None
    output_tokens: dict[str, Any] = field(default_factory=dict)

    @property
    def served(self) -> ImageParams:
        return self.sent or self.params

    def job(self, request_id: str, on_partial: PartialImageSink | None = None) -> ImageJob:
        params = self.served
        return ImageJob(
            request_id=request_id,
            model=params.model,
            upstream_model=self.upstream_model,
            prompt=params.prompt,
            n=params.n,
            size=params.size,
            quality=params.quality,
            style=params.style,
            end_user=params.end_user,
            options=params.options,
            output_tokens=self.output_tokens,
            action=params.action,
            images=params.images,
            mask=params.mask,
            stream=params.stream,
            partial_images=params.partial_images,
            on_partial=on_partial,
        )


@dataclass
class AttemptLog:
    """What happened to each candidate, kept in the line item's details["attempts"]."""

    records: list[dict[str, Any]] = field(default_factory=list)

    def skipped(self, model: str, reason: str) -> None:
        self.records.append({"model": model, "outcome": "skipped", "error": reason[:300]})

    def failed(self, attempt: PlannedAttempt, error: ProviderError) -> None:
        self.records.append(
            {
                **self._describe(attempt),
                "outcome": "failed",
                "error_code": error.code,
                "upstream_status": error.upstream_status,
                "error": error.message[:300],
            }
        )

    def succeeded(self, attempt: PlannedAttempt, result: ProviderResult) -> None:
        self.records.append({**self._describe(attempt), "outcome": "succeeded", "images": len(result.images)})

    @staticmethod
    def _describe(attempt: PlannedAttempt) -> dict[str, Any]:
        described = {
            "model": attempt.params.model,
            "provider": attempt.provider.slug,
            "unit_price": str(attempt.unit_price),
        }
        if attempt.sent is not None:
            described["served_by"] = attempt.sent.model
        return described


async def attempt_run(
    attempt: PlannedAttempt,
    *,
    request_id: str,
    client: httpx.AsyncClient,
    on_partial: PartialImageSink | None = None,
) -> ProviderResult:
    """Call the attempt's provider unless its circuit is open; the breaker learns from the outcome.

    The whole call (retries, polls, downloads) ends by the request's deadline, whatever the provider
    does meanwhile: a body trickling in under each read timeout is cut off too.
    """
    deadline_check()
    breaker = breaker_for(attempt.provider.slug)
    if not breaker.allows_call():
        raise circuit_open_error(attempt.provider.slug)
    job = attempt.job(request_id, on_partial)
    call = attempt.provider.edit if job.action == EDIT else attempt.provider.generate
    try:
        async with asyncio.timeout(time_left()):
            result = await call(job, client)
    except TimeoutError:
        breaker.record_failure()  # a provider that cannot answer in time is as unhealthy as one that fails
        raise deadline_passed_error() from None
    except ProviderError as exc:
        if exc.counts_against_provider:
            breaker.record_failure()
        raise
    breaker.record_success()
    # A count below zero, or more than any image call could use, is no bill: settle as if nothing was
    # reported (at the catalog's bound), never fail a request whose images were made.
    if result.usage is not None and not all(0 <= count <= MAX_TOKENS for count in result.usage.as_dict().values()):
        result.usage = None
    if result.provider_cost is not None and not 0 <= result.provider_cost <= MAX_PROVIDER_COST:
        result.provider_cost = None
    if not result.images:
        raise ProviderError(
            "The provider returned no images (all were filtered).",
            code="content_policy_violation",
            status=400,
            permanent=True,
        )
    return result
