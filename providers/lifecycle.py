"""The catalog's lifecycle check: the catalog against what each provider lists, and staff warned of retirements.

A catalog model whose provider lists it with a shutdown date takes that date; one its provider no longer
lists is retired as of today. Either way its status follows ModelSpec.effective_status, the one rule for
what a date means. Staff (users with is_staff) get one email per run about the models that shut down
within the warning window or already have, each model and date once, and the log gets a line per model.
Run daily by the beat task billing.tasks.model_catalog_check and by `manage.py check_model_catalog`.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.core.mail import send_mail

from providers.base import ProviderError, UpstreamModel
from providers.http import new_client
from providers.models import ModelSpec
from providers.registry import provider_named

logger = logging.getLogger("providers.lifecycle")

DEFAULT_WARN_DAYS = 30


@dataclass(frozen=True)
class CatalogChange:
    model: str
    status: tuple[str, str]  # before, after
    shutdown_date: tuple[date | None, date | None]  # before, after
    reason: str

    def __str__(self) -> str:
        (status_was, status), (date_was, shutdown) = self.status, self.shutdown_date
        text = f"{self.model}: {status_was} → {status}" if status_was != status else f"{self.model}: {status}"
        if date_was != shutdown:
            text += f", shutdown date {date_was or 'none'} → {shutdown}"
        return f"{text} ({self.reason})"


@dataclass
class LifecycleReport:
    checked: dict[str, int] = field(default_factory=dict)  # provider → catalog models compared with its list
    unchecked: dict[str, str] = field(default_factory=dict)  # provider → why its list could not be compared
    changes: list[CatalogChange] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # one line per model staff are warned of
    recipients: list[str] = field(default_factory=list)


def catalog_lifecycle_check(
    *, today: date, warn_days: int = DEFAULT_WARN_DAYS, dry_run: bool = False
) -> LifecycleReport:
    """Compare the catalog with each provider's list, update what changed and warn staff of what is due.

    `today` is the UTC day; `dry_run` reports the same without changing or sending anything.
    """
    report = LifecycleReport()
    specs = list(ModelSpec.objects.order_by("name"))
    listings = asyncio.run(_listings(sorted({spec.provider for spec in specs}), report))
    for provider in listings:
        report.checked[provider] = sum(1 for spec in specs if spec.provider == provider)
    for spec in specs:
        change = _reconcile(spec, listings.get(spec.provider), today)
        if change is None:
            continue
        report.changes.append(change)
        if not dry_run:
            # save() rather than update(): the catalog's revision signal makes every worker reload it.
            spec.save(update_fields=["status", "shutdown_date"])
    due = [spec for spec in specs if _warning_due(spec, today, warn_days)]
    report.warnings = [_warning(spec, today) for spec in due]
    report.recipients = _staff_emails()
    if due and not dry_run:
        _warn(due, report, today)
    return report


async def _listings(providers: list[str], report: LifecycleReport) -> dict[str, dict[str, date | None]]:
    """Each provider's upstream models (name → shutdown date) where it can list them; why not in `report`."""
    listings: dict[str, dict[str, date | None]] = {}
    async with new_client() as client:
        for slug in providers:
            provider = provider_named(slug)
            if provider is None:
                report.unchecked[slug] = "this gateway has no adapter for it"
                continue
            if not provider.is_configured():
                report.unchecked[slug] = "it is not configured (no credentials)"
                continue
            try:
                listed: list[UpstreamModel] | None = await provider.list_models(client)
            except ProviderError as exc:
                report.unchecked[slug] = f"its model list could not be read: {exc.message}"
                continue
            if listed is None:
                report.unchecked[slug] = "it cannot list its models"
                continue
            listings[slug] = {model.name: model.shutdown_date for model in listed}
    return listings


def _reconcile(spec: ModelSpec, listing: dict[str, date | None] | None, today: date) -> CatalogChange | None:
    """Bring `spec`'s shutdown date and status in line with its provider's list (None: not listed) and `today`.

    Returns what changed, or None; `spec` is changed in memory, not saved.
    """
    before = (spec.status, spec.shutdown_date)
    upstream = spec.upstream_model or spec.name
    if listing is not None and upstream not in listing:
        # Gone already: retired today, unless it was known to have gone earlier.
        spec.shutdown_date = min(spec.shutdown_date or today, today)
        reason = f"{spec.provider} no longer lists {upstream}"
    elif listing is not None and listing[upstream] is not None:
        spec.shutdown_date = listing[upstream]
        reason = f"{spec.provider} lists {upstream} with shutdown date {spec.shutdown_date}"
    else:
        reason = f"its shutdown date is {spec.shutdown_date}"
    spec.status = spec.effective_status(today)
    if (spec.status, spec.shutdown_date) == before:
        return None
    return CatalogChange(spec.name, (before[0], spec.status), (before[1], spec.shutdown_date), reason)


def _warning_due(spec: ModelSpec, today: date, warn_days: int) -> bool:
    return (
        spec.is_active
        and spec.shutdown_date is not None
        and spec.shutdown_date <= today + timedelta(days=warn_days)
        and spec.shutdown_warned_for != spec.shutdown_date
    )


def _warning(spec: ModelSpec, today: date) -> str:
    assert spec.shutdown_date is not None
    if spec.shutdown_date > today:
        days = (spec.shutdown_date - today).days
        when = f"shuts down upstream on {spec.shutdown_date} (in {days} day{'s' if days > 1 else ''})"
    else:
        when = f"was shut down upstream on {spec.shutdown_date}"
    if not spec.successor:
        after = "no successor is set (the dashboard's catalog page, /staff/models/), so requests for it will fail"
    elif spec.successor_enabled:
        after = f"its successor is {spec.successor}"
    else:
        after = f"its successor {spec.successor} is switched off, so requests for it will be refused"
    return f"{spec.name} ({spec.provider}) {when}; {after}."


def _staff_emails() -> list[str]:
    staff = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    return sorted(set(staff.values_list("email", flat=True)))


def _warn(due: list[ModelSpec], report: LifecycleReport, today: date) -> None:
    """One email to staff for the run and a log line per model, each model and date once.

    A model is claimed with a conditional update before anything is sent, so that two runs at once never
    both warn of it; the claims are given back when the email cannot be sent, for the next run to retry.
    """
    claimed = [
        spec
        for spec in due
        if ModelSpec.objects.filter(pk=spec.pk)
        .exclude(shutdown_warned_for=spec.shutdown_date)
        .update(shutdown_warned_for=spec.shutdown_date)
    ]
    lines = [_warning(spec, today) for spec in claimed]
    report.warnings = lines
    if not claimed:
        return
    for line in lines:
        logger.warning("catalog model %s", line)
    if not report.recipients:
        return
    subject = f"imagegate: {len(lines)} catalog model{'s' if len(lines) > 1 else ''} retiring upstream"
    body = "\n".join(
        [
            "The model catalog's lifecycle check found:",
            "",
            *(f"- {line}" for line in lines),
            "",
            f"Checked on {today} (UTC). Each model and shutdown date is announced once.",
        ]
    )
    try:
        send_mail(subject, body, None, report.recipients)
    except Exception:
        for spec in claimed:
            ModelSpec.objects.filter(pk=spec.pk).update(shutdown_warned_for=spec.shutdown_warned_for)
        raise
