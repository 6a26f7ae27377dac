"""Dashboard forms for usage filters, prices, the model catalog, spend caps and alert policies."""

from django import forms

from accounts.models import ApiKey
from billing.models import PriceConfig, SpendLimit, UsageLineItem
from gateway.core.money import parse_usd
from providers.models import ModelSpec
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
    org = forms.SlugField(required=False, label="Organization")
    cursor = forms.CharField(required=False, max_length=40, widget=forms.HiddenInput)

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "Must be on or after the start date.")
        return cleaned


class PriceForm(forms.Form):
    model = forms.CharField(max_length=100)
    # Optional so that a form without it prices generations, as it always did.
    action = forms.ChoiceField(choices=PriceConfig.Action.choices, required=False)
    quality = forms.CharField(max_length=16)
    size = forms.CharField(max_length=16)
    unit_price = forms.CharField(max_length=24, label="Price per image (USD)")

    def clean_action(self):
        return self.cleaned_data["action"] or PriceConfig.Action.GENERATE

    def clean_unit_price(self):
        try:
            return parse_usd(self.cleaned_data["unit_price"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


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
        if name and not ModelSpec.objects.filter(name=name).exists():
            raise forms.ValidationError(f"No catalog model is named '{name}'.")
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
    amount = forms.CharField(max_length=24, label="Cap (USD)", help_text="For example 25 or 0.50.")

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        keys = ApiKey.objects.filter(
            organization=organization, kind=ApiKey.Kind.IMAGES, revoked_at__isnull=True
        ).order_by("prefix")
        self.fields["scope"].choices = [("", "The whole organization")] + [
            (key.prefix, f"Key {key.prefix}… {key.name}".strip()) for key in keys
        ]

    def clean_amount(self):
        try:
            return parse_usd(self.cleaned_data["amount"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    @property
    def key_prefix(self) -> str | None:
        return self.cleaned_data["scope"] or None


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


class AlertPolicyForm(forms.Form):
    thresholds = ThresholdsField(
        required=False, label="Alert at (% of each cap)", help_text="Comma-separated, e.g. 50, 80, 100."
    )
    email = forms.EmailField(required=False, label="Alert email", help_text="Empty: owners, admins and finance.")
    webhook_url = forms.URLField(
        required=False, label="Webhook URL", assume_scheme="https", help_text="Receives a signed JSON POST per alert."
    )
