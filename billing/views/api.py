"""The usage API: line items and totals of the caller's organization, authenticated with an API key.

A key reads its organization's usage only: keys with the `organization` usage
scope see every request of it, other keys only the requests made with
themselves. No parameter can reach another organization.

What the provider charged us (`provider_cost`) and the margin left are finance's:
they are shown to `organization` keys, the ones an operator issues for the books,
and are null for a key's own usage, as the dashboard shows them only to finance roles.
"""

from datetime import UTC
from typing import cast

from django.contrib.auth.models import AnonymousUser
from django.db.models import F, QuerySet
from django.db.models.functions import TruncDate
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.generics import ListAPIView
from rest_framework.pagination import BasePagination
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from accounts.callers import Caller, Door, caller_authenticate, caller_refusal
from accounts.models import ApiKey
from billing.models import UsageLineItem
from billing.usage.exports import LATER_COLUMNS, LINE_COLUMNS
from billing.usage.filter import FilterError, UsageFilter, UsagePage, keyset_page
from billing.usage.rollups import charged_only, margin, totals_annotations, totals_from_row, totals_sum
from gateway.core.auth import api_key_from_request, client_address_of_request
from gateway.core.errors import OPENAI_ERROR_REF, Flavor, GatewayError, error_body
from gateway.core.money import CURRENCY, format_usd
from providers.base import TokenUsage

# Serializer context: whether the caller may read what the provider charged us (see the module's docstring).
READS_PROVIDER_COST = "reads_provider_cost"


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`; request.auth is the Caller."""

    def authenticate(self, request):
        plaintext = api_key_from_request(request._request)
        if plaintext is None:
            raise exceptions.NotAuthenticated("Send your API key as 'Authorization: Bearer <key>' or 'X-API-Key'.")
        try:
            caller = caller_authenticate(plaintext, client=client_address_of_request(request._request))
        except GatewayError as throttled:
            raise exceptions.Throttled(
                int(throttled.headers["Retry-After"]), throttled.message, code=throttled.code
            ) from None
        if caller is None:
            raise exceptions.AuthenticationFailed("The API key is invalid, expired or revoked.")
        refusal = caller_refusal(caller, door=Door.USAGE)
        if refusal is not None:
            raise exceptions.PermissionDenied(refusal.message, code=refusal.code)
        return AnonymousUser(), caller

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (with this challenge) rather than 403.
        return 'Bearer realm="imagegate"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An imagegate API key (igw-…)."}


class HasApiKey(BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, Caller)


# DRF's exceptions as the gateway's codes; a GatewayError raised by a view keeps its own.
_CODES = {
    exceptions.NotAuthenticated: "invalid_api_key",
    exceptions.AuthenticationFailed: "invalid_api_key",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limit_exceeded",
    exceptions.ParseError: "invalid_parameter",
    exceptions.NotFound: "not_found",
}


def _api_exception_handler(exc, context):
    """Every error in the gateway's one error shape: {"error": {"message", "type", "param", "code"}}, never DRF's
    {"detail": …}; an exception that is no API error stays a 500 (and is logged) as anywhere else."""
    request_id = getattr(context["request"], "request_id", "")
    if isinstance(exc, GatewayError):
        response = Response(error_body(exc, flavor=Flavor.OPENAI, request_id=request_id), status=exc.status)
        for name, value in exc.headers.items():
            response[name] = value
        return response
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    message = detail.get("detail", detail) if isinstance(detail, dict) else detail
    code = next((code for kind, code in _CODES.items() if isinstance(exc, kind)), None)
    if code is None:  # a PermissionDenied from caller_refusal carries the refusal's own code
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        code = codes.get("detail", "invalid_parameter") if isinstance(codes, dict) else codes
    error = GatewayError(response.status_code, str(code), str(message))
    response.data = error_body(error, flavor=Flavor.OPENAI, request_id=request_id)
    return response


def _invalid(exc: FilterError) -> GatewayError:
    return GatewayError(400, "invalid_parameter", str(exc), param=exc.param)


# What the usage API answers besides success, in the error shape the handler above writes (gateway.openapi adds
# the component).
ERROR_RESPONSES = {
    status: OpenApiResponse(response={"$ref": OPENAI_ERROR_REF}, description=description)
    for status, description in (
        (400, "A parameter is malformed (the error's `param` names it): a date, a filter, the cursor, the limit"),
        (401, "No API key, or an invalid, expired or revoked one"),
        (403, "The key may not read usage (an image-only key, a suspended organization)"),
        (405, "Another method than GET"),
        (429, "Too many requests, e.g. failed authentications from one address: Retry-After says when to retry"),
        (503, "The gateway cannot serve now (its database is unavailable): Retry-After says when to retry"),
    )
}


FILTER_PARAMETERS = [
    OpenApiParameter("from", OpenApiTypes.DATE, description="First day (UTC), default: the 1st of this month"),
    OpenApiParameter("to", OpenApiTypes.DATE, description="Last day included (UTC), default: today"),
    OpenApiParameter("model", str, description="Only this model, e.g. dall-e-3"),
    OpenApiParameter("status", str, enum=UsageLineItem.Status.values, description="Only this outcome"),
    OpenApiParameter("key", str, description="Only requests of the key with this prefix (igw-…)"),
    OpenApiParameter("end_user", str, description="Only requests made for this end user"),
    OpenApiParameter("project", str, description="Only requests made by keys of this project (its name)"),
]


class _UsageApiView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]

    def get_exception_handler(self):
        return _api_exception_handler

    def caller(self) -> Caller:
        # ApiKeyAuthentication (required by HasApiKey) puts the Caller in request.auth.
        return cast(Caller, self.request.auth)

    def reads_provider_cost(self) -> bool:
        return self.caller().usage_scope == ApiKey.UsageScope.ORGANIZATION

    def usage_items(self) -> QuerySet[UsageLineItem]:
        caller = self.caller()
        own_only = caller.usage_scope != ApiKey.UsageScope.ORGANIZATION
        try:
            usage_filter = UsageFilter.from_params(
                self.request.query_params,
                organization_id=caller.organization_id,
                api_key_id=caller.api_key_id if own_only else None,
            )
        except FilterError as exc:
            raise _invalid(exc) from None
        return usage_filter.line_items()


class MoneyField(serializers.DecimalField):
    """An exact decimal string in USD, e.g. "0.04"."""

    def __init__(self, **kwargs):
        super().__init__(max_digits=14, decimal_places=6, **kwargs)

    def to_representation(self, value) -> str:
        return format_usd(value)


class ProviderMoneyField(MoneyField):
    """An amount about what the provider charged us; null unless the caller reads provider costs."""

    def __init__(self, **kwargs):
        super().__init__(allow_null=True, **kwargs)

    def get_attribute(self, instance):
        return super().get_attribute(instance) if self.context.get(READS_PROVIDER_COST) else None


class LineMarginField(ProviderMoneyField):
    """A line item's margin: its cost less its provider cost."""

    def __init__(self, **kwargs):
        super().__init__(source="*", **kwargs)

    def to_representation(self, value) -> str:
        return super().to_representation(margin(cost=value.cost, provider_cost=value.provider_cost))


class UsageLineItemSerializer(serializers.ModelSerializer):
    time = serializers.DateTimeField(source="created_at")
    organization = serializers.CharField(source="organization.slug")
    key_prefix = serializers.CharField(source="api_key.prefix", allow_null=True, default=None)
    key_name = serializers.CharField(source="api_key.name", allow_null=True, default=None)
    unit_price = MoneyField()
    cost = MoneyField(help_text="What we charged for the request")
    cached = serializers.SerializerMethodField()
    provider_cost = ProviderMoneyField(
        help_text="What the provider charged us for the request (null for a key that reads only its own usage)"
    )
    margin = LineMarginField(help_text="cost - provider_cost (null for a key that reads only its own usage)")
    tokens = serializers.DictField(
        child=serializers.IntegerField(),
        help_text=f"Tokens used by bucket ({', '.join(TokenUsage.BUCKETS)}); empty for a model priced per image",
    )
    project = serializers.CharField(
        source="project.name",
        allow_null=True,
        default=None,
        help_text="The project the request was made in (its key's then), null outside any project",
    )

    class Meta:
        model = UsageLineItem
        # The same columns, in the same order, as the CSV export; its one column per token bucket is `tokens` here.
        fields = [*LINE_COLUMNS, "tokens", *LATER_COLUMNS]

    def get_cached(self, item: UsageLineItem) -> bool | None:
        return item.details.get("cached")


class UsageKeysetPagination(BasePagination):
    """The usage keyset (billing.usage.filter.keyset_page) as links: `{"next", "previous", "results"}`.

    `cursor` is a position the links carry; `limit` is the page size, up to MAX_LIMIT.
    """

    DEFAULT_LIMIT = 100
    MAX_LIMIT = 1000
    # Of the request being paginated.
    page: UsagePage
    url: str

    def paginate_queryset(self, queryset, request, view=None):
        self.url = request.build_absolute_uri()
        try:
            self.page = keyset_page(queryset, cursor=request.query_params.get("cursor", ""), size=self._limit(request))
        except FilterError as exc:
            raise _invalid(exc) from None
        return self.page.items

    def _limit(self, request) -> int:
        # As DRF's page_size_query_param: a missing, malformed or non-positive limit means the default.
        try:
            limit = int(request.query_params["limit"])
        except (KeyError, ValueError):
            return self.DEFAULT_LIMIT
        return min(limit, self.MAX_LIMIT) if limit > 0 else self.DEFAULT_LIMIT

    def _link(self, cursor: str | None) -> str | None:
        return replace_query_param(self.url, "cursor", cursor) if cursor else None

    def get_paginated_response(self, data) -> Response:
        return Response(
            {
                "next": self._link(self.page.next_cursor),
                "previous": self._link(self.page.previous_cursor),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict) -> dict:
        link = {"type": "string", "format": "uri", "nullable": True}
        return {
            "type": "object",
            "required": ["results"],
            "properties": {"next": link, "previous": link, "results": schema},
        }

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": "cursor",
                "required": False,
                "in": "query",
                "description": "The page to return: the position in a `next` or `previous` link",
                "schema": {"type": "string"},
            },
            {
                "name": "limit",
                "required": False,
                "in": "query",
                "description": f"Items per page, default {self.DEFAULT_LIMIT}, at most {self.MAX_LIMIT}",
                "schema": {"type": "integer"},
            },
        ]


@extend_schema(
    parameters=FILTER_PARAMETERS,
    summary="Usage line items, newest first",
    responses={200: UsageLineItemSerializer(many=True), **ERROR_RESPONSES},
)
class UsageList(_UsageApiView, ListAPIView):
    """GET /api/usage: one entry per request, keyset-paginated (`next`, `previous`)."""

    serializer_class = UsageLineItemSerializer
    pagination_class = UsageKeysetPagination

    def get_queryset(self):
        return self.usage_items().select_related("organization", "api_key", "project")

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), READS_PROVIDER_COST: self.reads_provider_cost()}


GROUPS = {
    "day": TruncDate("created_at", tzinfo=UTC),
    # Only what was charged is grouped by model; refused, failed and in-flight requests count under null.
    "model": charged_only("model", None),
    "key": F("api_key__prefix"),
    "end_user": F("end_user"),
    # Null: requests made outside any project.
    "project": F("project__name"),
}


class UsageTotalsSerializer(serializers.Serializer):
    group = serializers.CharField(allow_null=True, help_text="The day, model, key prefix, end user or project")
    requests = serializers.IntegerField()
    images = serializers.IntegerField(help_text="Images of succeeded requests")
    failures = serializers.IntegerField(help_text="Failed and rejected requests")
    amount = MoneyField(help_text="What we charged")
    provider_cost = ProviderMoneyField(
        help_text="What the provider charged us (null for a key that reads only its own usage)"
    )
    margin = ProviderMoneyField(help_text="amount - provider_cost (null for a key that reads only its own usage)")


class UsageSummarySerializer(serializers.Serializer):
    group_by = serializers.ChoiceField(choices=list(GROUPS))
    currency = serializers.CharField()
    results = UsageTotalsSerializer(many=True)
    total = UsageTotalsSerializer()


def _totals_dict(group, totals) -> dict:
    return {
        "group": group,
        "requests": totals.requests,
        "images": totals.images,
        "failures": totals.failures,
        "amount": totals.amount,
        "provider_cost": totals.provider_cost,
        "margin": totals.margin,
    }


class UsageSummary(_UsageApiView):
    """GET /api/usage/summary: totals grouped by day, model, key, end user or project."""

    @extend_schema(
        parameters=[
            OpenApiParameter("group_by", str, enum=list(GROUPS), description="Grouping, default day"),
            *FILTER_PARAMETERS,
        ],
        responses={200: UsageSummarySerializer, **ERROR_RESPONSES},
        summary="Usage totals",
    )
    def get(self, request):
        group_by = request.query_params.get("group_by", "day")
        if group_by not in GROUPS:
            raise GatewayError(
                400,
                "invalid_parameter",
                f"'group_by' must be one of {', '.join(GROUPS)}, got '{group_by[:100]}'",
                param="group_by",
            )
        rows = (
            self.usage_items()
            .annotate(group=GROUPS[group_by])
            .values("group")
            .annotate(**totals_annotations())
            .order_by(F("group").asc(nulls_last=True))
        )
        results = [(str(row["group"]) if row["group"] is not None else None, totals_from_row(row)) for row in rows]
        body = {
            "group_by": group_by,
            "currency": CURRENCY,
            "results": [_totals_dict(group, totals) for group, totals in results],
            "total": _totals_dict(None, totals_sum(totals for _, totals in results)),
        }
        context = {READS_PROVIDER_COST: self.reads_provider_cost()}
        return Response(UsageSummarySerializer(body, context=context).data)
