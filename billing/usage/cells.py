"""What every usage export shares: rows per database round trip, spreadsheet-safe text, a CSV line sink."""

# Rows fetched per round trip from the server-side cursor: big enough to be fast, small enough to stay flat in memory.
CHUNK_ROWS = 5000
# Spreadsheets evaluate a cell that starts with one of these as a formula (CSV injection).
_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: str) -> str:
    """A text cell that a spreadsheet shows as text, never runs as a formula."""
    return "'" + value if value.startswith(_FORMULA_TRIGGERS) else value


class LineSink:
    """A file-like sink that hands back what csv.writer wrote, for streaming."""

    def write(self, text: str) -> str:
        return text
