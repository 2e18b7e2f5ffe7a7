"""Errors the suite reports to a person: one line, exit code 2, no traceback."""

from __future__ import annotations


class InputError(Exception):
    """Bad input (a snapshot, a file, a parameter): the message is shown as one line and the CLI exits 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def example_rows(frame, limit: int = 3) -> str:
    """Format up to `limit` rows of a (polars or pandas) frame compactly for an error message."""
    try:
        rows = frame.head(limit).to_dicts()
    except AttributeError:
        rows = frame.head(limit).to_dict(orient="records")
    return "; ".join("{" + ", ".join(f"{k}={v}" for k, v in row.items()) + "}" for row in rows)
