from django.urls import path, re_path

from billing import reports_views as views

urlpatterns = [
    path("orgs/<slug:slug>/exports/", views.org_exports, name="org-exports"),
    path("orgs/<slug:slug>/exports/<int:export_id>/status", views.org_export_status, name="org-export-status"),
    path("orgs/<slug:slug>/exports/<int:export_id>/download", views.org_export_download, name="org-export-download"),
    path("orgs/<slug:slug>/statements/", views.org_statements, name="org-statements"),
    re_path(r"^orgs/(?P<slug>[-\w]+)/statements/(?P<month>\d{4}-\d{2})/$", views.org_statement, name="org-statement"),
    re_path(
        r"^orgs/(?P<slug>[-\w]+)/statements/(?P<month>\d{4}-\d{2})\.csv$",
        views.org_statement_csv,
        name="org-statement-csv",
    ),
    path("staff/exports/", views.staff_exports, name="staff-exports"),
    path("staff/exports/<int:export_id>/status", views.staff_export_status, name="staff-export-status"),
    path("staff/exports/<int:export_id>/download", views.staff_export_download, name="staff-export-download"),
]
