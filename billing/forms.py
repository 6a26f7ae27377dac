"""Dashboard forms for usage filters, prices, the model catalog, spend caps, end users' limits and alert policies."""

from decimal import Decimal

from django import forms
from django.utils import timezone

from accounts.models import ApiKey, EndUserLimit, Organization, Tier
from billing.limits import EndUserLimits
from billing.models import PriceConfig, SpendLimit, UsageLineItem
from billing.periods import today_utc
from gateway.core.money import format_usd, parse_usd
from gateway.core.webhook_address import url_refusal
from providers.models import FallbackRoute, ModelSpec
from providers.sizes import AUTO, size_parse


class UsageFilterForm(forms.Form):
    """The usage table's filters; they live in the query string so a filtered view can be shared."""

    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    key = forms.CharField(required=False, max_length=16, label="Key prefix")
    model = forms.CharField(required=False, max_length=100)
    provider = forms.CharField(required=False, max_length=32)
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *UsageLineItem.Status.choices])
    end_user = forms.CharField(required=False, max_length=256, label="End user")
    project = forms.CharField(required=False, max_length=100, help_text="A project's name")
    org = forms.SlugField(required=False, label="Organization")
    cursor = forms.CharField(required=False, max_length=40, widget=forms.HiddenInput)

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "Must be on or after the start date.")
        return cleaned


class UsdField(forms.CharField):
    """A USD amount typed as text ("25", "0.50"), cleaned to a Decimal; empty is None where it is optional."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 24)
        super().__init__(**kwargs)

    def clean(self, value):
        text = super().clean(value)
        if not text:
            return None
        try:
            return parse_usd(text)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


class PriceForm(forms.Form):
    model = forms.CharField(max_length=100)
    # Optional so that a form without it prices generations, as it always did.
    action = forms.ChoiceField(choices=PriceConfig.Action.choices, required=False)
    quality = forms.CharField(max_length=16)
    size = forms.CharField(max_length=16)
    unit_price = UsdField(label="Price per image (USD)")

    def clean_action(self):
        return self.cleaned_data["action"] or PriceConfig.Action.GENERATE


class CommaListField(forms.CharField):
    """A list of short tokens typed as 'a, b, c'."""

    def to_python(self, value):
        text = super().to_python(value)
        return [token.strip() for token in text.split(",") if token.strip()]

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value


class ModelSpecForm(forms.Form):
    provider = forms.CharField(max_length=32)
    upstream_model = forms.CharField(max_length=100, required=False)
    sizes = CommaListField(required=False, help_text="Comma-separated, e.g. 1024x1024, 1792x1024")
    qualities = CommaListField(required=False, help_text="Comma-separated, e.g. standard, hd")
    max_n = forms.IntegerField(min_value=1, max_value=100, label="Max n")
    max_prompt_length = forms.IntegerField(min_value=0, max_value=1_000_000, label="Prompt limit")
    is_active = forms.BooleanField(required=False, label="Active")
    successor = forms.CharField(
        max_length=100, required=False, help_text="Serves this name once the provider retires it."
    )
    successor_enabled = forms.BooleanField(required=False, label="Serve by successor when retired")
    auto_policy = forms.ChoiceField(choices=ModelSpec.AutoPolicy.choices, label="size/quality auto")

    def clean_successor(self):
        name = self.cleaned_data["successor"]
        error = live_successor_error(name)
        if error:
            raise forms.ValidationError(error)
        return name

    def clean_sizes(self):
        sizes = self.cleaned_data["sizes"]
        bad = [size for size in sizes if not _is_size(size)]
        if bad:
            raise forms.ValidationError(f"Not a WIDTHxHEIGHT size: {', '.join(bad)}")
        return sizes


def _is_size(text: str) -> bool:
    return text == AUTO or size_parse(text) is not None


class SpendLimitForm(forms.Form):
    """A USD cap on the organization (empty scope) or on one of its active keys, for a period."""

    scope = forms.ChoiceField(required=False, label="Applies to")
    period = forms.ChoiceField(choices=SpendLimit.Period.choices)
    amount = UsdField(label="Cap (USD)", help_text="For example 25 or 0.50.")

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        keys = ApiKey.objects.filter(
            organization=organization, kind=ApiKey.Kind.IMAGES, revoked_at__isnull=True
        ).order_by("prefix")
        self.fields["scope"].choices = [("", "The whole organization")] + [
            (key.prefix, f"Key {key.prefix}… {key.name}".strip()) for key in keys
        ]

    @property
    def key_prefix(self) -> str | None:
        return self.cleaned_data["scope"] or None


class EndUserLimitsForm(forms.Form):
    """Every limit of one end user (empty end user: the default every end user has); an empty field lifts that one."""

    end_user = forms.CharField(
        max_length=EndUserLimit._meta.get_field("end_user").max_length,
        required=False,
        strip=False,
        label="End user",
        help_text="The id requests send in 'user'; empty for the default every end user has.",
    )
    images_per_minute = forms.IntegerField(min_value=1, required=False)
    images_per_day = forms.IntegerField(min_value=1, required=False)
    usd_per_day = UsdField(required=False, label="Cap per day (USD)")
    usd_per_month = UsdField(required=False, label="Cap per month (USD)")
    usd_total = UsdField(required=False, label="Cap in total (USD)")

    RATE_FIELDS = ("images_per_minute", "images_per_day")
    CAP_FIELDS: dict[str, str] = {
        SpendLimit.Period.DAY: "usd_per_day",
        SpendLimit.Period.MONTH: "usd_per_month",
        SpendLimit.Period.TOTAL: "usd_total",
    }

    @classmethod
    def of(cls, limits: EndUserLimits) -> "EndUserLimitsForm":
        """The form filled with an end user's current limits, to edit them."""
        initial = {"end_user": limits.end_user, **{name: getattr(limits, name) for name in cls.RATE_FIELDS}}
        initial.update({cls.CAP_FIELDS[period]: format_usd(cap.amount) for period, cap in limits.caps.items()})
        return cls(initial=initial)

    def rates(self) -> dict[str, int | None]:
        return {name: self.cleaned_data[name] for name in self.RATE_FIELDS}

    def caps(self) -> dict[str, Decimal | None]:
        return {period: self.cleaned_data[name] for period, name in self.CAP_FIELDS.items()}


class ThresholdsField(forms.CharField):
    """Percentages of a cap typed as '50, 80, 100'."""

    def to_python(self, value):
        tokens = [token.strip().rstrip("%") for token in super().to_python(value).split(",") if token.strip()]
        bad = [token for token in tokens if not token.isdigit() or not 1 <= int(token) <= 100]
        if bad:
            raise forms.ValidationError(f"Thresholds are whole percentages from 1 to 100, not: {', '.join(bad)}")
        return sorted({int(token) for token in tokens})

    def prepare_value(self, value):
        return ", ".join(str(threshold) for threshold in value) if isinstance(value, list) else value


class WebhookUrlField(forms.URLField):
    """An http(s) URL whose host is not, and does not resolve to, an internal address (gateway.core.webhook_address).

    `resolve=False` checks only an address written in the URL, with no DNS lookup: for the request path, where
    the delivery resolves and checks again anyway."""

    def __init__(self, *, resolve: bool = True, **kwargs) -> None:
        super().__init__(assume_scheme="https", **kwargs)
        self.resolve = resolve

    def clean(self, value):
        url = super().clean(value)
        refusal = url_refusal(url, resolve=self.resolve) if url else None
        if refusal is not None:
            raise forms.ValidationError(refusal, code="internal_address")
        return url


class AlertPolicyForm(forms.Form):
    thresholds = ThresholdsField(
        required=False, label="Alert at (% of each cap)", help_text="Comma-separated, e.g. 50, 80, 100."
    )
    email = forms.EmailField(required=False, label="Alert email", help_text="Empty: owners, admins and finance.")
    webhook_url = WebhookUrlField(
        required=False, label="Webhook URL", help_text="Receives a signed JSON POST per alert; a public address."
    )


def live_successor_error(successor: str, *, of: str = "") -> str | None:
    """Why `successor` cannot serve a retired model's name, or None: it must be a live, active catalog model."""
    if not successor:
        return None
    if successor == of:
        return "A model cannot be its own successor."
    spec = ModelSpec.objects.filter(name=successor).first()
    if spec is None:
        return f"No catalog model is named '{successor}'."
    if not spec.is_active:
        return f"'{successor}' is inactive in the catalog: choose an active model."
    status = spec.effective_status(today_utc(timezone.now()))
    if status != ModelSpec.Status.LIVE:
        return f"'{successor}' is {status} itself: choose a live model."
    return None


class SuccessorForm(forms.Form):
    """The model that serves a deprecated or retired model's name, and whether it does."""

    successor = forms.CharField(max_length=100, required=False)
    successor_enabled = forms.BooleanField(required=False, label="Serve by successor when retired")

    def __init__(self, *args, spec: ModelSpec, **kwargs):
        super().__init__(*args, **kwargs)
        self.spec = spec

    def clean_successor(self):
        name = self.cleaned_data["successor"].strip()
        error = live_successor_error(name, of=self.spec.name)
        if error:
            raise forms.ValidationError(error)
        return name

    def clean(self):
        data = super().clean()
        if data.get("successor_enabled") and not data.get("successor") and "successor" not in self.errors:
            self.add_error("successor", "Name the successor that serves it.")
        return data


class FallbackRouteForm(forms.Form):
    """A name clients request as `model`, served by the first of its catalog models that delivers."""

    name = forms.SlugField(max_length=100, help_text="Requested as the model, e.g. fast-photo.")
    chain = CommaListField(help_text="Catalog models to try in order, comma-separated, e.g. flux-1.1-pro, dall-e-3")
    description = forms.CharField(max_length=200, required=False)
    is_active = forms.BooleanField(required=False, initial=True, label="Active")

    def __init__(self, *args, route=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.route = route

    def clean_name(self):
        name = self.cleaned_data["name"]
        routes = FallbackRoute.objects.filter(name=name)
        if self.route is not None:
            routes = routes.exclude(pk=self.route.pk)
        if routes.exists():
            raise forms.ValidationError(f"A route named '{name}' already exists.")
        if ModelSpec.objects.filter(name=name).exists():
            raise forms.ValidationError(f"'{name}' is a catalog model: a route needs a name of its own.")
        return name

    def clean_chain(self):
        chain = self.cleaned_data["chain"]
        if not chain:
            raise forms.ValidationError("List at least one catalog model.")
        if len(set(chain)) != len(chain):
            raise forms.ValidationError("Each model may appear once.")
        known = set(ModelSpec.objects.filter(name__in=chain, supports_images=True).values_list("name", flat=True))
        unknown = [name for name in chain if name not in known]
        if unknown:
            raise forms.ValidationError(f"Not image models of the catalog: {', '.join(unknown)}")
        return chain


class OrganizationCreateForm(forms.Form):
    slug = forms.SlugField(max_length=50, help_text="Lowercase letters, digits and dashes; used in URLs.")
    name = forms.CharField(max_length=200)
    tier = forms.ChoiceField()
    owner_username = forms.CharField(
        max_length=150, required=False, label="First owner (username)", help_text="An existing user, or a new one."
    )
    owner_email = forms.EmailField(
        required=False, label="First owner (email)", help_text="For a new user: they get a set-password link."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tier"].choices = [(tier.slug, tier.name) for tier in Tier.objects.order_by("images_per_minute")]

    def clean_slug(self):
        slug = self.cleaned_data["slug"]
        if Organization.objects.filter(slug=slug).exists():
            raise forms.ValidationError(f"An organization '{slug}' already exists.")
        return slug


class SuspensionForm(forms.Form):
    reason = forms.CharField(max_length=500, help_text="Kept in the audit log.")


class CachePolicyForm(forms.Form):
    """Whether identical requests are answered from the cache, for how long, and (staff only) at what price."""

    enabled = forms.BooleanField(required=False, label="Answer repeated requests from the cache")
    ttl_minutes = forms.IntegerField(min_value=1, max_value=60 * 24 * 30, label="Keep answers for (minutes)")
    price_per_image = UsdField(
        required=False, label="Price per cached image (USD)", help_text="Staff only; for example 0.01."
    )


class ProjectCapForm(forms.Form):
    """A USD cap on one project's keys together, for a period (the Projects page)."""

    period = forms.ChoiceField(choices=SpendLimit.Period.choices)
    amount = UsdField(label="Cap (USD)", help_text="For example 25 or 0.50.")
