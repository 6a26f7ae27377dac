"""The Content-Security-Policy (django-csp): sent on Django's pages, and our templates need nothing it forbids."""

import re

import pytest

from tests.deploy.files import REPO

# An inline <script> (one without src), an inline event handler, a <style> element, a javascript: URL.
_FORBIDDEN = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "inline event handler": re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE),
    "<style> element": re.compile(r"<style\b", re.IGNORECASE),
    "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
}


@pytest.mark.django_db
def test_pages_carry_a_policy_that_allows_only_our_own_scripts(client):
    policy = client.get("/accounts/login/")["Content-Security-Policy"]
    directives = dict(directive.strip().split(" ", 1) for directive in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe-eval" not in policy


def test_no_template_uses_what_the_policy_forbids():
    found = [
        f"{path.relative_to(REPO)}: {what}: {match.group(0)[:60]}"
        for path in sorted((REPO / "templates").rglob("*.html"))
        for what, pattern in _FORBIDDEN.items()
        for match in pattern.finditer(path.read_text())
    ]
    assert not found, "move these to static/ (js/dashboard.js, css/dashboard.css):\n" + "\n".join(found)


def test_htmx_is_told_not_to_eval_or_inject_styles():
    base = (REPO / "templates" / "base.html").read_text()
    assert '"allowEval": false' in base and '"includeIndicatorStyles": false' in base
