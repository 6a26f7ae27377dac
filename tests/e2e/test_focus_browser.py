"""The Exports page in a browser: choosing FOCUS 1.2 (Parquet) downloads a Parquet file of the month's charges."""

import pyarrow.parquet as pq

from billing.usage.focus import COLUMN_NAMES


def test_finance_downloads_a_focus_parquet_export(page, live_gateway, sign_in, people, shoot, tmp_path):
    sign_in(page, "fiona")
    page.goto(f"{live_gateway}/orgs/acme/exports/")
    page.select_option("#export-format", "focus-parquet")
    shoot(page, "focus-exports")
    with page.expect_download() as download_info:
        page.click("button:has-text('Export')")
    download = download_info.value
    assert download.suggested_filename.startswith("focus-acme-") and download.suggested_filename.endswith(".parquet")
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    table = pq.read_table(path)
    assert tuple(table.column_names) == COLUMN_NAMES
    # The cast's usage of the month: acme's own charges, no one else's.
    assert table.num_rows > 0 and set(table.column("BillingAccountId").to_pylist()) == {"acme"}
