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


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """A count and its noun, in the singular for one: '1 company', '1,204 companies', '0 rows'. `plural` for a
    noun not made plural by adding 's' (a consonant and 'y' take 'ies')."""
    if plural is None:
        plural = noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou") else noun + "s"
    return f"{count:,} {noun if count == 1 else plural}"
