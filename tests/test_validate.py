"""`hsutils validate`: every corrupted snapshot is refused with one line and exit 2; valid ones pass."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import polars as pl
import pytest
from snapshot_factory import build_manifest, build_tables, write_tiny_snapshot

from hsutils.cli import main
from hsutils.errors import InputError
from hsutils.snapshot import load_snapshot
from hsutils.validate import load_mapping

MAPPING_EXAMPLE = Path(str(resources.files("hsutils") / "mapping.example.yml"))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- corruptions ----------------------------------------------------------------------------------------------


def with_tables(mutate: Callable[[dict[str, pl.DataFrame]], None], fmt: str = "parquet"):
    """A corruption made on the canonical frames, then written with write_snapshot."""

    def make(folder: Path) -> None:
        tables = build_tables()
        mutate(tables)
        write_tiny_snapshot(folder, fmt=fmt, tables=tables)

    return make


def with_manifest(**changes):
    def make(folder: Path) -> None:
        write_tiny_snapshot(folder, manifest=build_manifest(**changes))

    return make


def edit_csv_text(folder: Path, table: str, edit: Callable[[list[str]], list[str]]) -> None:
    """Edit the lines of one CSV file of a CSV snapshot."""
    path = folder / f"{table}.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")


def with_csv_text(table: str, edit: Callable[[list[str]], list[str]]):
    """A corruption made on the text of one CSV file of a CSV snapshot."""

    def make(folder: Path) -> None:
        write_tiny_snapshot(folder, fmt="csv")
        edit_csv_text(folder, table, edit)

    return make


def with_file_bytes(name: str, content: bytes, fmt: str = "csv"):
    def make(folder: Path) -> None:
        write_tiny_snapshot(folder, fmt=fmt)
        (folder / name).write_bytes(content)

    return make


def with_manifest_text(text: str):
    def make(folder: Path) -> None:
        write_tiny_snapshot(folder)
        (folder / "manifest.json").write_text(text, encoding="utf-8")

    return make


def remove(name: str):
    def make(folder: Path) -> None:
        write_tiny_snapshot(folder, fmt="csv")
        (folder / name).unlink()

    return make


def replace_field(line_no: int, column: int, value: str):
    """Edit one field of a CSV line (line 0 = header); fields are split on plain commas."""

    def edit(lines: list[str]) -> list[str]:
        fields = lines[line_no].split(",")
        fields[column] = value
        lines[line_no] = ",".join(fields)
        return lines

    return edit


def replace_column(column: int, values: list[str]):
    """Edit one field on every data line of a CSV file, in order (fields are split on plain commas)."""

    def edit(lines: list[str]) -> list[str]:
        for line_no, value in enumerate(values, start=1):
            lines = replace_field(line_no, column, value)(lines)
        return lines

    return edit


def set_value(table: str, row: int, column: str, value: object):
    def mutate(tables: dict[str, pl.DataFrame]) -> None:
        frame = tables[table]
        values = frame[column].to_list()
        values[row] = value
        tables[table] = frame.with_columns(pl.Series(column, values, dtype=frame.schema[column]))

    return mutate


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def drop_column(table: str, column: str):
    def mutate(tables: dict[str, pl.DataFrame]) -> None:
        tables[table] = tables[table].drop(column)

    return mutate


def keep_rows(table: str, rows: int):
    def mutate(tables: dict[str, pl.DataFrame]) -> None:
        tables[table] = tables[table].head(rows)

    return mutate


@dataclass(frozen=True)
class Corruption:
    make: Callable[[Path], None]
    expected: tuple[str, ...]  # every one must appear in the message (table, column or file, example values)


CORRUPTIONS: dict[str, Corruption] = {
    # folder and manifest
    "manifest missing": Corruption(remove("manifest.json"), ("manifest.json", "missing")),
    "manifest not json": Corruption(
        with_manifest_text("{schema_version: 1"), ("manifest.json", "not valid JSON")
    ),
    "manifest schema_version 2": Corruption(
        with_manifest_text(json.dumps({**build_manifest().to_dict(), "schema_version": 2})),
        ("manifest.json", "schema_version is 2"),
    ),
    "manifest created_at unreadable": Corruption(
        with_manifest_text(json.dumps({**build_manifest().to_dict(), "created_at": "last tuesday"})),
        ("manifest.json", "created_at", "last tuesday"),
    ),
    "manifest core_events empty": Corruption(
        with_manifest_text(json.dumps({**build_manifest().to_dict(), "core_events": []})),
        ("manifest.json", "core_events"),
    ),
    # unreadable files
    "table file missing": Corruption(remove("tickets.csv"), ("table tickets", "tickets.csv")),
    "zero-byte file": Corruption(
        with_file_bytes("surveys.csv", b""), ("table surveys", "surveys.csv", "zero bytes")
    ),
    "blank file": Corruption(
        with_file_bytes("contacts.csv", b"\n\n"), ("table contacts", "contacts.csv", "header")
    ),
    "broken parquet": Corruption(
        with_file_bytes("deals.parquet", b"PAR1 this is not parquet", fmt="parquet"),
        ("table deals", "deals.parquet", "parquet"),
    ),
    "neither utf-8 nor clearly windows-1252 (cyrillic in windows-1251)": Corruption(
        with_file_bytes(
            "companies.csv",
            "company_id,name,created_at,tier\n101,A,2023-01-05,pro\n102,ООО Ромашка,2023-01-05,pro\n".encode("cp1251"),
        ),
        ("table companies", "companies.csv", "not UTF-8", "line 3", "nor clearly Windows-1252", "'102,ÎÎÎ Ðîìàøêà",
         "re-export it as UTF-8"),
    ),
    "neither utf-8 nor windows-1252 (a byte windows-1252 has no character for)": Corruption(
        with_file_bytes("companies.csv", b"company_id,name,created_at,tier\n101,Caf\x8d,2023-01-05,pro\n"),
        ("table companies", "companies.csv", "not UTF-8", "line 2", "nor Windows-1252", "byte 0x8d"),
    ),
    "utf-16 with a byte-order mark that does not read": Corruption(
        with_file_bytes("companies.csv", "company_id\tname\n".encode("utf-16") + b"\x00\xd8\x41\x00\n\x00"),
        ("table companies", "companies.csv", "not readable UTF-16"),
    ),
    "utf-16 without a byte-order mark": Corruption(
        with_file_bytes(
            "companies.csv", "company_id,name,created_at,tier\n101,A,2023-01-05,pro\n".encode("utf-16-le")
        ),
        ("table companies", "companies.csv", "UTF-16 text", "re-export it as UTF-8 CSV"),
    ),
    "row with an extra field": Corruption(
        with_csv_text("deals", lambda lines: [*lines[:2], lines[2] + ",surplus", *lines[3:]]),
        ("table deals", "deals.csv", "ragged", "line=3", "fields=10"),
    ),
    "row with a missing field": Corruption(
        with_csv_text("engagements", lambda lines: [*lines[:3], lines[3].rsplit(",", 1)[0], *lines[4:]]),
        ("table engagements", "engagements.csv", "ragged", "line=4", "fields=8"),
    ),
    "unnamed trailing column that holds a value": Corruption(
        with_csv_text(
            "companies", lambda lines: [line + (",note" if n == 2 else ",") for n, line in enumerate(lines)]
        ),
        ("table companies", "companies.csv", "column 9", "no name", "after 'ae_owner_id'", "line=3", "'note'"),
    ),
    "unnamed column in the middle of the header": Corruption(
        with_csv_text("companies", lambda lines: [line.replace(",", ",,", 1) for line in lines]),
        ("table companies", "companies.csv", "empty column name"),
    ),
    "ragged row after Excel's sep= line": Corruption(
        with_csv_text("deals", lambda lines: ["sep=,", *lines[:2], lines[2] + ",surplus", *lines[3:]]),
        ("table deals", "deals.csv", "ragged", "line=4", "fields=10"),
    ),
    "header named twice": Corruption(
        with_csv_text("tickets", lambda lines: [lines[0].replace("escalated", "priority"), *lines[1:]]),
        ("table tickets", "tickets.csv", "priority", "twice"),
    ),
    "header naming a used column twice, loosely": Corruption(
        with_csv_text("deals", lambda lines: [lines[0] + ",ARR (USD),ARR (USD)", *(line + ",1,2" for line in lines[1:])]),
        ("table deals", "deals.csv", "'ARR (USD)' twice"),
    ),
    "required column missing": Corruption(
        with_tables(drop_column("deals", "arr")), ("table deals", "column arr")
    ),
    "companies without rows": Corruption(
        with_csv_text("companies", lambda lines: lines[:1]), ("table companies", "no rows")
    ),
    # unreadable values
    "timestamp unreadable": Corruption(
        with_csv_text("tickets", replace_field(2, 3, "last tuesday")),
        ("table tickets", "column created_at", "'last tuesday'", "line=3", "ISO-8601"),
    ),
    "dates with day and month in an order no value shows": Corruption(
        with_csv_text("tickets", replace_field(2, 3, "06/10/2025")),
        ("table tickets", "column created_at", "'06/10/2025'", "line=3", "the day or the month comes first",
         "ISO-8601"),
    ),
    "dashed dates with day and month in an order no value shows": Corruption(
        with_csv_text("tickets", replace_column(3, ["06-10-2025", "07-11-2025 10:00", "08-12-2025"])),
        ("table tickets", "column created_at", "'06-10-2025'", "line=2", "the day or the month comes first"),
    ),
    "date with a two-digit year": Corruption(
        with_csv_text("tickets", replace_field(2, 3, "11/23/25")),
        ("table tickets", "column created_at", "'11/23/25'", "line=3", "two-digit year", "four-digit years"),
    ),
    "two-digit year among dates whose order the column shows": Corruption(
        with_csv_text("tickets", replace_column(3, ["23.04.2025", "10.06.25 10:00", "20.07.2025"])),
        ("table tickets", "column created_at", "1 value(s) with a two-digit year", "'10.06.25 10:00'", "line=3"),
    ),
    "english month name with a two-digit year (excel's d-mmm-yy)": Corruption(
        with_csv_text("tickets", replace_column(3, ["23-Apr-2025", "10-Jun-25", "20-Jul-2025"])),
        ("table tickets", "column created_at", "1 value(s) with a two-digit year", "'10-Jun-25'", "line=3",
         "four-digit years"),
    ),
    "us date with a month name and a two-digit year": Corruption(
        with_csv_text("tickets", replace_field(2, 3, '"Jun 10, 25"')),
        ("table tickets", "column created_at", "'Jun 10, 25'", "line=3", "two-digit year"),
    ),
    "german month name among english ones": Corruption(
        with_csv_text("tickets", replace_column(3, ['"Apr 23, 2025"', "1. März 2025", '"Jul 20, 2025"'])),
        ("table tickets", "column created_at", "1 value(s) with a month name that is not English", "'1. März 2025'",
         "line=3", "export the dates as ISO-8601"),
    ),
    "french month name": Corruption(
        with_csv_text("tickets", replace_field(2, 3, "10 juin 2025 10:00")),
        ("table tickets", "column created_at", "'10 juin 2025 10:00'", "line=3", "month name that is not English",
         "ISO-8601"),
    ),
    "day that no month has among month-name dates": Corruption(
        with_csv_text("tickets", replace_column(3, ['"Apr 23, 2025"', '"Feb 30, 2025"', '"Jul 20, 2025"'])),
        ("table tickets", "column created_at", "1 value(s) not a timestamp", "'Feb 30, 2025'", "line=3"),
    ),
    "offset after a 12-hour time with a month name": Corruption(
        with_csv_text("tickets", replace_field(2, 3, '"Jun 10, 2025 9:00 AM +0200"')),
        ("table tickets", "column created_at", "1 value(s) not a timestamp", "'Jun 10, 2025 9:00 AM +0200'", "line=3"),
    ),
    "dash in a required date column": Corruption(
        with_csv_text("tickets", replace_field(2, 3, "-")),
        ("table tickets", "column created_at", "'-'", "line=3", "not a timestamp"),
    ),
    "epoch 0 in a required time column": Corruption(
        with_csv_text("tickets", replace_column(3, ["1746180000", "0", "1753005600"])),
        ("table tickets", "column created_at", "1 value(s) 0", "1970-01-01", "unset", "line=3"),
    ),
    "zero date in a required time column": Corruption(
        with_csv_text("tickets", replace_field(2, 3, "0000-00-00 00:00:00")),
        ("table tickets", "column created_at", "1 value(s) 0000-00-00", "zero date", "unset", "line=3"),
    ),
    "zero date with Z in a required time column": Corruption(
        with_csv_text("tickets", replace_field(2, 3, "0000-00-00T00:00:00Z")),
        ("table tickets", "column created_at", "1 value(s) 0000-00-00", "zero date", "unset", "line=3"),
    ),
    "epoch date in a required time column": Corruption(
        with_csv_text("deals", replace_field(1, 4, "1970-01-01")),
        ("table deals", "column term_start", "1 value(s) 1970-01-01", "unset", "line=2"),
    ),
    "epoch datetime in a required time column of a parquet file": Corruption(
        with_tables(lambda tables: tables.update(tickets=tables["tickets"].with_columns(
            pl.when(pl.col("ticket_id") == "t2").then(datetime(1970, 1, 1, tzinfo=UTC))
            .otherwise(pl.col("created_at")).alias("created_at")))),
        ("table tickets", "column created_at", "1 value(s) 1970-01-01", "unset", "row=2"),
    ),
    "amount behind a formula guard still unreadable": Corruption(
        with_csv_text("deals", replace_field(3, 7, "'-90k")), ("table deals", "column arr", "arr=\"'-90k\"", "line=4")
    ),
    "time with a zone abbreviation": Corruption(
        with_csv_text("tickets", replace_field(2, 3, "2025-06-10 09:00 PST")),
        ("table tickets", "column created_at", "'2025-06-10 09:00 PST'", "line=3", "time zone name",
         "offset instead (2025-03-01T09:00:00-08:00)", "UTC"),
    ),
    "12-hour time past 12": Corruption(
        with_csv_text("tickets", replace_field(2, 3, "11/23/2025 13:05 PM")),
        ("table tickets", "column created_at", "'11/23/2025 13:05 PM'", "line=3", "ISO-8601"),
    ),
    "dates day-first and month-first in one column": Corruption(
        with_csv_text("tickets", replace_column(3, ["02/05/2025", "13/06/2025 10:00", "07/20/2025 10:00"])),
        ("table tickets", "column created_at", "day-first ('13/06/2025 10:00')",
         "month-first ('07/20/2025 10:00')", "line=3", "ISO-8601"),
    ),
    "spreadsheet serial day numbers as dates": Corruption(
        with_csv_text("tickets", replace_column(3, ["45779", "45818.5", "45858"])),
        ("table tickets", "column created_at", "3 value(s)", "serial day numbers", "'45818.5'", "line=2",
         "format the column as dates"),
    ),
    "epoch seconds among ISO timestamps": Corruption(
        with_csv_text("tickets", replace_field(2, 3, "1749549600")),
        ("table tickets", "column created_at", "1 value(s) written as a number", "'1749549600'", "line=3",
         "'2025-05-02T10:00:00Z'", "one way"),
    ),
    "ISO timestamp among epoch seconds": Corruption(
        with_csv_text("tickets", replace_column(3, ["1746180000", "1749549600", "2025-07-20T10:00:00Z"])),
        ("table tickets", "column created_at", "1 value(s) not a number", "'2025-07-20T10:00:00Z'", "line=4",
         "epoch"),
    ),
    "epoch milliseconds among epoch seconds": Corruption(
        with_csv_text("usage_events", replace_column(2, ["1761991200"] * 7 + ["1767225599000"])),
        ("table usage_events", "column occurred_at", "1 value(s) not epoch seconds", "'1767225599000'", "line=9",
         "one unit"),
    ),
    "epoch milliseconds a spreadsheet rounded": Corruption(
        with_csv_text("tickets", replace_column(3, ["1.74618E+12", "1.74955E+12", "1.75300E+12"])),
        ("table tickets", "column created_at", "'1.74618E+12'", "scientific notation", "line=2"),
    ),
    "dates written as YYYYMMDD numbers": Corruption(
        with_csv_text("tickets", replace_column(3, ["20250502", "20250610", "20250720"])),
        ("table tickets", "column created_at", "YYYYMMDD", "'20250502'", "ISO-8601"),
    ),
    "numbers that are no epoch time": Corruption(
        with_csv_text("tickets", replace_column(3, ["12345", "678", "2"])),
        ("table tickets", "column created_at", "3 value(s)", "no epoch time from 1990 to 2100", "'12345'"),
    ),
    "negative amount with a trailing minus": Corruption(
        with_csv_text("deals", replace_field(2, 7, '"24,000.00-"')),
        ("table deals", "column arr", "1 negative value(s)", "line=3", "arr=-24000.0"),
    ),
    "number unreadable": Corruption(
        with_csv_text("deals", replace_field(3, 7, "90k")), ("table deals", "column arr", "'90k'", "line=4")
    ),
    "number with a comma that may group thousands or mark decimals": Corruption(
        with_csv_text("deals", replace_column(7, ["24000", '"26,000"', "90000", "3000"])),
        ("table deals", "column arr", "'26,000'", "line=3", "thousands separator or a decimal comma"),
    ),
    "numbers with a decimal point and a decimal comma": Corruption(
        with_csv_text("deals", replace_column(7, ['"24,000.5"', "26000", "90000", '"3000,5"'])),
        ("table deals", "column arr", "line=5", "'3000,5'", "decimal comma", "decimal point", "'24,000.5'"),
    ),
    "negative arr in accounting parentheses": Corruption(
        with_csv_text("deals", replace_column(7, ["24000", '"$ (26,000.00)"', "90000", "3000"])),
        ("table deals", "column arr", "negative", "arr=-26000.0", "deal_id=7002"),
    ),
    "seats not whole": Corruption(
        with_csv_text("deals", replace_field(1, 8, "2.5")), ("table deals", "column seats", "'2.5'", "line=2")
    ),
    "usage user id rounded by a spreadsheet": Corruption(
        with_csv_text("usage_events", replace_field(2, 1, "1.23457E+10")),
        ("table usage_events", "column user_id", "'1.23457E+10'", "line=3", "scientific notation", "as text"),
    ),
    "deal id rounded by a spreadsheet with a decimal comma": Corruption(
        with_csv_text("deals", replace_field(2, 0, '"9,87654E+11"')),
        ("table deals", "column deal_id", "'9,87654E+11'", "line=3", "scientific notation"),
    ),
    "owner id in scientific notation without a plus sign": Corruption(
        with_csv_text("companies", replace_field(3, 6, "9.1e11")),
        ("table companies", "column cs_owner_id", "'9.1e11'", "line=4", "scientific notation"),
    ),
    "deal id rounded by a spreadsheet": Corruption(
        with_csv_text("deals", replace_field(3, 0, "9.87654E+11")),
        ("table deals", "column deal_id", "'9.87654E+11'", "line=4", "scientific notation"),
    ),
    "boolean unreadable": Corruption(
        with_csv_text("tickets", replace_field(1, 7, "maybe")),
        ("table tickets", "column escalated", "'maybe'", "line=2", "yes/no", "on/off", "✓/✗"),
    ),
    # schema and cross-table checks
    "duplicate company_id": Corruption(
        with_tables(set_value("companies", 2, "company_id", "101")),
        ("table companies", "column company_id", "duplicated", "company_id=101"),
    ),
    "empty company_id of a contact": Corruption(
        with_tables(set_value("contacts", 1, "company_id", None)),
        ("table contacts", "column company_id", "empty", "contact_id=502"),
    ),
    "deal of an unknown company": Corruption(
        with_tables(set_value("deals", 3, "company_id", "999")),
        ("table deals", "column company_id", "not in companies", "company_id=999"),
    ),
    "usage of an unknown company": Corruption(
        with_tables(set_value("usage_events", 4, "company_id", "404"), fmt="csv"),
        ("table usage_events", "column company_id", "not in companies", "company_id=404", "line=6"),
    ),
    "deal of several companies (a HubSpot association cell)": Corruption(
        with_csv_text("deals", replace_field(2, 1, "101;102")),
        ("table deals", "column company_id", "not in companies", "company_id=101;102", "several companies",
         "split"),
    ),
    "usage of several companies (a HubSpot association cell)": Corruption(
        with_csv_text("usage_events", replace_field(3, 0, "101;103")),
        ("table usage_events", "column company_id", "company_id=101;103", "several companies", "line=4"),
    ),
    "term_end before term_start": Corruption(
        with_tables(set_value("deals", 1, "term_end", ts("2023-06-01"))),
        ("table deals", "column term_end", "after term_start", "deal_id=7002"),
    ),
    "ticket closed before created": Corruption(
        with_tables(set_value("tickets", 0, "closed_at", ts("2025-05-01T09:00:00"))),
        ("table tickets", "column closed_at", "before created_at", "ticket_id=t1"),
    ),
    "won deal without close_date": Corruption(
        with_tables(set_value("deals", 0, "close_date", None)),
        ("table deals", "column close_date", "deal_id=7001"),
    ),
    "deal stage outside the set": Corruption(
        with_tables(set_value("deals", 2, "stage", "pending")),
        ("table deals", "column stage", "open/won/lost", "stage=pending"),
    ),
    "engagement type outside the set": Corruption(
        with_tables(set_value("engagements", 0, "type", "sms"), fmt="csv"),
        ("table engagements", "column type", "type=sms"),
    ),
    "contact role outside the set": Corruption(
        with_tables(set_value("contacts", 3, "role", "decision maker")),
        ("table contacts", "column role", "role=decision maker"),
    ),
    "negative arr": Corruption(
        with_tables(set_value("deals", 0, "arr", -5.0)), ("table deals", "column arr", "negative", "arr=-5.0")
    ),
    "infinite arr": Corruption(
        with_tables(set_value("deals", 1, "arr", float("inf"))), ("table deals", "column arr", "infinite", "row=2")
    ),
    "infinite arr in csv": Corruption(
        with_csv_text("deals", replace_field(2, 7, "inf")), ("table deals", "column arr", "infinite", "'inf'")
    ),
    "negative usage count": Corruption(
        with_tables(set_value("usage_events", 2, "count", -1)),
        ("table usage_events", "column count", "negative"),
    ),
    "negative employees": Corruption(
        with_tables(set_value("companies", 0, "employees", -3)),
        ("table companies", "column employees", "negative"),
    ),
    "ticket csat 6": Corruption(
        with_tables(set_value("tickets", 2, "csat", 6)), ("table tickets", "column csat", "1-5", "csat=6")
    ),
    "nps score 11": Corruption(
        with_tables(set_value("surveys", 0, "score", 11.0)),
        ("table surveys", "column score", "nps", "score=11.0"),
    ),
    "csat survey score 0": Corruption(
        with_tables(set_value("surveys", 2, "score", 0.0)),
        ("table surveys", "column score", "csat", "kind=csat"),
    ),
    "usage after the snapshot": Corruption(
        with_tables(set_value("usage_events", 7, "occurred_at", ts("2026-02-01T00:00:00"))),
        ("table usage_events", "column occurred_at", "later than", "2026-02-01"),
    ),
    "ticket closed after the snapshot": Corruption(
        with_tables(set_value("tickets", 0, "closed_at", ts("2026-03-01T00:00:00")), fmt="csv"),
        ("table tickets", "column closed_at", "later than", "ticket_id=t1"),
    ),
    "core event never used": Corruption(
        with_manifest(core_events=["report_published", "dashboard_shared"]),
        ("table usage_events", "column event", "dashboard_shared"),
    ),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_corrupted_snapshot_is_refused_with_one_line(case: str, tmp_path: Path, capsys) -> None:
    corruption = CORRUPTIONS[case]
    folder = tmp_path / "snapshot"
    corruption.make(folder)

    code, out, err = run_cli(capsys, "validate", str(folder))

    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    message = lines[0]
    assert message.startswith("hsutils validate: error: ")
    assert len(message) < 340, message
    assert message.count("e.g.") <= 1, message  # one list of examples: advice names its own without "e.g."
    for fragment in corruption.expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


TICKETS_HEADER = "ticket_id,company_id,contact_id,created_at,closed_at,priority,sentiment,escalated,csat,notes"


@pytest.mark.parametrize(
    ("note", "last_line"),
    [('"Export fails,\nagain and\nagain"', 11), ("Export fails", 9)],
    ids=["line breaks in a value", "no quotes"],
)
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize(
    ("last_row", "code", "expected"),
    [
        ("t9,103,504,last tuesday,,low,neutral,false,,x", 2, "column created_at: 1 value(s) not a timestamp"),
        ("t9,103,504,2025-07-20,,low,neutral,false,7,x", 2, "column csat: 1 value(s) outside 1-5"),
        ("t9,103,504,2025-07-20,,low,neutral,false,3,x,surplus", 2, "ragged rows in tickets.csv"),
        ("t9,103,599,2025-07-20,,low,neutral,false,3,x", 0, "name a contact not in contacts"),
    ],
    ids=["unreadable value", "checked value", "ragged row", "warning"],
)
def test_rows_in_messages_are_named_by_their_line_in_the_csv_file(
    last_row: str, code: int, expected: str, newline: str, note: str, last_line: int, tmp_path: Path, capsys
) -> None:
    """Excel's 'sep=' line, the header, a value holding line breaks, blank lines, a line of only separators and a
    row the export repeats all come before the row: the message names the line of the file it starts on."""
    folder = write_tiny_snapshot(tmp_path / "s", fmt="csv")
    lines = [
        "sep=,",
        TICKETS_HEADER,
        f"t1,101,502,2025-05-02T10:00:00Z,,high,negative,true,2,{note}",
        "",
        ",,,,,,,,,",
        "t2,102,,2025-06-10T10:00:00Z,,low,neutral,false,,",
        "t2,102,,2025-06-10T10:00:00Z,,low,neutral,false,,",  # the export repeats it: read once
        "",
        last_row,
    ]
    (folder / "tickets.csv").write_bytes((newline.join(lines) + newline).encode("utf-8"))

    exit_code, _, err = run_cli(capsys, "validate", str(folder))

    assert exit_code == code, err
    message = err.strip().splitlines()[-1]
    assert expected in message and "tickets.csv" in message and "Traceback" not in err
    assert f"line={last_line}" in message, message
    assert "row=" not in message


def test_missing_folder_is_refused(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(capsys, "validate", str(tmp_path / "nowhere"))
    assert code == 2
    assert "nowhere" in err and "does not exist" in err and "Traceback" not in err


def test_message_counts_all_offending_rows_but_shows_three(tmp_path: Path) -> None:
    tables = build_tables()
    tables["usage_events"] = tables["usage_events"].with_columns(pl.lit(-2).alias("count"))
    write_tiny_snapshot(tmp_path / "s", tables=tables)
    with pytest.raises(InputError) as raised:
        load_snapshot(tmp_path / "s")
    message = str(raised.value)
    assert "8 negative value(s)" in message
    assert message.count("{row=") == 3


def test_first_problem_is_reported_with_how_many_more(tmp_path: Path) -> None:
    tables = build_tables()
    set_value("deals", 0, "arr", -1.0)(tables)
    set_value("deals", 1, "stage", "pending")(tables)
    write_tiny_snapshot(tmp_path / "s", tables=tables)
    with pytest.raises(InputError, match=r"table deals, column stage: .*\(\+1 more problem\(s\) in deals\)"):
        load_snapshot(tmp_path / "s")


def test_duplicated_key_with_another_problem_is_reported_with_how_many_more(tmp_path: Path) -> None:
    tables = build_tables()
    companies = tables["companies"]
    tables["companies"] = pl.concat([companies, companies.head(1)])
    set_value("companies", 1, "employees", -5)(tables)
    write_tiny_snapshot(tmp_path / "s", tables=tables)
    with pytest.raises(
        InputError, match=r"table companies, column company_id: 1 duplicated key\(s\) on 2 rows.*\(\+1 more problem\(s\)"
    ):
        load_snapshot(tmp_path / "s")


# --- valid snapshots -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_valid_tiny_snapshot_passes(fmt: str, tmp_path: Path, capsys) -> None:
    folder = write_tiny_snapshot(tmp_path / "s", fmt=fmt)
    code, out, err = run_cli(capsys, "validate", str(folder))
    assert code == 0, err
    assert out.startswith("ok: ") and "usage_events 8" in out


@pytest.mark.parametrize("fixture", ["small_demo", "small_demo_csv"])
def test_demo_portal_passes(fixture: str, request, capsys) -> None:
    pytest.importorskip("hsutils.demo")
    folder = request.getfixturevalue(fixture)
    code, out, err = run_cli(capsys, "validate", str(folder))
    assert code == 0, err
    assert "ok: " in out


def test_csv_rows_repeated_exactly_are_read_once(tmp_path: Path, capsys) -> None:
    folder = write_tiny_snapshot(tmp_path / "s", fmt="csv")
    for table, line in (("companies", 2), ("tickets", 1)):
        path = folder / f"{table}.csv"
        lines = path.read_text(encoding="utf-8").splitlines()
        path.write_text("\n".join([*lines, lines[line]]) + "\n", encoding="utf-8")

    code, out, err = run_cli(capsys, "validate", str(folder))

    assert code == 0, err
    assert "table companies: 1 row(s) repeat another row exactly" in err and "company_id=" in err
    assert "table tickets: 1 row(s) repeat another row exactly" in err
    with pytest.warns(UserWarning, match="repeat another row exactly"):
        loaded = load_snapshot(folder)
    tiny = build_tables()
    assert (loaded["companies"].height, loaded["tickets"].height) == (tiny["companies"].height, tiny["tickets"].height)


def test_csv_rows_sharing_a_key_but_differing_are_still_refused(tmp_path: Path) -> None:
    folder = write_tiny_snapshot(tmp_path / "s", fmt="csv")
    path = folder / "companies.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([*lines, lines[1].replace(",pro", ",enterprise").replace(",starter", ",pro")]) + "\n",
                    encoding="utf-8")
    with pytest.raises(InputError, match="company_id: 1 duplicated key"):
        load_snapshot(folder)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_activity_of_a_deleted_contact_keeps_its_company_and_loses_the_link(fmt: str, tmp_path: Path, capsys) -> None:
    tables = build_tables()
    set_value("tickets", 2, "contact_id", "599")(tables)
    set_value("engagements", 0, "contact_id", "598")(tables)
    set_value("engagements", 1, "contact_id", "598")(tables)
    folder = write_tiny_snapshot(tmp_path / "s", fmt=fmt, tables=tables)

    code, out, err = run_cli(capsys, "validate", str(folder))

    assert code == 0, err
    assert out.startswith("ok: ")
    warned = err.strip().splitlines()
    assert len(warned) == 2, err
    assert "table tickets, column contact_id: 1 row(s) name a contact not in contacts" in err
    assert "contact_id=599" in err
    assert "table engagements, column contact_id: 2 row(s)" in err and "contact_id=598" in err
    with pytest.warns(UserWarning, match="not in contacts"):
        loaded = load_snapshot(folder)
    for table, rows in (("tickets", [2]), ("engagements", [0, 1])):
        before, after = tables[table], loaded[table]
        assert after.height == before.height
        assert after["contact_id"].cast(pl.String).to_list() == [
            None if i in rows else v for i, v in enumerate(before["contact_id"].cast(pl.String).to_list())
        ]
        assert after["company_id"].cast(pl.String).to_list() == before["company_id"].cast(pl.String).to_list()


def test_csv_as_a_hubspot_export_gives_it(tmp_path: Path) -> None:
    """BOM, CRLF, loose header names, quoted commas and line breaks, mixed timestamps, yes/no, numeric-looking ids."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    tickets = (
        "\ufeffTicket ID,Company_ID,contact_id,created_at,closed_at,priority,sentiment,escalated,csat,Subject\r\n"
        't1,101,502,2025-05-02T12:00:00+02:00,2025-05-03 10:00:00,high,negative,Yes,2,"Export fails, again"\r\n'
        't2,102,,2025-06-10,,low,neutral,no,,"Line one\r\nline two"\r\n'
        "007,103,504,2025-07-20T10:00:00.250Z,2025-07-20T12:00,medium,positive,0,5.0,\r\n"
        "1001,103,504, 2025-07-21 08:30 ,,Urgent,Negative,1,,\r\n"
    )
    (tmp_path / "s" / "tickets.csv").write_bytes(tickets.encode("utf-8"))

    frame = load_snapshot(tmp_path / "s")["tickets"]

    assert frame["ticket_id"].to_list() == ["t1", "t2", "007", "1001"]
    assert frame["created_at"].to_list() == [
        ts("2025-05-02T10:00:00"),
        ts("2025-06-10T00:00:00"),
        ts("2025-07-20T10:00:00.250"),
        ts("2025-07-21T08:30:00"),
    ]
    assert frame["closed_at"].to_list() == [ts("2025-05-03T10:00:00"), None, ts("2025-07-20T12:00:00"), None]
    assert frame["escalated"].to_list() == [True, False, False, True]
    assert frame["csat"].to_list() == [2, None, 5, None]
    assert frame["priority"].to_list() == ["high", "low", "medium", "urgent"]
    assert frame["sentiment"].to_list()[-1] == "negative"
    assert frame["Subject"].to_list() == ["Export fails, again", "Line one\r\nline two", None, None]
    assert frame.columns[-1] == "Subject"  # extra columns are kept, after the canonical ones


@pytest.mark.parametrize(
    "stamps",
    [
        ["2025-06-01T10:00:00Z", "2025-06-02T10:00:00.5Z", "2025-06-03T12:00:00+02:00"],  # all with a zone
        ["2025-06-01 10:00:00", "2025-06-02T10:00:00.5", "2025-06-03 10:00"],  # all naive = UTC
        ["2025-06-01T10:00:00Z", "2025-06-02 10:00:00.500", "2025-06-03"],  # mixed styles
    ],
    ids=["zoned", "naive", "mixed"],
)
def test_timestamp_styles_read_as_utc(stamps: list[str], tmp_path: Path) -> None:
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    lines = ["response_id,company_id,submitted_at,kind,score"]
    lines += [f"s{i},101,{stamp},nps,{i}" for i, stamp in enumerate(stamps)]
    (tmp_path / "s" / "surveys.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    submitted = load_snapshot(tmp_path / "s")["surveys"]["submitted_at"].to_list()

    assert submitted[0] == ts("2025-06-01T10:00:00")
    assert submitted[1] == ts("2025-06-02T10:00:00.5")
    assert submitted[2] == (
        ts("2025-06-03T00:00:00") if stamps[2] == "2025-06-03" else ts("2025-06-03T10:00:00")
    )


@pytest.mark.parametrize(
    "stamps",
    [
        ["1748772000", "1748858400.5", "1748952000"],
        ["1748772000000", "1748858400500", "1748952000000"],
        ["1748772000000000", "1748858400500000", "1748952000000000"],
        ["1748772000000000000", "1748858400500000000", "1748952000000000000"],
        ["1748772000.0", "1748858400.5", "N/A"],
    ],
    ids=["seconds", "milliseconds", "microseconds", "nanoseconds", "decimal seconds"],
)
def test_epoch_numbers_are_read_in_the_unit_their_magnitude_shows(stamps: list[str], tmp_path: Path) -> None:
    """Unix epoch times as product-analytics exports write them: the unit is the one that puts the column between
    1990 and 2100."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    lines = ["response_id,company_id,submitted_at,kind,score"]
    lines += [f"s{i},101,{stamp},nps,{i}" for i, stamp in enumerate(stamps)]
    (tmp_path / "s" / "surveys.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if stamps[2] == "N/A":  # an empty timestamp is refused by validation
        (tmp_path / "s" / "surveys.csv").write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")
    edit_csv_text(tmp_path / "s", "usage_events", replace_column(2, [str(1761991200 + 60 * i) for i in range(8)]))

    snapshot = load_snapshot(tmp_path / "s")

    expected = [ts("2025-06-01T10:00:00"), ts("2025-06-02T10:00:00.5"), ts("2025-06-03T12:00:00")]
    assert snapshot["surveys"]["submitted_at"].to_list() == expected[: snapshot["surveys"].height]
    assert snapshot["usage_events"]["occurred_at"][-1] == ts("2025-11-01T10:07:00")


def test_epoch_numbers_stored_as_numbers_in_parquet_are_read(tmp_path: Path) -> None:
    """A warehouse dump may store event times as integer epoch milliseconds."""
    write_tiny_snapshot(tmp_path / "s")
    path = tmp_path / "s" / "usage_events.parquet"
    usage = pl.read_parquet(path)
    usage.with_columns(pl.col("occurred_at").dt.epoch("ms")).write_parquet(path)

    occurred = load_snapshot(tmp_path / "s")["usage_events"]["occurred_at"]

    assert occurred.to_list() == usage["occurred_at"].to_list()


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        (["11/23/2025 14:05", "06/10/2025", "1/2/2025 9:30:15"],
         ["2025-11-23T14:05", "2025-06-10", "2025-01-02T09:30:15"]),
        (["23.11.2025", "06.10.2025 08:00", "1.2.2025"], ["2025-11-23", "2025-10-06T08:00", "2025-02-01"]),
        (["2025-06-01T10:00:00Z", "13/06/2025 10:00:00", "06/07/2025"],
         ["2025-06-01T10:00", "2025-06-13T10:00", "2025-07-06"]),
        (["23-11-2025", "06-10-2025 08:00", "1-2-2025 9:30:15"],
         ["2025-11-23", "2025-10-06T08:00", "2025-02-01T09:30:15"]),
        (["11/23/2025 2:05 PM", "06/10/2025 02:05:33 pm", "1/2/2025 12:30 AM", "1/3/2025 12:00 PM"],
         ["2025-11-23T14:05", "2025-06-10T14:05:33", "2025-01-02T00:30", "2025-01-03T12:00"]),
        (["2025-11-23 2:05 PM", "2025-06-10 11:59:59 PM", "2025-06-11T10:00:00Z", "23.06.2025 1:05 am"],
         ["2025-11-23T14:05", "2025-06-10T23:59:59", "2025-06-11T10:00", "2025-06-23T01:05"]),
        (["2025/05/02", "2025/05/02 14:05", "2025.05.02", "2025/5/3 2:05 PM", "2025.06.04 08:00:30"],
         ["2025-05-02", "2025-05-02T14:05", "2025-05-02", "2025-05-03T14:05", "2025-06-04T08:00:30"]),
    ],
    ids=["month-first", "day-first", "day-first among ISO", "day-first with dashes", "12-hour", "12-hour mixed",
         "year-first with slashes or dots"],
)
def test_dates_in_an_order_the_column_shows_are_read_as_utc(
    stamps: list[str], expected: list[str], tmp_path: Path
) -> None:
    """US (11/23/2025) and day-first (23.11.2025) dates: a value with a part above 12 shows the order."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    lines = ["response_id,company_id,submitted_at,kind,score"]
    lines += [f"s{i},101,{stamp},nps,{i}" for i, stamp in enumerate(stamps)]
    (tmp_path / "s" / "surveys.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    submitted = load_snapshot(tmp_path / "s")["surveys"]["submitted_at"].to_list()

    assert submitted == [ts(text) for text in expected]


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        (["Mar 1, 2025", "March 2, 2025", "3 Mar 2025", "04-Mar-2025", "5-Mar-2025 14:05", "Mar 6, 2025 2:05 PM",
          "2025-Mar-07"],
         ["2025-03-01", "2025-03-02", "2025-03-03", "2025-03-04", "2025-03-05T14:05", "2025-03-06T14:05",
          "2025-03-07"]),
        (["SEPT. 5, 2025", "sep 6 2025 9:30:15", "7-Sept-2025", "8 september 2025 12:30 am", "2025/Sep./09 1:05:30 PM"],
         ["2025-09-05", "2025-09-06T09:30:15", "2025-09-07", "2025-09-08T00:30", "2025-09-09T13:05:30"]),
        (["2025-06-01T10:00:00Z", "Jun 2, 2025 10:00", "2025-06-03 10:00", "4-Jun-2025", "2025/06/05"],
         ["2025-06-01T10:00", "2025-06-02T10:00", "2025-06-03T10:00", "2025-06-04", "2025-06-05"]),
        (["11/23/2025 14:05", "Mar 1, 2025", "06/10/2025"], ["2025-11-23T14:05", "2025-03-01", "2025-06-10"]),
        (["Sat, 01 Mar 2025 14:05:00 +0100", "March 2nd, 2025 at 2:05 PM", "Mar 3, 2025, 14:05:30.5 UTC",
          "Tuesday, 4 March 2025 08:00"],
         ["2025-03-01T13:05", "2025-03-02T14:05", "2025-03-03T14:05:30.5", "2025-03-04T08:00"]),
    ],
    ids=["forms", "any case and a dot", "among ISO", "among month-first", "weekday, ordinal, at, offset or UTC"],
)
def test_dates_with_english_month_names_are_read_as_utc(
    stamps: list[str], expected: list[str], tmp_path: Path
) -> None:
    """Mar 1, 2025, 01-Mar-2025 14:05 or 2025-Mar-01, as spreadsheets and CRMs export dates: the month's name
    (English, abbreviated or not, any case, a dot or not) says which part is the month."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    lines = ["response_id,company_id,submitted_at,kind,score"]
    lines += [f'r{i},101,"{stamp}",nps,{i}' for i, stamp in enumerate(stamps)]
    (tmp_path / "s" / "surveys.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    submitted = load_snapshot(tmp_path / "s")["surveys"]["submitted_at"].to_list()

    assert submitted == [ts(text) for text in expected]


def test_enum_spellings_are_read_as_the_canonical_value(tmp_path: Path) -> None:
    """Case, spaces and hyphens of enum values are forgiven; a value that is not an enum value is refused."""
    tables = build_tables()
    spellings = ["QBR", "Check-In", "check in", None, "Renewal"]
    meeting_kind = (spellings * tables["engagements"].height)[: tables["engagements"].height]
    tables["engagements"] = tables["engagements"].with_columns(
        pl.Series("meeting_kind", meeting_kind, dtype=pl.String), pl.lit("Outbound").alias("direction")
    )
    write_tiny_snapshot(tmp_path / "s", tables=tables)

    engagements = load_snapshot(tmp_path / "s")["engagements"]

    canonical = {"QBR": "qbr", "Check-In": "check_in", "check in": "check_in", None: None, "Renewal": "renewal"}
    assert engagements["meeting_kind"].to_list() == [canonical[s] for s in meeting_kind]
    assert set(engagements["direction"]) == {"outbound"}

    tables["engagements"] = tables["engagements"].with_columns(pl.lit("Check-In Call").alias("meeting_kind"))
    write_tiny_snapshot(tmp_path / "bad", tables=tables)
    with pytest.raises(InputError, match="table engagements, column meeting_kind: .*outside qbr/renewal/check_in"):
        load_snapshot(tmp_path / "bad")


def test_parquet_with_loose_types_is_coerced(tmp_path: Path) -> None:
    """Float ids from pandas (101.0, NaN), naive nanosecond timestamps and 0/1 booleans become canonical."""
    tables = build_tables()
    tables["companies"] = tables["companies"].with_columns(
        pl.col("company_id").cast(pl.Int64).cast(pl.Float64),
        pl.col("created_at").dt.replace_time_zone(None).cast(pl.Datetime("ns")),
        pl.col("employees").cast(pl.Float64),
        pl.col("cs_owner_id").cast(pl.Float64).fill_null(float("nan")),
    )
    tables["tickets"] = tables["tickets"].with_columns(pl.col("escalated").cast(pl.Int8))
    tables["surveys"] = tables["surveys"].with_columns(pl.col("submitted_at").dt.date())
    write_tiny_snapshot(tmp_path / "s", tables=tables)

    snapshot = load_snapshot(tmp_path / "s")

    expected = build_tables()
    for table in ("companies", "tickets"):
        assert snapshot[table].equals(expected[table]), table
    assert snapshot["surveys"]["submitted_at"].equals(expected["surveys"]["submitted_at"])


def test_empty_optional_table_is_allowed(tmp_path: Path) -> None:
    tables = build_tables()
    tables["surveys"] = tables["surveys"].head(0)
    write_tiny_snapshot(tmp_path / "s", fmt="csv", tables=tables)
    assert load_snapshot(tmp_path / "s")["surveys"].height == 0


# --- portal value mapping ------------------------------------------------------------------------------------


def portal_export(folder: Path) -> Path:
    """The tiny snapshot as a portal exports it: its own stage, priority and event names, its own column name."""
    tables = build_tables()
    tables["deals"] = tables["deals"].with_columns(
        pl.col("stage").replace({"won": "closedwon", "open": "Contract Sent"})
    )
    tables["tickets"] = tables["tickets"].with_columns(pl.col("priority").str.to_uppercase())
    tables["usage_events"] = tables["usage_events"].with_columns(
        pl.col("event").replace({"report_published": "Report Published"})
    )
    tables["companies"] = tables["companies"].rename({"tier": "Plan"})
    return write_tiny_snapshot(folder, fmt="csv", tables=tables)


MAPPING = """
values:
  deals:
    stage:
      closedwon: won
      closedlost: lost
      "contract  sent": open
  tickets:
    priority:
      P1: urgent
  usage_events:
    event:
      report published: report_published
columns:
  companies:
    plan: tier
"""


def test_mapping_file_maps_portal_values(tmp_path: Path, capsys) -> None:
    folder = portal_export(tmp_path / "s")
    mapping = tmp_path / "mapping.yml"
    mapping.write_text(MAPPING, encoding="utf-8")

    code, _, err = run_cli(capsys, "validate", str(folder))
    assert code == 2 and "table companies, column tier" in err

    code, out, err = run_cli(capsys, "validate", str(folder), "--mapping", str(mapping))
    assert code == 0, err
    snapshot = load_snapshot(folder, mapping=mapping)
    expected = build_tables()
    for table in ("companies", "deals", "tickets", "usage_events"):
        assert snapshot[table].equals(expected[table]), table


def test_unmapped_portal_value_names_table_and_column(tmp_path: Path, capsys) -> None:
    folder = portal_export(tmp_path / "s")
    mapping = tmp_path / "mapping.yml"
    mapping.write_text(MAPPING.replace("closedwon: won", "closed_won: won"), encoding="utf-8")
    code, _, err = run_cli(capsys, "validate", str(folder), "--mapping", str(mapping))
    assert code == 2
    assert "table deals, column stage" in err and "stage=closedwon" in err


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("values:\n  deal:\n    stage: {closedwon: won}\n", "unknown table 'deal'"),
        ("values:\n  deals:\n    phase: {closedwon: won}\n", "no column 'phase'"),
        ("values: [1, 2\n", "not valid YAML"),
        ("columns:\n  companies:\n    Plan: plan_name\n", "'plan_name' is not a column"),
        ("timezone: Mars/Olympus\n", "timezone 'Mars/Olympus' is not an IANA time zone name such as Europe/Berlin"),
        ("timezone: PST\n", "timezone 'PST' is not an IANA time zone name"),
        ("timezone: [Europe/Berlin]\n", "is not an IANA time zone name"),
    ],
)
def test_bad_mapping_file_is_refused(text: str, fragment: str, tmp_path: Path, capsys) -> None:
    folder = write_tiny_snapshot(tmp_path / "s")
    mapping = tmp_path / "mapping.yml"
    mapping.write_text(text, encoding="utf-8")
    code, _, err = run_cli(capsys, "validate", str(folder), "--mapping", str(mapping))
    assert code == 2 and fragment in err and "Traceback" not in err


def test_mapping_keys_are_the_text_written(tmp_path: Path, capsys) -> None:
    """Portal values such as Yes, No, On hold, 0012 and 1.0 map as written: YAML 1.1 would read the first three as
    booleans, 0012 as the octal number 10 and 1.0 as a number, so they never matched the export's text. Yes/no words
    as canonical values of a yes/no column are still read as yes and no."""
    tables = build_tables()
    tables["deals"] = tables["deals"].with_columns(pl.col("stage").replace({"won": "Yes", "open": "On hold"}))
    tables["companies"] = tables["companies"].with_columns(
        pl.col("tier").replace({"pro": "0012", "enterprise": "1.0", "starter": "No"})
    )
    tables["tickets"] = tables["tickets"].with_columns(
        pl.when(pl.col("escalated")).then(pl.lit("Escalated")).otherwise(pl.lit("Not escalated")).alias("escalated")
    )
    folder = write_tiny_snapshot(tmp_path / "s", fmt="csv", tables=tables)
    mapping = tmp_path / "mapping.yml"
    mapping.write_text(
        "values:\n"
        "  deals:\n    stage: {Yes: won, On hold: open, No: lost}\n"
        "  companies:\n    tier: {0012: pro, 1.0: enterprise, No: starter}\n"
        "  tickets:\n    escalated: {Escalated: yes, Not escalated: no}\n",
        encoding="utf-8",
    )
    assert load_mapping(mapping).values["companies"]["tier"] == {"0012": "pro", "1.0": "enterprise", "no": "starter"}
    code, _, err = run_cli(capsys, "validate", str(folder), "--mapping", str(mapping))
    assert code == 0, err
    snapshot = load_snapshot(folder, mapping=mapping)
    expected = build_tables()
    for table in ("companies", "deals", "tickets"):
        assert snapshot[table].equals(expected[table]), table


def test_example_mapping_file_maps_onto_canonical_values() -> None:
    from hsutils.schema import TABLES

    mapping = load_mapping(MAPPING_EXAMPLE)
    assert mapping.values, "the example maps at least one column"
    for table, columns in mapping.values.items():
        for column, pairs in columns.items():
            allowed = TABLES[table].column(column).values
            if allowed is not None:
                assert set(pairs.values()) <= set(allowed), (table, column)
                respelled = {k for k in pairs if k.replace(" ", "_").replace("-", "_") in allowed}
                assert not respelled, f"{table}.{column}: {respelled} read as canonical without a mapping"


def test_example_mappings_map_only_what_a_mapping_is_needed_for(tmp_path: Path) -> None:
    """The example mapping file and the README's mapping example load, and rename no header that is read without a
    mapping (`Record ID`, `Create Date`, ...: HubSpot's export headers, and canonical names written loosely)."""
    import yaml

    from hsutils.validate import _canonical_column

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    readme_yaml = re.search(r"```yaml\n(values:.*?)```", readme, re.S)
    assert readme_yaml is not None
    (tmp_path / "readme.yml").write_text(readme_yaml.group(1), encoding="utf-8")
    assert load_mapping(tmp_path / "readme.yml").timezone == "America/New_York"
    for text in (MAPPING_EXAMPLE.read_text(encoding="utf-8"), readme_yaml.group(1)):
        for table, headers in (yaml.safe_load(text).get("columns") or {}).items():
            for header in headers:
                assert _canonical_column(header, table) is None, (table, header)


def test_core_events_found_past_the_first_rows(monkeypatch) -> None:
    """The core-event check looks at the first rows first, then at all of them for the events still missing."""
    from hsutils import validate

    monkeypatch.setattr(validate, "CORE_EVENT_HEAD", 2)
    usage = pl.DataFrame({"event": ["login", "login", "login", "report_published"]}).cast(pl.Categorical)
    manifest = build_manifest(core_events=["report_published"])
    validate.check_core_events(usage, manifest)  # found in the fourth row
    with pytest.raises(InputError, match="core_events never occur: 'dashboard_shared'"):
        validate.check_core_events(usage, build_manifest(core_events=["report_published", "dashboard_shared"]))


# --- CSV files as spreadsheets save them ----------------------------------------------------------------------


def test_csv_with_carriage_return_line_endings_is_read(tmp_path: Path) -> None:
    """Excel's 'CSV (Macintosh)' ends lines with a bare carriage return."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    path = tmp_path / "s" / "companies.csv"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r"))

    companies = load_snapshot(tmp_path / "s")["companies"]

    assert companies.equals(build_tables()["companies"])


@pytest.mark.parametrize("delimiter", [";", "\t"], ids=["semicolon", "tab"])
def test_csv_separated_by_semicolons_or_tabs_is_read(delimiter: str, tmp_path: Path) -> None:
    """Excel in European locales saves CSV with ';'; some exports are tab-separated under a .csv name."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    path = tmp_path / "s" / "companies.csv"
    companies = build_tables()["companies"]
    companies.write_csv(path, separator=delimiter, datetime_format="%Y-%m-%dT%H:%M:%SZ")
    assert "," in path.read_text(encoding="utf-8")  # 'Birch, Bell & Co' keeps its comma

    assert load_snapshot(tmp_path / "s")["companies"].equals(companies)


def _semicolon_lines(lines: list[str]) -> list[str]:
    """The companies table as Excel saves it in European locales: ';'-separated, 'Birch, Bell & Co' kept."""
    return [line.replace('"', "").replace(",", ";").replace("Birch; Bell", "Birch, Bell") for line in lines]


@pytest.mark.parametrize(
    "edit",
    [
        lambda lines: [lines[0], ",,,,,,,", *lines[1:], ",,,,,,,"],
        lambda lines: [*lines, ",,,", ' ,"", '],
        lambda lines: [*lines, "   "],
        lambda lines: ["sep=;", *_semicolon_lines(lines)],
        lambda lines: ["sep=|", *(line.replace(";", "|") for line in _semicolon_lines(lines))],
        lambda lines: [line + "," for line in lines],
        lambda lines: [line + ";;" for line in _semicolon_lines(lines)],
    ],
    ids=[
        "separator-only rows", "short separator-only rows", "whitespace-only last line", "sep=; line",
        "sep=| line", "trailing separator", "two trailing separators",
    ],
)
def test_csv_leftovers_of_excel_that_hold_no_data_are_skipped(edit: Callable, tmp_path: Path) -> None:
    """Lines of only separators or spaces, Excel's 'sep=X' first line (X is used) and unnamed empty trailing
    columns are dropped; the table reads as if they were not there."""
    with_csv_text("companies", edit)(tmp_path / "s")

    assert load_snapshot(tmp_path / "s")["companies"].equals(build_tables()["companies"])


@pytest.mark.parametrize(
    ("arr", "seats"),
    [
        (['"$24,000.00"', '"26,000.50"', '"$90,000"', "3000"], ["20", '"1,080"', "80", "3"]),
        (['"24.000,00 €"', '"26000,50"', "90.000", "3000"], ["20", "1.080", "80", "3"]),
        (["24\u00a0000", '"26 000,50"', "90\u202f000", "3000"], ["20", "1\u00a0080", "80", "3"]),
        (["24000 USD", '"USD 26,000.50"', '"USD 90,000"', "GBP3000"], ["20", '"1,080"', "80", "3"]),
        (['"US$24,000"', '"CA$26,000.50"', "A$90000", "HK$ 3000"], ["20", '"1,080"', "80", "3"]),
        (["24'000", "26’000.50", "90'000.00", "CHF 3'000"], ["20", "1'080", "80", "3"]),
        (['"EUR 24.000,00"', '"26000,50 EUR"', '"90.000 €"', "3000"], ["20", "1.080", "80", "3"]),
    ],
    ids=["point-decimal", "comma-decimal", "space-grouped", "currency codes", "country dollars", "swiss grouping",
         "comma-decimal with codes"],
)
def test_numbers_as_spreadsheets_format_them_are_read(arr: list[str], seats: list[str], tmp_path: Path) -> None:
    """Currency signs and thousands separators are dropped; a column with a decimal comma reads it as the point."""
    with_csv_text("deals", lambda lines: replace_column(7, arr)(replace_column(8, seats)(lines)))(tmp_path / "t")

    deals = load_snapshot(tmp_path / "t")["deals"]

    assert deals["arr"].to_list() == [24000.0, 26000.5, 90000.0, 3000.0]
    assert deals["seats"].to_list() == [20, 1080, 80, 3]


def test_headers_with_a_currency_or_utc_unit_name_their_column(tmp_path: Path) -> None:
    """'ARR (USD)', 'Term End [UTC]' name arr and term_end; a unit that changes the values is not read as one."""
    header = "Deal ID,Company ID,Deal Type,Stage,Term Start (UTC),Term End [UTC],Close Date,ARR (USD),Seats"
    with_csv_text("deals", lambda lines: [header, *lines[1:]])(tmp_path / "s")

    deals = load_snapshot(tmp_path / "s")["deals"]

    assert deals.equals(build_tables()["deals"])
    for unit, column, renamed in (
        ("ARR (k)", "arr", header.replace("ARR (USD)", "ARR (k)")),
        ("Close Date (CET)", "close_date", header.replace("Close Date", "Close Date (CET)")),
    ):
        edit_csv_text(tmp_path / "s", "deals", lambda lines, h=renamed: [h, *lines[1:]])
        with pytest.raises(InputError, match=rf"column {column}: required column missing.*{re.escape(repr(unit))} has a unit"):
            load_snapshot(tmp_path / "s")


def test_spreadsheet_words_for_no_value_are_empty_in_typed_columns(tmp_path: Path) -> None:
    """'N/A', '#N/A' (Excel's lookup miss), 'null', 'None' in a number, date, yes/no or optional id or enum column
    mean no value."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    tickets = (
        "ticket_id,company_id,contact_id,created_at,closed_at,priority,sentiment,escalated,csat\n"
        "t1,101,N/A,2025-05-02T10:00:00Z,#N/A,high,negative,true,N/A\n"
        "t2,102,,2025-06-10T10:00:00Z,null,low,neutral,false,None\n"
        "t3,103,504,2025-07-20T10:00:00Z,2025-07-20T12:00:00Z,medium,positive,false,5\n"
    )
    (tmp_path / "s" / "tickets.csv").write_text(tickets, encoding="utf-8")
    engagements = (tmp_path / "s" / "engagements.csv").read_text(encoding="utf-8").replace(",,,", ",#N/A,NULL,")
    (tmp_path / "s" / "engagements.csv").write_text(engagements, encoding="utf-8")

    companies = (tmp_path / "s" / "companies.csv").read_text(encoding="utf-8").replace(",9002,", ",#N/A,")
    (tmp_path / "s" / "companies.csv").write_text(companies, encoding="utf-8")
    meetings = (tmp_path / "s" / "engagements.csv").read_text(encoding="utf-8").replace(",qbr", ",N/A")
    (tmp_path / "s" / "engagements.csv").write_text(meetings, encoding="utf-8")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning of a contact 'N/A' that is not in contacts
        snapshot = load_snapshot(tmp_path / "s")

    assert snapshot["tickets"]["closed_at"].to_list() == [None, None, ts("2025-07-20T12:00:00")]
    assert snapshot["tickets"]["csat"].to_list() == [None, None, 5]
    assert snapshot["engagements"]["opened"].null_count() == 3
    assert snapshot["engagements"]["replied"].null_count() == 3
    assert snapshot["tickets"]["contact_id"].to_list() == [None, None, "504"]
    assert snapshot["companies"]["cs_owner_id"].to_list() == ["9001", None, None]
    assert snapshot["engagements"]["meeting_kind"].null_count() == 4


def test_accounting_dash_is_zero_in_number_columns_and_stays_text_in_a_name(tmp_path: Path) -> None:
    """Excel's accounting format shows zero as '-' (or '$ -') and a negative in parentheses; a company name keeps
    its '-' (in an optional text column such as industry it means no value)."""
    arr, seats = ['"$ -"', "-", '"$ (90,000.00)"', '"(3,000.50)"'], ["20", "22", "-", '" $ - "']
    with_csv_text("deals", lambda lines: replace_column(7, arr)(replace_column(8, seats)(lines)))(tmp_path / "s")
    edit_csv_text(tmp_path / "s", "companies", lambda lines: replace_field(1, 4, "-")(replace_field(3, 1, "-")(lines)))

    snapshot = load_snapshot(tmp_path / "s", validate=False)  # the negative arr is refused by validation

    assert snapshot["deals"]["arr"].to_list() == [0.0, 0.0, -90000.0, -3000.5]
    assert snapshot["deals"]["seats"].to_list() == [20, 22, 0, 0]
    assert snapshot["companies"]["employees"].to_list() == [0, None, 8]
    assert snapshot["companies"]["name"].to_list() == ["Acme Analytics", "Birch, Bell & Co", "-"]


def test_placeholders_for_no_value_are_empty_in_optional_text_columns(tmp_path: Path, capsys) -> None:
    """N/A, #N/A, null, None and a dash in industry or job_title are no value (not a segment of their own), as in
    an optional id or enum column; a required tier keeps its text."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    edit_csv_text(
        tmp_path / "s",
        "companies",
        lambda lines: replace_field(1, 5, "N/A")(replace_field(3, 5, "-")(replace_field(3, 3, "N/A")(lines))),
    )
    edit_csv_text(tmp_path / "s", "contacts", replace_column(4, ["#N/A", "-", "null", "Analyst"]))
    edit_csv_text(tmp_path / "s", "engagements", lambda lines: replace_field(2, 8, "-")(replace_field(1, 2, "—")(lines)))

    snapshot = load_snapshot(tmp_path / "s")

    assert snapshot["companies"]["industry"].to_list() == [None, None, None]
    assert snapshot["companies"]["tier"].to_list() == ["pro", "enterprise", "N/A"]
    assert snapshot["contacts"]["job_title"].to_list() == [None, None, None, "Analyst"]
    assert snapshot["engagements"]["meeting_kind"].to_list() == [None] * 4
    assert snapshot["engagements"]["contact_id"].to_list() == [None, "501", None, "504"]
    assert main(["validate", str(tmp_path / "s")]) == 0


@pytest.mark.parametrize(
    "arr",
    [
        ['"(USD 24,000.00)"', '"(26,000.50 USD)"', '"-USD 90,000"', '"($3,000.00)"'],
        ['"(EUR 24.000,00)"', '"(26.000,50 €)"', '"-EUR 90.000"', '"USD (3000)"'],
    ],
    ids=["point-decimal", "comma-decimal"],
)
def test_negative_amounts_with_a_currency_code_inside_parentheses_are_read(arr: list[str], tmp_path: Path) -> None:
    """A currency code may sit inside the accounting parentheses or after the minus sign, as a sign does."""
    with_csv_text("deals", replace_column(7, arr))(tmp_path / "s")

    deals = load_snapshot(tmp_path / "s", validate=False)["deals"]  # negative arr is refused by validation

    assert deals["arr"].to_list() == [-24000.0, -26000.5, -90000.0, -3000.0]


def test_yes_no_words_of_exports_and_check_boxes_are_read(tmp_path: Path) -> None:
    """true/false, t/f, yes/no, y/n, on/off, 1/0 in any case, and the check marks ✓/✗ (✔/✘)."""
    opened = ["on", "✓", "Y", "✔"]
    replied = ["OFF", "✗", "n", "✘"]
    with_csv_text("engagements", lambda lines: replace_column(6, opened)(replace_column(7, replied)(lines)))(
        tmp_path / "s"
    )
    edit_csv_text(tmp_path / "s", "tickets", replace_column(7, ["Yes", "f", "1"]))

    snapshot = load_snapshot(tmp_path / "s")

    assert snapshot["engagements"]["opened"].to_list() == [True] * 4
    assert snapshot["engagements"]["replied"].to_list() == [False] * 4
    assert snapshot["tickets"]["escalated"].to_list() == [True, False, True]


@pytest.mark.parametrize("inside", [True, False])
def test_warnings_of_the_package_and_its_subpackages_are_one_plain_line(inside: bool, monkeypatch, capsys) -> None:
    from hsutils import cli

    where = cli.PACKAGE_DIR / "hubspot" / "pull.py" if inside else Path("/elsewhere/their_script.py")

    def handler(args) -> int:
        warnings.warn_explicit("3 tickets linked to a contact not pulled", UserWarning, str(where), 7)
        warnings.warn_explicit("3 tickets linked to a contact not pulled", UserWarning, str(where), 9)  # said once
        return 0

    monkeypatch.setattr(cli, "resolve_handler", lambda command: handler)
    if inside:
        code, _, err = run_cli(capsys, "validate", "somewhere")
    else:
        with pytest.warns(UserWarning, match="contact not pulled"):
            code, _, err = run_cli(capsys, "validate", "somewhere")
    assert code == 0
    plain = "hsutils validate: warning: 3 tickets linked to a contact not pulled\n"
    assert (err == plain) == inside  # a warning of other code keeps Python's own form (pytest records it here)


# --- encodings, unset values and HubSpot's own export headers ----------------------------------------------------


@pytest.mark.parametrize("chunk", [None, 100], ids=["in the first lines", "past the first chunk read"])
def test_csv_saved_by_excel_on_windows_is_read_as_windows_1252_with_a_warning(
    chunk: int | None, tmp_path: Path, monkeypatch
) -> None:
    """Excel on Windows saves 'CSV (Comma delimited)' in Windows-1252: read so when the file is not UTF-8 and that
    reads it clearly, said in one warning naming the file; rows are still named by their line."""
    from hsutils import validate

    if chunk:  # the header is read from the first chunk; the rest is found to be no UTF-8 while reading
        monkeypatch.setattr(validate, "_READ_CHUNK", chunk)
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    path = tmp_path / "s" / "companies.csv"
    text = path.read_text(encoding="utf-8").replace("Cobalt", "Société Générale – “€”").replace("retail", "Bäckerei")
    path.write_bytes(text.encode("cp1252"))

    with pytest.warns(UserWarning, match=r"companies.csv is not UTF-8 text; read as Windows-1252.*'Société'") as caught:
        companies = load_snapshot(tmp_path / "s")["companies"]

    assert len([w for w in caught if "Windows-1252" in str(w.message)]) == 1
    assert companies["name"].to_list()[-1] == "Société Générale – “€”"
    assert companies["industry"].to_list()[-1] == "Bäckerei"
    path.write_bytes(text.replace(",8,", ",eight,").encode("cp1252"))
    with pytest.warns(UserWarning, match="Windows-1252"), pytest.raises(InputError, match=r"line=4, employees='eight'"):
        load_snapshot(tmp_path / "s")


def test_csv_saved_as_unicode_text_is_read_as_utf_16(tmp_path: Path) -> None:
    """Excel's 'Unicode Text' is UTF-16 after a byte-order mark, tab-separated."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    tables = build_tables()
    companies = tables["companies"].with_columns(pl.col("name").replace("Cobalt", "Société Générale €"))
    path = tmp_path / "s" / "companies.csv"
    companies.write_csv(path, separator="\t", datetime_format="%Y-%m-%dT%H:%M:%SZ")
    path.write_bytes(path.read_text(encoding="utf-8").replace("\n", "\r\n").encode("utf-16"))
    edit = "\t8\t".encode("utf-16-le"), "\teight\t".encode("utf-16-le")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_snapshot(tmp_path / "s")["companies"].equals(companies)
    path.write_bytes(path.read_bytes().replace(*edit))
    with pytest.raises(InputError, match=r"line=4, employees='eight'"):
        load_snapshot(tmp_path / "s")


def test_placeholders_for_no_date_are_empty_in_optional_date_columns(tmp_path: Path) -> None:
    """'-', '—', 'n/a' in close_date (an open deal) or closed_at are no date; a required date keeps refusing them."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    edit_csv_text(tmp_path / "s", "tickets", replace_column(4, ["2025-05-03T10:00:00Z", "—", "-"]))
    edit_csv_text(tmp_path / "s", "deals", replace_field(4, 6, "--"))

    snapshot = load_snapshot(tmp_path / "s")

    assert snapshot["tickets"]["closed_at"].to_list() == [ts("2025-05-03T10:00:00"), None, None]
    assert snapshot["deals"]["close_date"].to_list()[-1] is None


def test_epoch_zero_in_an_optional_time_column_is_empty_with_a_warning(tmp_path: Path) -> None:
    """Systems write 0 for a time never set (1970-01-01 as an epoch time): empty in closed_at, counted in a
    warning that names the lines."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    edit_csv_text(tmp_path / "s", "tickets", replace_column(3, ["1746180000", "1749549600", "1753005600"]))
    edit_csv_text(tmp_path / "s", "tickets", replace_column(4, ["1746266400", "0", "0"]))

    with pytest.warns(UserWarning, match=r"column closed_at: 2 value\(s\) 0 read as empty.*1970-01-01.*line=3"):
        tickets = load_snapshot(tmp_path / "s")["tickets"]

    assert tickets["closed_at"].to_list() == [ts("2025-05-03T10:00:00"), None, None]
    assert tickets["created_at"].to_list()[0] == ts("2025-05-02T10:00:00")


def test_trailing_minus_of_erp_exports_is_a_negative_number(tmp_path: Path) -> None:
    """SAP and other ERP exports write a negative as 24,000.00-; the accounting dash stays zero."""
    arr = ['"24,000.00-"', "26000.50-", '"$90,000 -"', "-"]
    with_csv_text("deals", replace_column(7, arr))(tmp_path / "s")
    edit_csv_text(tmp_path / "s", "companies", replace_field(1, 4, "120-"))

    snapshot = load_snapshot(tmp_path / "s", validate=False)  # negative arr and employees are refused by validation

    assert snapshot["deals"]["arr"].to_list() == [-24000.0, -26000.5, -90000.0, 0.0]
    assert snapshot["companies"]["employees"].to_list()[0] == -120


def test_repeated_header_of_a_column_the_schema_does_not_use_is_read_once(tmp_path: Path) -> None:
    """Two 'Notes' columns: the first is kept as an extra column, the other left out, with one warning."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    edit_csv_text(
        tmp_path / "s", "companies",
        lambda lines: [lines[0] + ",Notes,Notes,Notes", *(line + ",first,second,third" for line in lines[1:])],
    )

    with pytest.warns(UserWarning, match=r"companies.csv names column 'Notes' more than once.*first copy") as caught:
        companies = load_snapshot(tmp_path / "s")["companies"]

    assert len(caught) == 1
    assert companies.drop("Notes").equals(build_tables()["companies"])
    assert companies["Notes"].to_list() == ["first"] * 3


HUBSPOT_HEADERS = {
    "companies": "Record ID,Company name,Create Date,tier,Number of Employees,Industry,cs_owner_id,ae_owner_id",
    "contacts": "Record ID,Associated Company ID,role,Create Date,Job Title",
    "deals": "Record ID,Associated Company IDs (Primary),Deal Type,Deal Stage,term_start,term_end,Close Date,Amount,seats",
    "tickets": "Record ID,Associated Company IDs,Associated Contact IDs (Primary),Create date,Close date,Priority,"
    "sentiment,escalated,csat",
}


def test_headers_of_hubspot_crm_exports_name_their_columns(tmp_path: Path) -> None:
    """'Record ID', 'Create Date', 'Deal Stage', 'Amount', 'Associated Company IDs' as HubSpot's exports name them
    need no mapping file; where an export has two for one column, the closer one is read."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    for table, header in HUBSPOT_HEADERS.items():
        edit_csv_text(tmp_path / "s", table, lambda lines, h=header: [h, *lines[1:]])
    edit_csv_text(
        tmp_path / "s", "deals",
        lambda lines: [lines[0] + ",Associated Company IDs,Create Date", *(line + ",101;102,2023-01-01" for line in lines[1:])],
    )

    snapshot = load_snapshot(tmp_path / "s")

    expected = build_tables()
    for table in HUBSPOT_HEADERS:
        canonical = snapshot[table].select(expected[table].columns)
        assert canonical.equals(expected[table]), table
    assert snapshot["deals"].columns[-2:] == ["Associated Company IDs", "Create Date"]  # kept as read


def test_ids_written_with_a_float_tail_are_read_as_whole_numbers(tmp_path: Path) -> None:
    """pandas writes an integer id column holding blanks as floats (101.0): such a column is read as the whole
    numbers, with one warning naming the table and column, and joins the companies written as 101."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    edit_csv_text(tmp_path / "s", "deals", replace_column(1, ["101.0", "101.0", "102.0", "103.00"]))
    edit_csv_text(tmp_path / "s", "engagements", replace_column(2, ["501.0", "501.0", "", "504.0"]))

    with pytest.warns(UserWarning) as caught:
        snapshot = load_snapshot(tmp_path / "s")

    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "table deals, column company_id: deals.csv writes every id as a whole number with a '.0' tail" in messages[0]
    assert "table engagements, column contact_id" in messages[1]
    expected = build_tables()
    for table in ("deals", "engagements"):
        assert snapshot[table].equals(expected[table]), table


def test_ids_mixing_float_tails_with_other_ids_stay_as_written(tmp_path: Path) -> None:
    """A column where some id is no whole number with a '.0' tail keeps its text ('101.5' is no 101.5 nor 101)."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    edit_csv_text(tmp_path / "s", "deals", replace_column(0, ["7001.0", "7001.5", "x7003", "7004.0"]))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deals = load_snapshot(tmp_path / "s")["deals"]

    assert deals["deal_id"].to_list() == ["7001.0", "7001.5", "x7003", "7004.0"]


def test_unicode_minus_is_a_negative_number(tmp_path: Path) -> None:
    """'−' (U+2212), the minus sign of typeset numbers, is read as '-', also before a currency and after a number."""
    with_csv_text("deals", replace_column(7, ["−24000", '"−$26,000.50"', "US$−90000", "3000−"]))(tmp_path / "s")
    edit_csv_text(tmp_path / "s", "companies", replace_field(1, 4, "−120"))

    snapshot = load_snapshot(tmp_path / "s", validate=False)  # negative arr and employees are refused by validation

    assert snapshot["deals"]["arr"].to_list() == [-24000.0, -26000.5, -90000.0, -3000.0]
    assert snapshot["companies"]["employees"].to_list()[0] == -120


def test_zero_dates_in_an_optional_time_column_are_empty_with_a_warning(tmp_path: Path) -> None:
    """MySQL's zero date (0000-00-00, 0000-00-00 00:00:00, also with Z or an offset) means unset: empty in closed_at,
    counted with epoch 0 in the one warning."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    zero_dates = ["0000-00-00T00:00:00Z", "0000-00-00 00:00:00+00:00"]
    edit_csv_text(tmp_path / "s", "tickets", replace_column(4, ["2025-05-03 10:00:00", *zero_dates]))
    edit_csv_text(tmp_path / "s", "deals", replace_field(4, 6, "0000-00-00"))

    with pytest.warns(UserWarning) as caught:
        snapshot = load_snapshot(tmp_path / "s")

    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert re.search(r"table deals, column close_date: 1 value\(s\) 0000-00-00 read as empty.*zero date.*line=5", messages[0])
    assert re.search(r"table tickets, column closed_at: 2 value\(s\) 0000-00-00 read as empty.*line=3", messages[1])
    assert snapshot["tickets"]["closed_at"].to_list() == [ts("2025-05-03T10:00:00"), None, None]
    assert snapshot["deals"]["close_date"].to_list()[-1] is None


def test_epoch_dates_in_an_optional_time_column_are_empty_with_one_warning_per_column(tmp_path: Path) -> None:
    """Integrations write the Unix epoch for a time never set: the date 1970-01-01 alone, 1970-01-01T00:00:00Z, or 0.
    Each is empty in closed_at (and an open deal's close_date), counted in one warning per table and column."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    edit_csv_text(tmp_path / "s", "tickets", replace_column(4, ["2025-05-03T10:00:00Z", "1970-01-01T00:00:00Z", "0"]))
    edit_csv_text(tmp_path / "s", "deals", replace_field(4, 6, "1970-01-01"))

    with pytest.warns(UserWarning) as caught:
        snapshot = load_snapshot(tmp_path / "s")

    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2, messages
    assert re.search(r"table deals, column close_date: 1 value\(s\) 1970-01-01 read as empty.*unset.*line=5", messages[0])
    assert re.search(r"table tickets, column closed_at: 2 value\(s\) 0 or 1970-01-01 read as empty.*line=3", messages[1])
    assert snapshot["tickets"]["closed_at"].to_list() == [ts("2025-05-03T10:00:00"), None, None]
    assert snapshot["deals"]["close_date"].to_list()[-1] is None


@pytest.mark.parametrize("stored", [pl.Datetime("ms"), pl.Datetime("us", "UTC"), pl.Datetime("ns", "Europe/Berlin"),
                                    pl.Date()], ids=str)
def test_epoch_times_stored_in_parquet_are_empty_with_a_warning(stored: pl.DataType, tmp_path: Path) -> None:
    """A parquet file stores the placeholder as a datetime (or date) at the epoch: read as empty, with the warning."""
    write_tiny_snapshot(tmp_path / "s")
    path = tmp_path / "s" / "tickets.parquet"
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    tickets = pl.read_parquet(path).with_columns(
        pl.when(pl.col("ticket_id") != "t1").then(epoch).otherwise(pl.col("closed_at")).alias("closed_at")
    )
    closed = tickets["closed_at"]
    if isinstance(stored, pl.Datetime):
        closed = closed.dt.convert_time_zone(stored.time_zone) if stored.time_zone else closed.dt.replace_time_zone(None)
    tickets.with_columns(closed.cast(stored)).write_parquet(path)

    with pytest.warns(UserWarning, match=r"table tickets, column closed_at: 2 value\(s\) 1970-01-01 read as empty.*row=2"):
        snapshot = load_snapshot(tmp_path / "s")

    assert snapshot["tickets"]["closed_at"].to_list()[1:] == [None, None]
    assert snapshot["tickets"]["closed_at"][0] is not None


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_term_at_the_epoch_is_refused_not_read_as_a_customer_since_1970(fmt: str, tmp_path: Path) -> None:
    """A won deal whose term_start and close_date are the epoch placeholder made the panel's weekly as-of dates start
    in 1970; its term_start is now refused in one line naming the column, and the placeholder in an open deal's
    close_date leaves the first customer moment at the first real term."""
    from hsutils.panel import default_as_of_dates, first_customer_moment

    tables = build_tables()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    placeholder = pl.when(pl.col("deal_id") == "7001").then(epoch)
    tables["deals"] = tables["deals"].with_columns(
        placeholder.otherwise(pl.col(c)).alias(c) for c in ("term_start", "close_date"))
    write_tiny_snapshot(tmp_path / "refused", fmt=fmt, tables=tables)

    with pytest.raises(InputError, match=r"^table deals, column term_start: 1 value\(s\) 1970-01-01, a placeholder for unset"):
        load_snapshot(tmp_path / "refused")

    tables = build_tables()
    tables["deals"] = tables["deals"].with_columns(
        pl.when(pl.col("stage") == "open").then(epoch).otherwise(pl.col("close_date")).alias("close_date"))
    write_tiny_snapshot(tmp_path / "loaded", fmt=fmt, tables=tables)
    with pytest.warns(UserWarning, match="column close_date: 1 value"):
        snapshot = load_snapshot(tmp_path / "loaded")
    assert first_customer_moment(snapshot) == ts("2023-01-15")
    assert default_as_of_dates(snapshot)[0].year == 2023


PORTAL_TIMES = {  # tickets.created_at and closed_at as a portal in Berlin exports them (naive), and in UTC
    "2025-05-02 12:00": "2025-05-02T10:00:00",  # summer: UTC+2
    "2025-01-10 09:30:15": "2025-01-10T08:30:15",  # winter: UTC+1
    "2025-10-26 02:30": "2025-10-26T00:30:00",  # twice in Berlin (clocks go back): the earlier, still summer time
}


@pytest.mark.parametrize("mixed", [False, True], ids=["every value naive", "naive among times with an offset"])
def test_mapping_timezone_reads_naive_times_in_the_portals_zone(mixed: bool, tmp_path: Path) -> None:
    """HubSpot's exports write times in the portal's zone without an offset: `timezone:` in the mapping reads them
    there. Times written with an offset or Z, epoch numbers, a column of dates alone and a column whose header
    names UTC are read as before; without the key, naive times are UTC."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    naive = list(PORTAL_TIMES)
    created = [*naive[:2], "2025-07-20T10:00:00Z"] if mixed else naive
    edit_csv_text(tmp_path / "s", "tickets", replace_column(3, created))
    edit_csv_text(tmp_path / "s", "tickets", replace_column(4, ["2025-05-03 12:00", "", "2025-10-26T12:00:00+00:00"]))
    edit_csv_text(tmp_path / "s", "usage_events", replace_column(2, [str(1761991200 + 60 * i) for i in range(8)]))
    edit_csv_text(tmp_path / "s", "deals", replace_column(4, ["2023-01-15", "2024-01-15", "2023-03-15", "2026-02-01"]))
    edit_csv_text(tmp_path / "s", "engagements", lambda lines: [lines[0].replace("occurred_at", "Occurred At (UTC)"), *lines[1:]])
    edit_csv_text(tmp_path / "s", "engagements", replace_field(1, 5, "2025-06-01 09:30"))
    mapping = tmp_path / "mapping.yml"
    mapping.write_text("timezone: Europe/Berlin\n", encoding="utf-8")

    assert load_snapshot(tmp_path / "s")["tickets"]["created_at"][0] == ts("2025-05-02T12:00:00")
    snapshot = load_snapshot(tmp_path / "s", mapping=mapping)

    tickets = snapshot["tickets"]
    assert tickets["created_at"].to_list() == [
        ts(PORTAL_TIMES[naive[0]]), ts(PORTAL_TIMES[naive[1]]), ts("2025-07-20T10:00:00" if mixed else "2025-10-26T00:30:00")
    ]
    assert tickets["closed_at"].to_list() == [ts("2025-05-03T10:00:00"), None, ts("2025-10-26T12:00:00")]
    assert snapshot["usage_events"]["occurred_at"][-1] == ts("2025-11-01T10:07:00")  # epoch numbers are UTC
    expected = build_tables()
    assert snapshot["deals"]["term_start"].equals(expected["deals"]["term_start"])
    assert snapshot["engagements"]["occurred_at"].equals(expected["engagements"]["occurred_at"])


def test_mapping_timezone_refuses_a_local_time_its_clocks_skip(tmp_path: Path, capsys) -> None:
    """2025-03-30 02:30 never happened in Berlin (clocks went from 02:00 to 03:00): refused in one line, naming it."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    edit_csv_text(tmp_path / "s", "tickets", replace_column(3, ["2025-03-30 02:30", "2025-06-10 10:00", "2025-07-20 10:00"]))
    mapping = tmp_path / "mapping.yml"
    mapping.write_text("timezone: Europe/Berlin\n", encoding="utf-8")

    code, _, err = run_cli(capsys, "validate", str(tmp_path / "s"), "--mapping", str(mapping))

    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "table tickets, column created_at: 1 value(s) that are no time in Europe/Berlin" in err
    assert "line=2" in err and "2025-03-30T02:30:00" in err


def test_formula_guards_of_exports_are_not_part_of_the_value(tmp_path: Path) -> None:
    """Exports guarding against formula injection write '-24000, '+15, '=Acme: read without the apostrophe (a number,
    a name, '- as a placeholder), which stays elsewhere (O'Brien, 'Tis); Excel-minded exports write ="00123"."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    edit_csv_text(tmp_path / "s", "deals", replace_column(7, ["'-24000", "'+26000.5", '"\'-$90,000"', "3000"]))
    edit_csv_text(tmp_path / "s", "deals", replace_field(4, 6, "'-"))
    edit_csv_text(tmp_path / "s", "companies", lambda lines: [line.replace('"Birch, Bell & Co"', "Birch") for line in lines])
    edit_csv_text(tmp_path / "s", "companies", replace_column(1, ["'=Acme", "O'Brien", "'Tis"]))
    edit_csv_text(tmp_path / "s", "companies", replace_column(4, ["'+120", "", "8"]))
    edit_csv_text(tmp_path / "s", "companies", replace_column(5, ["'-", "'@home", "'retail"]))
    edit_csv_text(tmp_path / "s", "contacts", replace_field(1, 1, '"=""101"""'))

    snapshot = load_snapshot(tmp_path / "s", validate=False)  # negative arr is refused by validation

    assert snapshot["deals"]["arr"].to_list() == [-24000.0, 26000.5, -90000.0, 3000.0]
    assert snapshot["deals"]["close_date"].to_list()[-1] is None
    companies = snapshot["companies"]
    assert companies["name"].to_list() == ["=Acme", "O'Brien", "'Tis"]
    assert companies["employees"].to_list() == [120, None, 8]
    assert companies["industry"].to_list() == [None, "@home", "'retail"]
    assert snapshot["contacts"]["company_id"].to_list() == ["101", "101", "102", "103"]


def test_times_named_utc_after_a_spreadsheet_date_are_read(tmp_path: Path) -> None:
    """'03/23/2025 09:00 UTC', '23.03.2025 2:05 PM GMT' or '... Z': the forms read naive = UTC, named so; a mapping's
    timezone leaves them in UTC."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    edit_csv_text(tmp_path / "s", "tickets", replace_column(3, ["05/02/2025 10:00 UTC", "06/10/2025 10:00 AM GMT", "07/20/2025 10:00 Z"]))
    edit_csv_text(tmp_path / "s", "tickets", replace_column(4, ["2025/05/03 10:00 AM utc", "", "20.07.2025 12:00 GMT"]))
    mapping = tmp_path / "mapping.yml"
    mapping.write_text("timezone: Europe/Berlin\n", encoding="utf-8")

    tickets = load_snapshot(tmp_path / "s", mapping=mapping)["tickets"]

    assert tickets.select("created_at", "closed_at").equals(build_tables()["tickets"].select("created_at", "closed_at"))


def test_mapping_timezone_reads_naive_month_name_dates_in_the_portals_zone(tmp_path: Path) -> None:
    """Times written with a month name and no offset are naive as the other forms are: read in the mapping's
    timezone; with UTC or an offset they are left as written, and a column of dates alone names days."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    created = ['"May 2, 2025 12:00 PM"', "10-Jan-2025 09:30:15", '"Sun, 20 Jul 2025 10:00:00 +0000"']
    closed = ['"May 3, 2025 10:00 UTC"', "", "2025-Jul-20 12:00 GMT"]
    edit_csv_text(tmp_path / "s", "tickets", replace_column(4, closed))  # fields after a quoted comma shift
    edit_csv_text(tmp_path / "s", "tickets", replace_column(3, created))
    edit_csv_text(tmp_path / "s", "deals", replace_column(4, ["15-Jan-2023", "15-Jan-2024", "15-Mar-2023", "1-Feb-2026"]))
    mapping = tmp_path / "mapping.yml"
    mapping.write_text("timezone: Europe/Berlin\n", encoding="utf-8")

    snapshot = load_snapshot(tmp_path / "s", mapping=mapping)

    tickets = snapshot["tickets"]
    assert tickets["created_at"].to_list() == [ts("2025-05-02T10:00:00"), ts("2025-01-10T08:30:15"), ts("2025-07-20T10:00:00")]
    assert tickets.select("closed_at").equals(build_tables()["tickets"].select("closed_at"))
    assert snapshot["deals"]["term_start"].equals(build_tables()["deals"]["term_start"])


@pytest.mark.parametrize("written", ["2025-05-02+02:00", "2025/05/02+02:00", "2025.05.02 +02:00"])
def test_mapping_timezone_leaves_a_date_written_with_its_offset(written: str, tmp_path: Path) -> None:
    """A date alone followed by its offset is a moment already (midnight at +02:00 is 22:00 UTC the day before),
    whichever separator it is written with: the mapping's timezone does not shift it a second time."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    edit_csv_text(tmp_path / "s", "tickets", replace_column(3, [written, "2025-06-10 12:00", "2025-07-20 12:00"]))
    mapping = tmp_path / "mapping.yml"
    mapping.write_text("timezone: Europe/Berlin\n", encoding="utf-8")

    tickets = load_snapshot(tmp_path / "s", mapping=mapping)["tickets"]

    assert tickets["created_at"].to_list() == [ts("2025-05-01T22:00:00"), ts("2025-06-10T10:00:00"), ts("2025-07-20T10:00:00")]


def test_epoch_zero_among_iso_times_is_empty_with_a_warning(tmp_path: Path) -> None:
    """A 0 for a time never set among ISO-8601 texts is empty, as among epoch numbers, not a reason to read the
    column as epoch numbers and refuse its texts."""
    write_tiny_snapshot(tmp_path / "s", fmt="csv")
    edit_csv_text(tmp_path / "s", "tickets", replace_column(4, ["2025-05-03 10:00:00", "0", "0000-00-00"]))

    with pytest.warns(UserWarning, match=r"column closed_at: 2 value\(s\) 0 or 0000-00-00 read as empty.*line=3"):
        tickets = load_snapshot(tmp_path / "s")["tickets"]

    assert tickets["closed_at"].to_list() == [ts("2025-05-03T10:00:00"), None, None]
