"""Which provider serves a model.

Adapters for real vendors register here; a model whose provider is missing or
has no credentials falls back to `local` when LOCAL_PROVIDER_FALLBACK is on.
"""

from django.conf import settings

from providers.base import Provider
from providers.local import LocalProvider
from providers.openai import OpenAIProvider

_PROVIDERS: dict[str, Provider] = {provider.slug: provider for provider in (LocalProvider(), OpenAIProvider())}

# Provider slugs the catalog may name; adapters for the real vendors fill in _PROVIDERS.
KNOWN_PROVIDERS = ("openai", "stability", "bfl", "ideogram", "imagen", "openai_compatible", "local")


class ProviderNotConfigured(Exception):
    def __init__(self, slug: str) -> None:
        super().__init__(slug)
        self.slug = slug


def register(provider: Provider) -> None:
    _PROVIDERS[provider.slug] = provider


def provider_for(slug: str) -> Provider:
    """The provider that will actually serve a model whose catalog provider is `slug`."""
    provider = _PROVIDERS.get(slug)
    if provider is not None and provider.is_configured():
        return provider
    if settings.LOCAL_PROVIDER_FALLBACK:
        return _PROVIDERS["local"]
    raise ProviderNotConfigured(slug)
