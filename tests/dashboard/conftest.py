from tests.people import as_user, people  # noqa: F401 - fixtures shared with the browser tests
