"""Which provider serves a model.

A model whose provider has no credentials falls back to `local` when
LOCAL_PROVIDER_FALLBACK is on (the embedded default, tests, benchmarks), and is
otherwise unavailable.
"""

from django.conf import settings

from providers.base import Provider
from providers.bfl import BFLProvider
from providers.google import GoogleProvider
from providers.ideogram import IdeogramProvider
from providers.local import LocalProvider
from providers.openai import OpenAIProvider
from providers.openai_compatible import OpenAICompatibleProvider
from providers.stability import StabilityProvider

_PROVIDERS: dict[str, Provider] = {
    provider.slug: provider
    for provider in (
        LocalProvider(),
        OpenAIProvider(),
        StabilityProvider(),
        BFLProvider(),
        IdeogramProvider(),
        GoogleProvider(),
        OpenAICompatibleProvider(),
    )
}

KNOWN_PROVIDERS = tuple(_PROVIDERS)


class ProviderNotConfigured(Exception):
    def __init__(self, slug: str) -> None:
        super().__init__(slug)
        self.slug = slug


def provider_named(slug: str) -> Provider | None:
    """The provider registered as `slug`, configured or not (None for an unknown slug)."""
    return _PROVIDERS.get(slug)


def provider_for(slug: str, model: str = "") -> Provider:
    """The provider that will actually serve `model`, whose catalog provider is `slug`."""
    provider = _PROVIDERS.get(slug)
    if provider is not None and provider.is_configured(model):
        return provider
    if settings.LOCAL_PROVIDER_FALLBACK:
        return _PROVIDERS["local"]
    raise ProviderNotConfigured(slug)
