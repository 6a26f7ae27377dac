from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from accounts import views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="accounts/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password/",
        auth_views.PasswordChangeView.as_view(
            template_name="accounts/password_change.html", success_url=reverse_lazy("password-changed")
        ),
        name="password-change",
    ),
    path(
        "accounts/password/done/",
        auth_views.PasswordChangeDoneView.as_view(template_name="accounts/password_done.html"),
        name="password-changed",
    ),
    path(
        "accounts/set-password/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="accounts/password_set.html", success_url=reverse_lazy("login"), post_reset_login=False
        ),
        name="password-set",
    ),
    path("orgs/<slug:slug>/keys/", views.keys, name="keys"),
    path("orgs/<slug:slug>/keys/<int:key_id>/", views.key_edit, name="key-edit"),
    path("orgs/<slug:slug>/keys/<int:key_id>/revoke/", views.key_revoke, name="key-revoke"),
    path("orgs/<slug:slug>/usage-keys/", views.usage_keys, name="usage-keys"),
    path("orgs/<slug:slug>/usage-keys/<int:key_id>/revoke/", views.usage_key_revoke, name="usage-key-revoke"),
    path("orgs/<slug:slug>/members/", views.members, name="members"),
    path("orgs/<slug:slug>/members/<int:membership_id>/role/", views.member_role, name="member-role"),
    path("orgs/<slug:slug>/members/<int:membership_id>/remove/", views.member_delete, name="member-remove"),
]
