"""Dashboard forms for keys, members and limits; each error is shown next to its field."""

from datetime import timedelta

from django import forms
from django.utils import timezone

from accounts.models import Membership, Project, Tier
from accounts.services import ENTERPRISE_TIER
from providers.models import ModelSpec


def image_model_choices() -> list[tuple[str, str]]:
    names = ModelSpec.objects.filter(supports_images=True, is_active=True).values_list("name", flat=True)
    return [(name, name) for name in names]


class ExpiringKeyForm(forms.Form):
    """A key's name and optional expiry: all a read-only usage-API key has, and where an image key starts."""

    name = forms.CharField(max_length=100, required=False)
    expires_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, label="Expires after (days)", help_text="Empty: never expires."
    )

    @property
    def expires_at(self):
        days = self.cleaned_data.get("expires_days")
        return timezone.now() + timedelta(days=days) if days else None


class ApiKeyForm(ExpiringKeyForm):
    allowed_models = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked: every image model."
    )
    images_per_minute = forms.IntegerField(min_value=1, required=False, label="Images per minute")
    images_per_day = forms.IntegerField(min_value=1, required=False, label="Images per day")
    # Only the organization's own projects are choices: another organization's id is "not one of the choices".
    project = forms.ModelChoiceField(
        queryset=Project.objects.none(),
        required=False,
        empty_label="No project",
        help_text="The cost center the key's usage is charged to.",
    )

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["allowed_models"].choices = image_model_choices()
        project = self.fields["project"]
        project.queryset = Project.objects.filter(organization=organization)
        project.label_from_instance = lambda choice: choice.name

    def clean(self):
        cleaned = super().clean()
        per_minute, per_day = cleaned.get("images_per_minute"), cleaned.get("images_per_day")
        if per_minute and per_day and per_minute > per_day:
            self.add_error("images_per_minute", "Cannot be more than the images per day.")
        return cleaned


class MemberAddForm(forms.Form):
    username = forms.CharField(
        max_length=150, required=False, help_text="A new username, or an existing person's (with their email)."
    )
    email = forms.EmailField(
        required=False, help_text="A new person's, or the email of the existing person's account, which must match."
    )
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("username") and not cleaned.get("email"):
            self.add_error("username", "Give a username or an email address.")
        return cleaned


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class TierForm(forms.Form):
    tier = forms.ModelChoiceField(queryset=Tier.objects.all(), empty_label=None)
    custom_images_per_minute = forms.IntegerField(min_value=1, required=False, label="Custom images per minute")
    custom_images_per_day = forms.IntegerField(min_value=1, required=False, label="Custom images per day")

    def clean(self):
        cleaned = super().clean()
        tier = cleaned.get("tier")
        if tier is not None and tier.slug != ENTERPRISE_TIER:
            for field in ("custom_images_per_minute", "custom_images_per_day"):
                if cleaned.get(field):
                    self.add_error(field, "Custom numbers are only available on the Enterprise tier.")
        return cleaned


class ProjectForm(forms.Form):
    """A project's name and its image limits for all its keys together (empty: no limit of its own)."""

    name = forms.CharField(max_length=100)
    images_per_minute = forms.IntegerField(min_value=1, required=False, label="Images per minute")
    images_per_day = forms.IntegerField(min_value=1, required=False, label="Images per day")


class KeyLimitsForm(forms.Form):
    images_per_minute = forms.IntegerField(min_value=1, required=False)
    images_per_day = forms.IntegerField(min_value=1, required=False)
