"""Finance pages: usage exports (streamed or as a background job) and monthly statements.

Every view reaches the organization through accounts.access, so an outsider gets
a 404; within an organization, only finance roles (owner, admin, finance) and
staff may read money, members get a 403.
"""

import tempfile

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from accounts.access import OrgAccess, org_access_get
from accounts.dashboard import render_panel
from accounts.models import Organization
from billing.models import ExportFormat, UsageExport, UsageLineItem
from billing.usage import focus
from billing.usage.exports import export_filename, export_is_large, usage_csv_lines, usage_export_create
from billing.usage.filter import FilterError, UsageFilter
from billing.usage.statements import Statement, month_parse, statement_build, statement_csv_lines, statement_months

# Lines handed to the server per await while streaming: fewer hops, still flat memory.
STREAM_BATCH_LINES = 2000
FILE_CHUNK_BYTES = 1 << 16
EXPORTS_TEMPLATE = "billing/partials/exports.html"


def _finance_access(request: HttpRequest, slug: str) -> OrgAccess:
    access = org_access_get(request.user, slug)
    if not access.can_read_finance:
        raise PermissionDenied("Only owners, admins and finance members can read the organization's spend.")
    return access


def _staff_only(request: HttpRequest) -> None:
    if not request.user.is_staff:
        raise Http404("No such page")


def _take_batch(lines) -> str:
    batch = []
    for line in lines:
        batch.append(line)
        if len(batch) >= STREAM_BATCH_LINES:
            break
    return "".join(batch)


async def _streamed(lines):
    # Under ASGI Django would first collect a synchronous iterator into a list; pulling
    # batches on the request's own thread keeps memory flat and the cursor on one connection.
    take = sync_to_async(_take_batch, thread_sensitive=True)
    while batch := await take(lines):
        yield batch.encode()


def _csv_response(request: HttpRequest, lines, filename: str) -> StreamingHttpResponse:
    content = _streamed(lines) if isinstance(request, ASGIRequest) else lines
    response = StreamingHttpResponse(content, content_type=focus.CONTENT_TYPES["csv"])
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _parquet_response(request: HttpRequest, scope: focus.FocusScope, filename: str) -> HttpResponseBase:
    # Parquet is written whole (its footer comes last), to a temporary file rather than memory.
    raw = tempfile.TemporaryFile()
    focus.focus_parquet_write(scope=scope, output=raw)
    raw.seek(0)
    content_type = focus.CONTENT_TYPES["parquet"]
    if not isinstance(request, ASGIRequest):
        return FileResponse(raw, as_attachment=True, filename=filename, content_type=content_type)
    response = StreamingHttpResponse(_file_chunks(raw), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


async def _file_chunks(raw):
    # As _streamed: an async iterator, so ASGI does not first read the whole file into a list.
    read = sync_to_async(raw.read, thread_sensitive=True)
    try:
        while chunk := await read(FILE_CHUNK_BYTES):
            yield chunk
    finally:
        raw.close()


def _exports_page(
    request: HttpRequest, *, organization: Organization | None, template_context: dict
) -> HttpResponseBase:
    """The export form and recent jobs; a POST streams the CSV or, when large, queues a job."""
    exports = UsageExport.objects.filter(organization=organization) if organization else UsageExport.objects.all()
    context = {
        **template_context,
        "organization": organization,
        "exports": exports.select_related("organization")[:20],
        "statuses": UsageLineItem.Status.values,
        "params": request.POST or {},
        "formats": ExportFormat.choices,
    }
    if request.method != "POST":
        return render_panel(request, EXPORTS_TEMPLATE, context)
    try:
        usage_filter = UsageFilter.from_params(request.POST, organization_id=organization.pk if organization else None)
        export_format = ExportFormat(request.POST.get("format") or ExportFormat.CSV)
    except FilterError as exc:
        return render_panel(request, EXPORTS_TEMPLATE, {**context, "error": str(exc)}, status=400)
    except ValueError:
        error = f"'format' must be one of {', '.join(ExportFormat.values)}"
        return render_panel(request, EXPORTS_TEMPLATE, {**context, "error": error}, status=400)
    items = usage_filter.line_items() if export_format == ExportFormat.CSV else usage_filter.charges()
    if export_is_large(items=items):
        usage_export_create(usage_filter=usage_filter, requested_by=request.user, export_format=export_format)
        return redirect(request.path, permanent=False)
    filename = export_filename(organization=organization, usage_filter=usage_filter, export_format=export_format)
    if export_format == ExportFormat.FOCUS_PARQUET:
        return _parquet_response(request, focus.FocusScope(usage_filter), filename)
    if export_format == ExportFormat.FOCUS_CSV:
        return _csv_response(request, focus.focus_csv_lines(focus.FocusScope(usage_filter)), filename)
    return _csv_response(request, usage_csv_lines(items), filename)


def _export_status(request: HttpRequest, export: UsageExport, download_url: str) -> HttpResponse:
    # Always the fragment: htmx loads it into the exports table and polls it.
    return render(request, "billing/partials/export_status.html", {"export": export, "download_url": download_url})


def _export_download(export: UsageExport) -> FileResponse:
    if export.status != UsageExport.Status.DONE or not export.file:
        raise Http404("This export is not ready")
    if export.expires_at is not None and export.expires_at <= timezone.now():
        raise Http404("This export has expired; export the range again")
    extension = focus.file_extension(export.format)
    return FileResponse(
        export.file.open("rb"),
        as_attachment=True,
        filename=export.file.name.rsplit("/", 1)[-1],
        content_type=focus.CONTENT_TYPES[extension],
    )


@login_required
@require_http_methods(["GET", "POST"])
def org_exports(request: HttpRequest, slug: str) -> HttpResponseBase:
    access = _finance_access(request, slug)
    return _exports_page(request, organization=access.organization, template_context={"staff": False, "access": access})


@login_required
@require_GET
def org_export_status(request: HttpRequest, slug: str, export_id: int) -> HttpResponse:
    organization = _finance_access(request, slug).organization
    export = get_object_or_404(UsageExport, pk=export_id, organization=organization)
    return _export_status(request, export, reverse("org-export-download", args=[slug, export.pk]))


@login_required
@require_GET
def org_export_download(request: HttpRequest, slug: str, export_id: int) -> FileResponse:
    organization = _finance_access(request, slug).organization
    return _export_download(get_object_or_404(UsageExport, pk=export_id, organization=organization))


@login_required
@require_http_methods(["GET", "POST"])
def staff_exports(request: HttpRequest) -> HttpResponseBase:
    _staff_only(request)
    slug = request.POST.get("organization", "")
    organization = get_object_or_404(Organization, slug=slug) if slug else None
    context = {"staff": True, "staff_view": True, "organizations": Organization.objects.order_by("slug")}
    return _exports_page(request, organization=organization, template_context=context)


@login_required
@require_GET
def staff_export_status(request: HttpRequest, export_id: int) -> HttpResponse:
    _staff_only(request)
    export = get_object_or_404(UsageExport, pk=export_id)
    return _export_status(request, export, reverse("staff-export-download", args=[export.pk]))


@login_required
@require_GET
def staff_export_download(request: HttpRequest, export_id: int) -> FileResponse:
    _staff_only(request)
    return _export_download(get_object_or_404(UsageExport, pk=export_id))


@login_required
@require_GET
def org_statements(request: HttpRequest, slug: str) -> HttpResponse:
    access = _finance_access(request, slug)
    months = statement_months(organization=access.organization)
    context = {"access": access, "organization": access.organization, "months": months}
    return render_panel(request, "billing/partials/statements.html", context)


def _statement_for(request: HttpRequest, slug: str, month: str) -> tuple[OrgAccess, Statement]:
    access = _finance_access(request, slug)
    try:
        first_day = month_parse(month)
    except ValueError:
        raise Http404("No such month") from None
    return access, statement_build(organization=access.organization, month=first_day)


@login_required
@require_GET
def org_statement(request: HttpRequest, slug: str, month: str) -> HttpResponse:
    access, statement = _statement_for(request, slug, month)
    context = {"access": access, "statement": statement, "organization": statement.organization}
    return render_panel(request, "billing/partials/statement.html", context)


@login_required
@require_GET
def org_statement_csv(request: HttpRequest, slug: str, month: str) -> HttpResponse:
    _, statement = _statement_for(request, slug, month)
    response = HttpResponse("".join(statement_csv_lines(statement)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="statement-{slug}-{statement.first:%Y-%m}.csv"'
    return response
