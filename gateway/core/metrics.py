"""Prometheus metrics: what the hot path records, and the exposition `/metrics` answers (gateway.views).

Under several worker processes each one writes its samples to files in PROMETHEUS_MULTIPROC_DIR and a scrape
of any worker adds them up (prometheus-client's multiprocess mode; the directory is made empty when the server
starts, `make serve`). Without that variable, one process's own registry is served.

Labels are bounded: models are catalog names ("" before a request names one the catalog has), statuses HTTP
codes, reasons refusal codes, providers catalog slugs; organizations (spend only) are tenants, a few thousand
at most. Money is Decimal everywhere in the code and becomes a float here, at the metrics boundary only:
Prometheus samples are floats, and a dashboard graph needs no cent-exact sum (the bill reads line items).
"""

import hmac
import os
from decimal import Decimal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

REQUESTS = Counter("imagegate_image_requests", "Image requests answered, by model and HTTP status", ["model", "status"])
LATENCY = Histogram(
    "imagegate_image_request_duration_seconds",
    "Time from a request's arrival to its answer, by model",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
REFUSALS = Counter("imagegate_refusals", "Requests refused by a limit (rate, spend, concurrency), by code", ["reason"])
SPEND = Counter("imagegate_spend_usd", "What succeeded requests were charged (USD), by organization", ["organization"])
IMAGES = Counter("imagegate_images", "Images delivered, by model", ["model"])
PROVIDER_ERRORS = Counter("imagegate_provider_errors", "Failed provider calls, by provider", ["provider"])
# Per process (each worker has its own breakers): the scrape shows the most open any worker is.
BREAKER_OPEN = Gauge(
    "imagegate_provider_breaker_open",
    "1 while a provider's circuit breaker is open in some worker",
    ["provider"],
    multiprocess_mode="max",
)
IN_FLIGHT = Gauge(
    "imagegate_requests_in_flight", "Image requests holding a concurrency slot", multiprocess_mode="livesum"
)

# The HTTP statuses that are a limit's refusal: counted by their code as well.
_REFUSAL_STATUSES = (402, 429)


def request_observe(*, model: str, status: int, code: str, seconds: float) -> None:
    """One image request answered: its count, latency and, for a limit's refusal, the reason."""
    REQUESTS.labels(model=model, status=str(status)).inc()
    LATENCY.labels(model=model).observe(seconds)
    if status in _REFUSAL_STATUSES and code:
        REFUSALS.labels(reason=code).inc()


def charge_observe(*, organization: str, model: str, cost: Decimal, images: int) -> None:
    """A succeeded request's charge and images."""
    SPEND.labels(organization=organization).inc(float(cost))
    IMAGES.labels(model=model).inc(images)


def provider_call_observe(*, provider: str, failed: bool, breaker_open: bool) -> None:
    if failed:
        PROVIDER_ERRORS.labels(provider=provider).inc()
    BREAKER_OPEN.labels(provider=provider).set(1 if breaker_open else 0)


def in_flight(change: int) -> None:
    IN_FLIGHT.inc(change)


def token_matches(presented: str, expected: str) -> bool:
    """Whether a presented bearer token is the metrics token, in constant time."""
    return hmac.compare_digest(presented.encode(), expected.encode())


def exposition(*collectors) -> tuple[bytes, str]:
    """The text a scrape reads, every process's samples added up in multiprocess mode, with `collectors` (read at
    scrape time) besides; and its content type."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def process_exit() -> None:
    """At a worker's shutdown: its live gauges (requests in flight) stop counting in the sum."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _multiprocess.mark_process_dead(os.getpid())
