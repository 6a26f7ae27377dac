"""A price before the call: `POST /v1/images/quote` (and `/api/images/quote`).

The body is a generation's (JSON) or an edit's (multipart, so the input images' sizes price a token-metered
edit). The request goes through the call's own admission (ImageGeneration.admit: the model, the key's models,
the parameters, the price), so whatever a call would refuse there is refused here with the same HTTP error: a
request that cannot be priced has no quote. What depends on the moment is read, never taken: the rate-limit
windows (a read of the budget, nothing consumed) and the caps (where each stands, nothing held). No provider is
called and no line item is written.

Money is answered as `perf.cost_usd` is: format_usd of the micro-dollar amount (at least the cent, no trailing
zeros beyond it). Per image, `cost` is exactly what a call with the same body is charged; when the request lets the
provider choose (size or quality `auto`), `max_cost` is the dearest choice instead. Per token, `max_cost` is the
hold (no call is charged more) and `expected_cost` the catalog's output tokens with the prompt at its usual tokens.
A fallback route is quoted at its first model that takes the request, as a call holds it.
"""

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from billing.ledger import rules
from billing.ledger.caps import caps_for_request
from billing.models import SpendLimit
from billing.periods import period_reset
from billing.pricing import token_expected
from gateway.core.db import db_step
from gateway.core.errors import GatewayError, error_body
from gateway.core.money import CURRENCY, format_usd, quantize_usd
from gateway.pipeline.context import CallContext
from gateway.pipeline.generation import Attempt, GatewayResponse, ImageGeneration, spend_refusal
from gateway.pipeline.ratelimit import RateDecision
from gateway.pipeline.ratelimit.rules import Window, never_fits, scopes_for
from providers.sizes import AUTO

if TYPE_CHECKING:
    from gateway.pipeline.generation import Deferral
    from gateway.pipeline.uploads import EditUpload


class ImageQuote(ImageGeneration):
    """One quote: the call's admission, then where its limits and caps stand, with nothing consumed or held."""

    async def run(
        self,
        *,
        api_key: str | None,
        body: bytes | None = None,
        idempotency_key: str | None = None,
        upload: "EditUpload | GatewayError | None" = None,
        defer: "Deferral | None" = None,
    ) -> GatewayResponse:
        """`idempotency_key` and `defer` are ignored: a quote changes nothing, so any repeat answers afresh, and
        it is answered at once, never as a job."""
        context, model, parse_error = await self.caller_context(api_key=api_key, body=body, upload=upload)
        if parse_error is not None:
            raise parse_error
        plan, _ = self.admit(context, model)
        attempt = plan[0]
        params = attempt.planned.params
        hold = quantize_usd(attempt.quote.hold)
        budget, rate_refusal = await self._rate_read(context, params.n)
        caps = await db_step(
            caps_for_request,
            organization_id=context.caller.organization_id,
            api_key_id=context.caller.api_key_id,
            project_id=context.caller.project_id,
            end_user=params.end_user,
            now=self.received_at,
        )
        # A call is counted against its windows before the ledger holds its price: the first refusal is the window's.
        refusal = rate_refusal or self._cap_refusal(caps, hold)
        body_out: dict[str, Any] = {
            "object": "image.quote",
            "model": params.model,
            "size": params.size,
            "quality": params.quality,
            "n": params.n,
            "price_basis": attempt.pricing.basis,
            "currency": CURRENCY,
            **_prices(attempt, hold),
            "caps": [_cap(limit, cap, hold) for limit, cap in caps],
            "rate_limits": None if budget is None else _rate_limits(budget),
            "admitted": refusal is None,
            "refusal": None if refusal is None else self._refusal_body(refusal),
        }
        return GatewayResponse(status=200, body=body_out, headers=budget.headers() if budget else {})

    async def _rate_read(self, context: CallContext, n: int) -> tuple[RateDecision | None, GatewayError | None]:
        """The windows as they stand (nothing consumed) and the refusal a call for `n` images would get now."""
        try:
            budget = await self._budget(context)
        except GatewayError as unavailable:  # the limiter down and failing closed: a call is refused the same way
            return None, unavailable
        return budget, never_fits(scopes_for(context.caller, context.end_user), n) or budget.refusal_for(n)

    def _cap_refusal(self, caps: list[tuple[SpendLimit, rules.CapPeriod]], hold: Decimal) -> GatewayError | None:
        """The refusal of the first cap without room for the hold, as the ledger would answer it."""
        for limit, cap in caps:
            if not cap.has_room(hold):
                refused = rules.refusal(cap, hold, spend_limit_id=limit.pk, owner=limit.owner_label, line_item_id=None)
                return spend_refusal(refused, self.flavor)
        return None

    def _refusal_body(self, error: GatewayError) -> dict[str, Any]:
        """The error a call would get now: its HTTP status, and its body in this flavour's shape."""
        return {"status": error.status, **error_body(error, flavor=self.flavor, request_id=self.request_id)}


def _usd(amount: Decimal) -> str:
    return format_usd(quantize_usd(amount))


def _prices(attempt: Attempt, hold: Decimal) -> dict[str, Any]:
    if attempt.quote.per_token:
        rates = attempt.pricing.token_rates
        assert rates is not None
        expected = rates.cost(token_expected(attempt.priced, attempt.priced.n))
        # The expected cost never passes the hold: no call is charged more than it.
        return {"max_cost": _usd(hold), "expected_cost": _usd(min(expected, hold)), "unit_price": None}
    exact = AUTO not in (attempt.priced.size, attempt.priced.quality)
    return {"cost" if exact else "max_cost": _usd(hold), "unit_price": _usd(attempt.quote.unit_price)}


def _cap(limit: SpendLimit, cap: rules.CapPeriod, hold: Decimal) -> dict[str, Any]:
    resets_at: datetime | None = period_reset(cap.period, cap.start)
    return {
        "owner": limit.owner_label,
        "period": cap.period,
        "cap": _usd(cap.cap),
        "spent": _usd(cap.spent),
        "reserved": _usd(cap.reserved),
        "left": _usd(max(cap.cap - cap.spent - cap.reserved, Decimal(0))),
        "resets_at": resets_at.isoformat() if resets_at else None,
        "fits": cap.has_room(hold),
    }


def _rate_limits(budget: RateDecision) -> dict[str, Any]:
    """Each window's tightest scope: its limit, the images left in it, when it gives room back, and whose it is."""
    counts = list(zip(budget.scopes, budget.usage, strict=True))
    minute = min(counts, key=lambda count: max(0, count[0].per_minute - count[1].minute_used))[0]
    day = min(counts, key=lambda count: max(0, count[0].per_day - count[1].day_used))[0]
    return {
        "minute": {**_window(budget.minute), "scope": minute.label},
        "day": {**_window(budget.today), "scope": day.label},
    }


def _window(window: Window) -> dict[str, int]:
    return {"limit": window.limit, "remaining": window.remaining, "reset_seconds": window.reset_seconds}
