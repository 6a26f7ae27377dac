"""What the gateway's tests share."""

import openai
import pytest


@pytest.fixture
def sdk(live_gateway, api_key_plaintext, fake_openai) -> openai.OpenAI:
    """The official SDK against the live gateway, whose `openai` provider is the fake OpenAI upstream."""
    return openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=api_key_plaintext, max_retries=0)
