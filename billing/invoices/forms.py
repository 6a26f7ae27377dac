"""The invoice pages' forms: billing details (owners, finance), the issuer (staff), a credit note."""

from decimal import Decimal

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from billing.models import BillingDetails, InvoiceIssuer
from gateway.core.money import parse_usd

TAX_RATE_HELP = "Percent, e.g. 20 for 20 %."
_TAX_RATE_BOUNDS = [MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))]


class BillingDetailsForm(forms.ModelForm):
    class Meta:
        model = BillingDetails
        fields = ["legal_name", "address", "email", "tax_id", "tax_rate"]
        labels = {"tax_id": "Tax ID (VAT number)", "tax_rate": "Tax rate override"}
        help_texts = {
            "legal_name": "Printed on invoices; empty: the organization's name.",
            "tax_rate": f"{TAX_RATE_HELP} Empty: the issuer's rate.",
        }
        widgets = {"address": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tax_rate"].validators += _TAX_RATE_BOUNDS


class InvoiceIssuerForm(forms.ModelForm):
    class Meta:
        model = InvoiceIssuer
        fields = ["name", "address", "email", "tax_id", "tax_label", "tax_rate", "number_prefix"]
        labels = {"tax_id": "Tax ID (VAT number)", "tax_rate": "Tax rate"}
        help_texts = {
            "tax_rate": f"{TAX_RATE_HELP} Applies unless an organization's billing details set their own.",
            "number_prefix": "Numbers continue from the same sequence whatever the prefix.",
        }
        widgets = {"address": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tax_rate"].validators += _TAX_RATE_BOUNDS


class CreditNoteForm(forms.Form):
    amount = forms.CharField(label="Amount to credit (before tax, USD)", max_length=32)
    reason = forms.CharField(max_length=300, help_text="Printed on the credit note.")

    def clean_amount(self):
        try:
            amount = parse_usd(self.cleaned_data["amount"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        if amount == 0:
            raise forms.ValidationError("Credit more than 0")
        return amount
