"""Any upstream that speaks OpenAI's Images API: another gateway, a self-hosted server.

Configured per model alias, so two catalog models can live on two different
servers: OPENAI_COMPATIBLE_<ALIAS>_BASE_URL / _API_KEY (the alias upper-cased,
other characters as `_`, e.g. SDXL_TURBO) win over OPENAI_COMPATIBLE_BASE_URL /
OPENAI_COMPATIBLE_API_KEY.
"""

import re

import httpx

from gateway.core.env import env_str
from providers.base import ImageJob, UpstreamModel
from providers.openai import OpenAIProvider


def _alias_variable(model: str, suffix: str) -> str:
    alias = re.sub(r"[^A-Z0-9]", "_", model.upper())
    return f"OPENAI_COMPATIBLE_{alias}_{suffix}"


class OpenAICompatibleProvider(OpenAIProvider):
    slug = "openai_compatible"
    key_variable = "OPENAI_COMPATIBLE_API_KEY"
    base_url_variable = "OPENAI_COMPATIBLE_BASE_URL"
    default_base_url = ""

    def api_key(self, model: str = "") -> str:
        return env_str(_alias_variable(model, "API_KEY")) or env_str(self.key_variable)

    def base_url(self, model: str = "") -> str:
        return (env_str(_alias_variable(model, "BASE_URL")) or env_str(self.base_url_variable)).rstrip("/")

    def is_configured(self, model: str = "") -> bool:
        # A self-hosted server may need no key, but it always needs an address.
        return bool(self.base_url(model))

    async def list_models(self, client: httpx.AsyncClient) -> list[UpstreamModel] | None:
        # Each model may live on its own server, and what another gateway lists says nothing of a vendor's
        # retirements: no list is taken as the truth about these models.
        return None

    def request_body(self, job: ImageJob) -> dict:
        # Such servers mostly speak the dall-e dialect, whose default answer is a URL.
        return {**super().request_body(job), "response_format": "b64_json"}
