"""The image request pipeline: the ASGI endpoint, phase one (who calls, the catalog), validation,
idempotency, rate limits, and the generation itself, which drives the ledger and the providers.
"""
