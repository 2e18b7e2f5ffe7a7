"""Reading, portal value mapping, type coercion and validation of snapshot tables.

A snapshot table goes through four steps on every load:

1. **read** (`read_table_file`): a parquet file as stored, or a CSV file as a HubSpot export gives it (header row,
   UTF-8 with or without a byte-order mark, UTF-16 after one, or Windows-1252 with a warning when the file is not
   UTF-8 and that reads it clearly; comma-separated or, when the header has no comma, ';'- or tab-separated, or
   as Excel's 'sep=X' first line says; every field read as text; lines of only separators, empty unnamed
   trailing columns and later copies of a header the schema does not use skipped). Unreadable files (zero bytes,
   no header, an encoding that cannot be told, ragged rows, broken parquet) raise `InputError` naming the table
   and the file.
2. **map** (`load_mapping`): an optional YAML file renames the portal's own columns and values to canonical ones,
   and may name the time zone of naive times (`timezone`); headers match canonical columns loosely, and as
   HubSpot's CRM exports name them (`EXPORT_HEADERS`).
3. **coerce** (`coerce_table`): canonical dtypes. Timestamps may be ISO-8601 with `Z`, with an offset, naive
   (= UTC, or the mapping's `timezone`: `_in_time_zone`), a date alone, or `2025-03-01 10:00:00` (or `2:05 PM`),
   year-first with slashes or dots (`2025/03/01`, `2025.03.01`; a zone abbreviation, `PST`, is refused; a trailing
   `UTC`, `GMT` or `Z` is UTC in every form), or as
   spreadsheets write dates, month-first
   `11/23/2025 2:05 PM` or day-first `23.11.2025`, `23-11-2025 14:05` (naive = UTC) when a day above 12 shows the
   column's order (a two-digit year is refused), with an English month name (`Mar 1, 2025 2:05 PM`, `01-Mar-2025`,
   `2025-Mar-01`; one in another language is refused), or epoch numbers in the unit that puts the column between 1990
   and 2100 (`_epoch_timestamps`; spreadsheet serial days, 44931, are refused); booleans true/false, yes/no, y/n,
   on/off, 1/0, ✓/✗; numbers as
   spreadsheets format them (`$1,200.50`, `US$1,200`, `USD 1,200`, `1.200,50 €`, `1 200`, `1'200.50`, `(1,200)`,
   `(USD 1,200)`, `−1,200` or `1,200-` negative, `-` zero; see `_formatted_numbers`); N/A, #N/A, null, None are
   empty in number, date and yes/no columns, and so is a dash in optional id, enum, date and text columns
   (`PLACEHOLDER_WORDS`); the apostrophe exports write before a value starting with - + = @ ('-24000, '=Acme) and
   Excel's text formula ="00123" are not part of the value (`_without_formula_guards`); a time at the Unix epoch
   (0, 1970-01-01 alone, 1970-01-01T00:00:00Z, a parquet datetime or date there: `is_unset_time`, the rule the
   HubSpot pull reads by too) or a zero date 0000-00-00 (also with Z or an offset) stands for a time never set: it
   is empty in an optional time column, with one warning per column, and refused in a required one; ids stay
   text (a column of whole numbers written 101.0, as pandas writes ids among blanks, reads 101, with a warning; an
   id a spreadsheet rounded to scientific notation, 1.23457E+10, is refused). A value that cannot be read raises
   `InputError` showing the raw text and its row. Then a CSV row that repeats another exactly is read once
   (`drop_repeated_rows`), and a contact_id that names no contact (one deleted since the activity) is emptied,
   with a warning (`clear_unknown_contacts`, `warn_unknown_contacts`).
4. **validate** (`validate_snapshot`): pandera schemas built from `hsutils.schema.TABLES` (types, empty values,
   allowed values, ranges, unique keys, dates in order, nothing dated after the snapshot, known company ids) plus
   the manifest's `core_events`. The first problem is raised as one `InputError` line naming the table, the
   column and up to three example rows.

Rows in messages are named where the analyst finds them: `line=` is the line of a CSV file its record starts on
(the header is line 1; blank lines and line breaks inside quoted values count), `row=` a data row of a parquet
file or an in-memory table counted from 1. All checks are vectorised polars expressions: a 10-million-row usage
table validates in seconds (the file is read again record by record only to name the lines of an error).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import re
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from hsutils.errors import InputError, example_rows
from hsutils.files import read_yaml_mapping
from hsutils.schema import TABLES, UTC_DATETIME, Column

if TYPE_CHECKING:
    import pandera.polars as pa

    from hsutils.snapshot import Manifest, Snapshot

# Yes/no values as exports and spreadsheets write them (a check box column exports as ✓/✗ or on/off).
TRUE_WORDS = ("true", "t", "yes", "y", "on", "1", "1.0", "✓", "✔")
FALSE_WORDS = ("false", "f", "no", "n", "off", "0", "0.0", "✗", "✘")
_BOOL_ADVICE = "not a boolean (true/false, yes/no, y/n, on/off, 1/0, ✓/✗)"
# What spreadsheets and exports write for no value (#N/A: Excel's lookup miss); read as empty in number, date and
# yes/no columns, where they cannot be a value. Not '-': Excel's accounting format shows zero as '-'.
NO_VALUE_WORDS = ("n/a", "#n/a", "na", "null", "none", "nan")
# The same words, and a dash, are read as empty in an optional id, enum or text column (contact_id, meeting_kind,
# industry, job_title), where none of them can be a value. A company name keeps its text: it is shown, not grouped by.
PLACEHOLDER_WORDS = (*NO_VALUE_WORDS, "-", "--", "–", "—")

# Tables that must hold at least one row; the others may legitimately be empty (a portal without surveys).
NON_EMPTY_TABLES = ("companies", "deals")  # usage_events may be empty: a portal without a usage export
# Columns whose values may not be negative, and closed ranges.
NON_NEGATIVE = {"companies": ("employees",), "deals": ("arr", "seats"), "usage_events": ("count",)}
VALUE_RANGES = {("tickets", "csat"): (1, 5)}
SURVEY_SCORE_RANGES = {"nps": (0, 10), "csat": (1, 5)}
# Id columns that must refer to a row of another table: (table of the referenced key, key column). A contact_id
# that names no contact is not refused: `clear_unknown_contacts` empties it on load, with a warning.
REFERENCES = {"company_id": ("companies", "company_id")}

MAX_MESSAGE_CHARS = 300
_BOM = codecs.BOM_UTF8
_READ_CHUNK = 1 << 20
# How CSV files are encoded: UTF-8, with or without a byte-order mark; UTF-16 after a byte-order mark (Excel's
# 'Unicode Text'); Windows-1252, in which Excel on Windows saves 'CSV (Comma delimited)' in Western locales, read
# only when the file is not UTF-8 and Windows-1252 reads it clearly (`_UNCLEAR_WINDOWS_1252`).
_UTF8 = "utf-8-sig"
_UTF16 = "utf-16"
WINDOWS_1252 = "cp1252"
# Text that Windows-1252 reads doubtfully: control characters (no text); the characters where the Mac and DOS code
# pages hold letters, and Turkish differs (Mac's 'é' reads 'Ž', DOS's 'ä' reads '„'); three accented letters in a
# row, as Cyrillic, Greek, Hebrew or Arabic in its own code page reads ('ООО' in Windows-1251 reads 'ÎÎÎ'); a
# symbol between letters, as Central European text reads (Polish 'Spółka' in Windows-1250 reads 'Spó³ka'); and
# UTF-8 read as Windows-1252 ('Ã©', 'â€™': a file mixing the two).
_LATIN_LETTER = "A-Za-zÀ-ÖØ-öø-ÿ"
_UNCLEAR_WINDOWS_1252 = (
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|[ŠšŽžŸƒˆ˜‚„†‡‰‹›ÐÝÞðýþ]|[À-ÖØ-öø-ÿŒœ]{3}"
    rf"|(?<=[{_LATIN_LETTER}])[¡-¶¸-¿×÷](?=[{_LATIN_LETTER}])|[Â-ßà-ï][€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ\xa0-¿]"
)
_NON_ASCII_WORD = r'[^\s,;"]*[^\x00-\x7f][^\s,;"]*'  # a word holding a non-ASCII character, for messages
# Separators other than a comma, used when the header has none: Excel in European locales saves CSV with ';',
# some exports are tab-separated under a .csv name.
_OTHER_DELIMITERS = (";", "\t")

# ISO-8601 and its looser spellings; the date year-first with dashes, or with slashes or dots as spreadsheets in East
# Asian and some European locales write it (2025/05/02, 2025.05.02): year-first dates have one reading.
_CLOCK = r"(?P<hm>\d{1,2}:\d{2})(?P<sec>:\d{2})?(?P<frac>[.,]\d+)?"
_OFFSET = r"(?P<offset>Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)"
_TIMESTAMP_PATTERN = (
    r"^(?i)(?P<date>\d{4}-\d{1,2}-\d{1,2}|\d{4}/\d{1,2}/\d{1,2}|\d{4}\.\d{1,2}\.\d{1,2})"
    rf"(?:[T ]{_CLOCK})?\s*{_OFFSET}?$"
)
# A number as a spreadsheet shows it in scientific notation (1.23457E+10, or 1,23457E+10 in locales with a decimal
# comma; 1.23457e10 from other tools): the digits of an id are lost. A short id such as '1e10' is a hex id, not one.
SCIENTIFIC_ID_PATTERN = r"^\d(?:[.,]\d+[eE]\+?|[eE]\+)\d+$"
_SCIENTIFIC_ID_PROBLEM = (
    "in scientific notation: a spreadsheet rounded these ids; format the column as text and export it again"
)
# An id written as a whole number with a '.0' tail (101.0): pandas writes an integer column holding blanks as floats.
# Read as the whole number's digits when every value of the column is written so (`_without_float_tails`).
_FLOAT_ID_PATTERN = r"^\d+\.0+$"
_FLOAT_ID_HEAD = 1_000  # values looked at first: a column of ids is seldom written so
# Numbers as spreadsheets format them: a currency sign or code (USD 24,000, 24000 EUR), thousands grouped by ','
# (or '.') or spaces, a decimal point (or comma); Excel's accounting format shows a negative in parentheses,
# (24,000), and zero as a dash. '\s' also matches the no-break spaces Excel groups thousands with in French and
# other locales. A currency code sits before the number, after its sign or parenthesis (-USD 24,000, (USD 24,000)),
# or after it, before the closing parenthesis ((24,000 USD)).
_CURRENCY_SIGNS = r"(?:[A-Z]{1,2})?\$|[€£¥]"  # also US$, CA$, A$, HK$: dollars named by their country
_UNICODE_MINUS = "\u2212"  # '−', the minus sign of typeset and some localised number formats
_LEADING_CURRENCY_CODE = r"^([(+-]?)\s*[A-Z]{3}"
_TRAILING_CURRENCY_CODE = r"[A-Z]{3}\s*(\)?)$"
_SPACE_AFTER_SIGN = r"^([+-])\s+"
_TRAILING_MINUS = r"^(\d(?:[\d.,\s'’]*\d)?)\s*-$"  # SAP and other ERP exports write a negative as 24,000.00-
_ACCOUNTING_NEGATIVE = r"^\(\s*(.+?)\s*\)$"
_ACCOUNTING_ZERO = "-"
# Thousands grouped by ',', spaces or, as in Switzerland, an apostrophe (24'000.50, or Excel's 24’000.50).
_POINT_GROUPING = r",\s'’"
_POINT_DECIMAL_NUMBER = rf"^[+-]?(?:\d{{1,3}}(?:[{_POINT_GROUPING}]\d{{3}})+|\d+)(?:\.\d+)?$"
_COMMA_DECIMAL_NUMBER = r"^[+-]?(?:\d{1,3}(?:[.\s]\d{3})+|\d+)(?:,\d+)?$"
_NUMBER_ADVICE = "save the column as plain numbers such as 1200.5"
# Headers of HubSpot's own CRM exports (property labels) that name a canonical column without a mapping file, per
# table and column, in order of preference (normal keys: case and spacing aside). Headers whose meaning depends on
# the portal are left to `--mapping`: 'Company owner' (CS or AE owner?), a tier, a contract term, seats, a role.
# A deal's 'Amount' is its ARR, as the pull reads it by default; 'Annual recurring revenue' or the amount in the
# company currency is preferred when the export has it. 'Associated Company IDs' may name several companies ('101;
# 102'): such a row is refused with advice; the '(Primary)' column names one. Contacts of an activity are read from
# the primary one alone.
_ASSOCIATED_COMPANY = ("associated company ids (primary)", "associated company id", "associated company ids")
_ASSOCIATED_CONTACT = ("associated contact ids (primary)", "associated contact id")
EXPORT_HEADERS: dict[str, dict[str, tuple[str, ...]]] = {
    "companies": {
        "company_id": ("record id",),
        "name": ("company name",),
        "created_at": ("create date",),
        "employees": ("number of employees",),
    },
    "contacts": {"contact_id": ("record id",), "company_id": _ASSOCIATED_COMPANY, "created_at": ("create date",)},
    "deals": {
        "deal_id": ("record id",),
        "company_id": _ASSOCIATED_COMPANY,
        "stage": ("deal stage",),
        "arr": ("annual recurring revenue", "amount in company currency", "amount"),
    },
    "engagements": {
        "engagement_id": ("record id",),
        "company_id": _ASSOCIATED_COMPANY,
        "contact_id": _ASSOCIATED_CONTACT,
        "occurred_at": ("activity date",),
    },
    "tickets": {
        "ticket_id": ("record id",),
        "company_id": _ASSOCIATED_COMPANY,
        "contact_id": _ASSOCIATED_CONTACT,
        "created_at": ("create date",),
        "closed_at": ("close date",),
    },
    "surveys": {"response_id": ("record id",), "company_id": _ASSOCIATED_COMPANY, "contact_id": _ASSOCIATED_CONTACT},
}
# A unit at the end of a header, 'ARR (USD)', 'Close Date [UTC]': a currency for amounts, UTC for timestamps.
_HEADER_UNIT_PATTERN = r"(?P<name>.*?\S)\s*[(\[]\s*(?P<unit>[^()\[\]]+?)\s*[)\]]"
_CURRENCY_UNIT_PATTERN = r"[A-Z]{3}|[$€£¥]"
_UTC_UNITS = ("UTC", "GMT", "Z", "utc")
# Dates with an English month name or its abbreviation, any case, with or without a dot (Mar 1, 2025; March 1st,
# 2025 2:05 PM; 1 Mar 2025; 01-Mar-2025 14:05; 2025-Mar-01; Sat, 01 Mar 2025 14:05:00 +0000), as spreadsheets,
# CRMs and mail headers write them for people: the name says which part is the month, so each has one reading
# (`_month_name_dates`). Names in other languages (1. März 2025, 1 mars 2025) are refused, saying to export ISO-8601.
_ENGLISH_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_ENGLISH_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DAY_SUFFIX = r"(?:st|nd|rd|th)?"
_MONTH_NAME_DATE_PATTERN = (
    r"^(?i)(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+)?(?:"
    rf"(?P<month_first>{_ENGLISH_MONTH})\.?\s+(?P<day_second>\d{{1,2}}){_DAY_SUFFIX},?\s+(?P<year_third>\d{{4}})"
    rf"|(?P<day_first>\d{{1,2}}){_DAY_SUFFIX}(?:\s+|[-/])(?P<month_second>{_ENGLISH_MONTH})\.?(?:\s+|[-/])"
    r"(?P<year_last>\d{4})"
    rf"|(?P<year_first>\d{{4}})(?:\s+|[-/])(?P<month_middle>{_ENGLISH_MONTH})\.?(?:\s+|[-/])(?P<day_last>\d{{1,2}})"
    rf")(?:(?:,\s*|\s+)(?:at\s+)?{_CLOCK}(?:\s*(?P<half>[AP]M)|\s*{_OFFSET})?)?$"
)
_ENGLISH_MONTH_WORD = rf"(?i)\b{_ENGLISH_MONTH}\b"
# A date whose month is a word (no English one: `_ENGLISH_MONTH_WORD`), a name in another language (1. März 2025,
# 1 de marzo de 2025, 1 mars 2025, 2025. március 1.).
_OTHER_MONTH_NAME_PATTERN = (
    r"^(?:\d{1,2}\p{L}{0,2}\.?(?:\s+|[-/.])(?:de\s+)?\p{L}{3,}\.?(?:\s+|[-/.])(?:de\s+)?\d{2,4}"
    r"|\p{L}{3,}\.?\s+\d{1,2}\.?,?\s+\d{4}|\d{4}\.?(?:\s+|[-/])\p{L}{3,}\.?(?:\s+|[-/])\d{1,2}\.?)(?:[\s,]|$)"
)
# Dates as spreadsheets write them: month-first (11/23/2025 14:05, US) or day-first (23.11.2025, 23/11/2025,
# 23-11-2025), with a 24- or 12-hour time (11/23/2025 2:05 PM). Its first two parts are read to tell the column's
# order (see `_spreadsheet_dates`). A two-digit year (11/23/25, 1-Mar-25: 1925 or 2025?) is refused, never guessed.
_SPREADSHEET_DATE_PATTERN = r"^(?P<first>\d{1,2})[/.\-](?P<second>\d{1,2})[/.\-]\d{4}(?:\s|$)"
_TWO_DIGIT_YEAR_PATTERN = (
    rf"(?i)^(?:\d{{1,2}}[/.\-]\d{{1,2}}[/.\-]|\d{{1,2}}(?:\s+|[-/]){_ENGLISH_MONTH}\.?(?:\s+|[-/])"
    rf"|{_ENGLISH_MONTH}\.?\s+\d{{1,2}},?\s+)\d{{2}}(?:\s|$)"
)
_TWELVE_HOUR_PATTERN = r"(?i)\d\s*[AP]M$"  # a time with AM/PM, as Excel's US locale writes it
_YEAR_FIRST_TWELVE_HOUR_PATTERN = r"(?i)^\d{4}[-/.]\d{1,2}[-/.]\d{1,2} \d{1,2}:\d{2}(?::\d{2})?\s*[AP]M$"
_YEAR_FIRST_SEPARATORS = "-/."
_TIME_FORMATS = ("", " %H:%M", " %H:%M:%S")  # after a date: none, or 24-hour
_TWELVE_HOUR_FORMATS = (" %I:%M %p", " %I:%M:%S %p")
# A time in UTC named so after a spreadsheet date or a 12-hour time (11/23/2025 14:05 UTC, 2025-11-23 2:05 PM GMT):
# those forms are read naive = UTC, so the word is set aside (`_parse_timestamp_text`).
_UTC_SUFFIX_PATTERN = r"(?i)(\d|[AP]M)\s*(?:UTC|GMT|Z)$"
_ISO_ADVICE = "use ISO-8601 such as 2025-03-01T10:00:00Z"
_TIMESTAMP_ADVICE = f"not a timestamp ({_ISO_ADVICE})"
_OTHER_MONTH_NAME_ADVICE = (
    "with a month name that is not English (English names and abbreviations such as Mar or March are read); "
    "export the dates as ISO-8601 such as 2025-03-01T10:00:00Z"
)
# A time followed by a zone's abbreviation or name (09:00 PST, 09:00 CET, 09:00 Europe/Berlin): an abbreviation names
# no single offset (CST is US Central or China Standard Time, IST India, Israel or Ireland), so it is refused.
_ZONE_NAME_PATTERN = r"\d:\d{2}(?::\d{2})?(?:[.,]\d+)?(?:\s*[AaPp][Mm])?\s*([A-Za-z]{2,5}|[A-Za-z]+/[A-Za-z_/+-]+)$"
_ZONE_NAME_ADVICE = (
    "with a time zone name, which may mean several offsets (CST: US Central or China); "
    "write the offset instead (2025-03-01T09:00:00-08:00) or the time in UTC (2025-03-01T17:00:00Z)"
)
# Times written with their offset or in UTC (Z, UTC, GMT, +02:00), which a mapping's `timezone` leaves as they are;
# the others, naive, are read in that zone (`_in_time_zone`).
_WRITTEN_WITH_OFFSET_PATTERN = (
    r"(?i)(?:[\dT\s](?:Z|UTC|GMT)|\d:\d{2}(?::\d{2})?(?:[.,]\d+)?\s*[+-]\d{2}(?::?\d{2})?"
    r"|^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\s*[+-]\d{2}(?::?\d{2})?)$"
)
_WRITTEN_AS_DATE_PATTERN = rf"^\d{{1,4}}[-/.]\d{{1,2}}[-/.]\d{{1,4}}|{_ENGLISH_MONTH_WORD}"  # not an epoch number
_DAY_US = 86_400_000_000
_FAST_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"  # what write_snapshot writes; tried first
_NORMALISED_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%z"
_NORMALISED_TWELVE_HOUR_FORMAT = "%Y-%m-%dT%I:%M:%S%.f %p%z"
# Epoch times as product-analytics exports and warehouse dumps write them (1672876800, 1672876800000): a column's
# unit is the one of these that puts every value between 1990 and 2100. The four ranges lie apart, so at most one
# fits; a column that fits none is refused, never guessed.
_EPOCH_UNITS = (
    ("seconds", 1), ("milliseconds", 1_000), ("microseconds", 1_000_000), ("nanoseconds", 1_000_000_000)
)
_EPOCH_RANGE = (631_152_000, 4_102_444_800)  # 1990-01-01 and 2100-01-01, in seconds since 1970
_EPOCH_HEAD = 1_000  # values looked at first to tell a column of epoch numbers
# Spreadsheet serial day numbers (44931 is 2023-01-05 counted from 1900, or 2027-01-06 counted from 1904, as Excel
# for Mac did): days from about 1982 to 2100. Which system a file uses is not in it, so they are refused.
_SERIAL_DAY_RANGE = (30_000, 73_051)
_DATE_NUMBER_RANGE = (19_000_101, 21_001_231)  # a date written as the number YYYYMMDD (a warehouse date key)
_EPOCH_ADVICE = "write every value one way: epoch numbers in one unit, or ISO-8601 text (2025-03-01T10:00:00Z)"
# What systems write for a time never set: the Unix epoch, 1970-01-01 00:00 UTC (0 as an epoch time, the date
# 1970-01-01 alone, or a stored datetime at the epoch: `UNSET_EPOCH`), and MySQL's zero date 0000-00-00
# (0000-00-00 00:00:00). Empty in an optional time column (one warning per column), refused in a required one.
_ZERO_DATE_PATTERN = r"(?i)^0000-00-00(?:[T ]00:00(?::00(?:\.0+)?)?)?(?:\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?))?$"
UNSET_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNSET_ZEROS = "0 or 0000-00-00, a time never set"  # what `_unset_zeros_apart` says of the zeros it took out
_UNSET_MEANINGS = {
    "0": "0 as an epoch time is 1970-01-01",
    "0000-00-00": "0000-00-00 is MySQL's zero date",
    "1970-01-01": "1970-01-01 00:00 UTC is epoch time 0",
}


# Exports and spreadsheets that guard against formula injection write an apostrophe before a value starting with
# - + = or @ ('-24000, '+15, '=Acme): the apostrophe is not part of the value. Exports meant for Excel wrap a value
# in a text formula to keep its leading zeros and digits (="00123"). Both are read as the value (`_without_formula_guards`).
_FORMULA_GUARD_PATTERN = r"^'([-+=@])"
_TEXT_FORMULA_PATTERN = r'^="([^"]*)"$'


# ------------------------------------------------------------------------------------------------ messages


def _format_value(value: Any, quote: bool) -> str:
    if isinstance(value, datetime):
        text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value.tzinfo else value.isoformat()
    elif value is None:
        text = "null"
    else:
        text = str(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return repr(text) if quote and isinstance(value, str) else text


def problem(
    table: str,
    column: str | None,
    what: str,
    examples: pl.DataFrame | None = None,
    quote: bool = False,
    suffix: str = "",
    file: str | None = None,
) -> InputError:
    """One-line InputError: `table T, column C: what, e.g. {row=.., ..}; ...` kept under ~300 characters.

    `examples` is a frame of offending rows (its first column should be `row` or `line`); values are shown compactly
    and, with `quote`, text values in quotes so the raw text (spaces included) is visible. `file` names the file the
    rows are in: `e.g. in deals.csv: {line=.., ..}`.
    """
    head = f"table {table}" + (f", column {column}" if column else "") + f": {what}"
    if examples is None or examples.height == 0:
        return InputError(head + suffix)
    intro = f"e.g. in {file}:" if file else "e.g."
    message = head + suffix
    for limit in (3, 2, 1):
        rows = examples.head(limit).to_dicts()
        shown = pl.DataFrame([{k: _format_value(v, quote) for k, v in row.items()} for row in rows])
        message = f"{head}, {intro} {example_rows(shown, limit)}{suffix}"
        if len(message) <= MAX_MESSAGE_CHARS:
            break
    return InputError(message)


def _with_rows(
    frame: pl.DataFrame, mask: pl.Series | pl.Expr, columns: list[str], rows: FileRows | None = None
) -> pl.DataFrame:
    """The offending rows, at most three, restricted to `columns`, after where they are: with `rows` (a table read
    from CSV), `line`, the line of the file each starts on; else `row`, the data row counted from 1."""
    keep = [c for c in dict.fromkeys(columns) if c in frame.columns]
    return at_file_lines(frame.with_row_index("row", offset=1).filter(mask).select(["row", *keep]).head(3), rows)


def at_file_lines(examples: pl.DataFrame, rows: FileRows | None) -> pl.DataFrame:
    """`examples` with its `row` column (data rows counted from 1) replaced by `line`, the line of the CSV file each
    row starts on, when `rows` tells where the table's rows are (else as it is)."""
    if rows is None or examples.height == 0 or "row" not in examples.columns:
        return examples
    lines = rows.lines(examples["row"].cast(pl.Int64) - 1)
    if lines is None:
        return examples
    return examples.with_columns(lines.alias("row")).rename({"row": "line"})


def _file_name(rows: FileRows | None) -> str | None:
    """The name of the CSV file a table was read from, if any."""
    return None if rows is None else rows.path.name


# ------------------------------------------------------------------------------------------------ mapping


def _normal_key(value: Any) -> str:
    """Case- and whitespace-insensitive key: 'Closed  Won ' -> 'closed won'."""
    if isinstance(value, bool):
        value = str(value).lower()
    return " ".join(str(value).split()).casefold()


def _normal_key_expr(expr: pl.Expr) -> pl.Expr:
    return expr.str.strip_chars().str.replace_all(r"\s+", " ").str.to_lowercase()


@dataclass(frozen=True)
class PortalMapping:
    """A portal's own column names and values, mapped to canonical ones (keys are case/space-insensitive).

    `values[table][column][portal_value] = canonical_value` (None maps a value to empty);
    `columns[table][portal_column] = canonical_column`; `timezone`, an IANA zone name, is the zone of times written
    without an offset (None: UTC).
    """

    values: dict[str, dict[str, dict[str, str | None]]] = field(default_factory=dict)
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    timezone: str | None = None

    def for_table(self, table: str) -> tuple[dict[str, dict[str, str | None]], dict[str, str]]:
        return self.values.get(table, {}), self.columns.get(table, {})


def _canonical_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_mapping(path: str | Path) -> PortalMapping:
    """Load a mapping file (YAML) with `values: {table: {column: {portal_value: canonical_value}}}` and,
    optionally, `columns: {table: {portal_column: canonical_column}}` and `timezone: Europe/Berlin` (the IANA time
    zone of times written without an offset, as HubSpot's exports write them in the portal's zone; default UTC).
    """
    path = Path(path)
    raw = read_yaml_mapping(path, "mapping file")
    if set(raw) - {"values", "columns", "timezone"}:
        raise InputError(f"mapping file {path}: expected top-level keys 'values', 'columns' and/or 'timezone'")

    values: dict[str, dict[str, dict[str, str | None]]] = {}
    for table, columns in _mapping_section(path, raw, "values").items():
        values[table] = {}
        for column, pairs in columns.items():
            if column not in TABLES[table].column_names:
                raise InputError(f"mapping file {path}: table {table} has no column {column!r}")
            if not isinstance(pairs, dict):
                raise InputError(
                    f"mapping file {path}: values.{table}.{column} must map portal values to canonical ones"
                )
            values[table][column] = {_normal_key(k): _canonical_text(v) for k, v in pairs.items()}

    renames: dict[str, dict[str, str]] = {}
    for table, pairs in _mapping_section(path, raw, "columns").items():
        for target in pairs.values():
            if target not in TABLES[table].column_names:
                raise InputError(
                    f"mapping file {path}: columns.{table}: {target!r} is not a column of {table}"
                )
        renames[table] = {_normal_key(k): str(v) for k, v in pairs.items()}
    return PortalMapping(values=values, columns=renames, timezone=_time_zone(path, raw.get("timezone")))


def _time_zone(path: Path, name: Any) -> str | None:
    """The mapping's `timezone`: UTC or an IANA Area/Location name polars knows (None when not given); else
    InputError. Legacy abbreviations (EST, CET) are refused: EST has no daylight saving, New York has."""
    if name is None:
        return None
    text = name.strip() if isinstance(name, str) else ""
    if text.upper() == "UTC":
        return "UTC"
    if "/" in text:
        with contextlib.suppress(pl.exceptions.PolarsError):
            return pl.Series([datetime(2025, 1, 1)]).dt.replace_time_zone(text).dtype.time_zone  # type: ignore[attr-defined]
    raise InputError(
        f"mapping file {path}: timezone {name!r} is not an IANA time zone name such as Europe/Berlin or "
        "America/New_York (the zone the portal's exports write times in)"
    )


def _mapping_section(path: Path, raw: dict, key: str) -> dict[str, dict]:
    section = raw.get(key) or {}
    if not isinstance(section, dict):
        raise InputError(f"mapping file {path}: '{key}' must be a mapping of table names")
    for table, content in section.items():
        if table not in TABLES:
            raise InputError(
                f"mapping file {path}: unknown table {table!r} under '{key}' (tables: {', '.join(TABLES)})"
            )
        if not isinstance(content, dict):
            raise InputError(f"mapping file {path}: '{key}.{table}' must be a mapping")
    return section


# ------------------------------------------------------------------------------------------------ reading


def read_table_file(path: Path, table: str) -> pl.DataFrame:
    """Read one table file as it is on disk: parquet with its stored types, CSV with every column as text."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"table {table}: {path.name} is a folder, expected a file")
    if path.stat().st_size == 0:
        raise InputError(f"table {table}: {path.name} is empty (zero bytes)")
    if path.suffix == ".parquet":
        return _read_parquet(path, table)
    return _read_csv(path, table)


def _read_parquet(path: Path, table: str) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:80]
        raise InputError(f"table {table}: {path.name} is not a readable parquet file ({reason})") from None


@dataclass(frozen=True)
class _CsvLayout:
    """How a CSV file is laid out: its column names, delimiter, and the lines before its data (the header,
    and Excel's 'sep=X' line when present), and how its first lines are encoded. Unnamed columns at the end of the
    header (a separator ending every line) get placeholder names in `unnamed`, to be dropped when empty
    (`_drop_unnamed_columns`); the later copies of a header name the schema does not use get placeholder names in
    `repeated`, to be dropped."""

    header: list[str]
    delimiter: str
    skip_rows: int
    unnamed: list[str]
    encoding: str = _UTF8
    repeated: dict[str, str] = field(default_factory=dict)  # placeholder name -> the header name it repeats


@dataclass(frozen=True)
class FileRows:
    """Where the rows of a table read from a CSV file are in the file, for messages. The rows are the file's records
    after the header that hold a value (lines of only separators or spaces are no rows); `kept`, when rows were
    dropped after reading (a repeated row), holds the positions the remaining rows had among them."""

    path: Path
    delimiter: str
    skip_rows: int  # records before the data: the header, and Excel's 'sep=X' line when present
    kept: pl.Series | None = None
    encoding: str = _UTF8  # of its first lines: a file whose later lines are not UTF-8 was read as Windows-1252

    def lines(self, positions: pl.Series) -> pl.Series | None:
        """The file line (from 1, the header included) each row at 0-based `positions` starts on, or None when the
        file does not read back as before. The file is read up to the last of them."""
        read = positions if self.kept is None else self.kept.gather(positions)
        encodings = (self.encoding, WINDOWS_1252) if self.encoding == _UTF8 else (self.encoding,)
        for encoding in encodings:
            try:
                found = _record_lines(replace(self, encoding=encoding), set(read.to_list()))
            except UnicodeDecodeError:
                continue
            if found is None:
                return None
            return pl.Series("line", [found[p] for p in read.to_list()], dtype=pl.Int64)
        return None

    def keeping(self, kept: pl.Series) -> FileRows:
        """These file rows after the table kept only the rows at 0-based positions `kept`."""
        return replace(self, kept=kept if self.kept is None else self.kept.gather(kept))


def _record_lines(rows: FileRows, wanted: set[int]) -> dict[int, int] | None:
    """{position: file line} for the data records of `rows` at 0-based positions `wanted`, or None when the file
    has fewer of them (or does not read as CSV)."""
    found: dict[int, int] = {}
    try:
        for position, line in enumerate(_data_record_lines(rows)):
            if position in wanted:
                found[position] = line
                if len(found) == len(wanted):
                    break
    except (csv.Error, OSError):
        return None
    return found if len(found) == len(wanted) else None


def _data_records(rows: FileRows) -> Iterator[tuple[int, list[str]]]:
    """The records of a CSV file after its header that hold a value, each with the file line it starts on (read with
    Python's csv module, record by record: for messages only)."""
    with rows.path.open(encoding=rows.encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=rows.delimiter)
        for _ in range(rows.skip_rows):
            next(reader, None)
        start = reader.line_num + 1
        for record in reader:
            if any(field.strip() for field in record):
                yield start, record
            start = reader.line_num + 1


def _data_record_lines(rows: FileRows) -> Iterator[int]:
    """The file line each record after the header that holds a value starts on. Without quotes, a record is a line:
    the lines are read as they are, several times faster than records."""
    if _has_quotes(rows.path):
        yield from (line for line, _ in _data_records(rows))
        return
    with rows.path.open(encoding=rows.encoding, newline="") as handle:
        for line, text in enumerate(handle, start=1):
            if line > rows.skip_rows and text.replace(rows.delimiter, "").strip():
                yield line


def file_rows(path: Path, table: str) -> FileRows:
    """Where the rows of `table`, read from the CSV file `path`, are in that file (see `FileRows`)."""
    layout = _csv_layout(Path(path), table)
    return FileRows(Path(path), layout.delimiter, layout.skip_rows, encoding=layout.encoding)


def _csv_layout(path: Path, table: str) -> _CsvLayout:
    """Read the header line: the column names, the delimiter (Excel's 'sep=X' first line names it; otherwise a
    comma, or ';' or a tab when the header has no comma) and the encoding of the file's first megabyte (UTF-16 after
    its byte-order mark, else UTF-8, else Windows-1252: `_read_csv` checks that the whole file reads so)."""
    with path.open("rb") as handle:
        head = handle.read(_READ_CHUNK)
    encoding = _UTF16 if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else _UTF8
    if encoding == _UTF8 and _looks_like_utf16(head):
        raise InputError(f"table {table}: {path.name} is UTF-16 text without a byte-order mark; re-export it as UTF-8 CSV")
    try:  # an incremental decoder leaves a character the chunk cuts in two for later
        text = codecs.getincrementaldecoder(encoding)().decode(head)
    except UnicodeDecodeError:
        if encoding == _UTF16:
            raise InputError(f"table {table}: {path.name} is not readable UTF-16 text; re-export it as UTF-8 CSV") from None
        encoding, text = WINDOWS_1252, head.decode(WINDOWS_1252, errors="replace")
    lines = re.split(r"\r\n|\r|\n", text, maxsplit=2)  # lines may end in \n, \r\n or a bare \r
    text = lines[0]
    excel_hint = re.fullmatch(r"sep=(.)", text)
    if excel_hint and len(lines) > 1:
        text = lines[1]
    if not text.strip():
        raise InputError(f"table {table}: {path.name} has no header row (the first line is empty)")
    if excel_hint:
        delimiter = excel_hint.group(1)
    else:
        delimiter = next((d for d in _OTHER_DELIMITERS if "," not in text and d in text), ",")
    header = [name.strip() for name in next(csv.reader([text], delimiter=delimiter))]
    named = len(header)
    while named > 1 and not header[named - 1]:
        named -= 1
    if any(not name for name in header[:named]):
        raise InputError(f"table {table}: {path.name} has an empty column name in its header")
    duplicated = sorted({name for name in header if header.count(name) > 1 and name})
    used = [name for name in duplicated if _canonical_column(name, table)]
    if used:
        raise InputError(f"table {table}: {path.name} names column {used[0]!r} twice in its header")
    names = header[:named]
    repeated = {}
    for number, name in enumerate(header[:named], start=1):
        if name in duplicated and header.index(name) < number - 1:
            names[number - 1] = f"(column {number}: {name!r} again)"
            repeated[names[number - 1]] = name
    unnamed = [f"(unnamed column {n})" for n in range(named + 1, len(header) + 1)]
    return _CsvLayout(names + unnamed, delimiter, 2 if excel_hint else 1, unnamed, encoding, repeated)


def _drop_unnamed_columns(frame: pl.DataFrame, layout: _CsvLayout, rows: FileRows, table: str) -> pl.DataFrame:
    """`frame` without the unnamed trailing columns, which must be empty in every row (else InputError)."""
    for name in layout.unnamed:
        holding = frame[name].str.strip_chars().ne("").fill_null(False)
        if holding.any():
            number = layout.header.index(name) + 1
            after = layout.header[len(layout.header) - len(layout.unnamed) - 1]
            examples = _with_rows(frame.with_columns(frame[name].alias("value")), holding, ["value"], rows)
            what = (
                f"{rows.path.name}: column {number} (after {after!r}) has no name in the header but holds values"
            )
            suffix = "; name it in the header, or delete the column"
            raise problem(table, None, what, examples, quote=True, suffix=suffix)
    return frame.drop(layout.unnamed)


def _skip_blank_row(delimiter: str) -> Callable[[Any], str]:
    """An invalid-row handler for pyarrow: a line of only separators, spaces and quotes (Excel writes them
    for empty rows, or as a last line) holds no data and is skipped; another row of the wrong length is an
    error."""
    blank = re.compile(f"[\\s\"{re.escape(delimiter)}]*")
    return lambda row: "skip" if blank.fullmatch(row.text or "") else "error"


def _drop_blank_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` without rows whose every field is empty (a line of only separators). Such a row has an empty
    first field, so only a table whose first column has empty values is searched."""
    if frame.width == 0 or frame[frame.columns[0]].null_count() == 0:
        return frame
    empty = pl.all_horizontal(
        pl.col(name).is_null() | (pl.col(name).str.strip_chars() == "" if dtype == pl.String else False)
        for name, dtype in frame.schema.items()
    )
    return frame.filter(~empty)


def _looks_like_utf16(head: bytes) -> bool:
    """UTF-16 text without a byte-order mark: Latin text in UTF-16 has a NUL byte beside nearly every letter, while
    UTF-8 text has none; more than a quarter of NUL bytes in the first 4 KiB tells it."""
    sample = head[:4096]
    return sample.count(0) * 4 > len(sample)


def _read_csv(path: Path, table: str) -> pl.DataFrame:
    layout = _csv_layout(path, table)
    arrow_table = None if layout.encoding == WINDOWS_1252 else _read_arrow_csv(path, table, layout)
    if arrow_table is None:  # not UTF-8, in its first lines or later
        layout = replace(layout, encoding=WINDOWS_1252)
        example = _windows_1252_example(path, table)
        arrow_table = _read_arrow_csv(path, table, layout)
        warnings.warn(
            f"table {table}: {path.name} is not UTF-8 text; read as Windows-1252, as Excel on Windows saves CSV "
            f"(e.g. {example!r}); if that reads wrong, save the file as 'CSV UTF-8'",
            UserWarning, stacklevel=3,
        )
    frame = pl.from_arrow(_arrow_timestamps(arrow_table, table))
    assert isinstance(frame, pl.DataFrame)
    rows = FileRows(path, layout.delimiter, layout.skip_rows, encoding=layout.encoding)
    frame = _drop_unnamed_columns(_drop_blank_rows(frame), layout, rows, table)
    if layout.repeated:
        names = list(dict.fromkeys(layout.repeated.values()))
        others = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        warnings.warn(
            f"table {table}: {path.name} names column {names[0]!r}{others} more than once in its header; the schema "
            "does not use it, and only its first copy is read",
            UserWarning, stacklevel=3,
        )
        frame = frame.drop(list(layout.repeated))
    return frame


def _read_arrow_csv(path: Path, table: str, layout: _CsvLayout) -> Any | None:
    """The file as an Arrow table of text columns, read in `layout.encoding`; None when that is UTF-8 and the file
    is not (InputError when it cannot be read otherwise)."""
    import pyarrow as pa_arrow
    import pyarrow.csv as pa_csv

    read_options = pa_csv.ReadOptions(
        column_names=layout.header,
        skip_rows=layout.skip_rows,
        encoding="utf8" if layout.encoding == _UTF8 else layout.encoding,  # UTF-8 is read as it is, not transcoded
    )
    # A line break can only sit inside a quoted value; without quotes the faster parallel chunking is safe.
    parse_options = pa_csv.ParseOptions(
        delimiter=layout.delimiter,
        newlines_in_values=_has_quotes(path),
        invalid_row_handler=_skip_blank_row(layout.delimiter),
    )
    convert_options = pa_csv.ConvertOptions(
        column_types={name: pa_arrow.string() for name in layout.header},
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        null_values=[""],
    )
    try:
        return pa_csv.read_csv(
            path, read_options=read_options, parse_options=parse_options, convert_options=convert_options
        )
    except UnicodeDecodeError:  # while transcoding UTF-16 (a file read as Windows-1252 was checked before)
        name = "UTF-16" if layout.encoding == _UTF16 else "Windows-1252"
        raise InputError(f"table {table}: {path.name} is not readable {name} text; re-export it as UTF-8 CSV") from None
    except pa_arrow.ArrowInvalid as exc:
        reason = str(exc)
        if ("utf8" in reason.lower() or "utf-8" in reason.lower()) and layout.encoding == _UTF8:
            return None
        if "Expected" in reason and "columns" in reason:
            raise _ragged_error(path, table, layout) from None
        raise InputError(
            f"table {table}: {path.name} is not a readable CSV file ({reason.splitlines()[0][:100]})"
        ) from None


def _windows_1252_example(path: Path, table: str) -> str:
    """A word of a file that is not UTF-8 holding a character beyond ASCII, as Windows-1252 reads it (empty when
    none), when Windows-1252 reads every byte and nothing doubtful (`_UNCLEAR_WINDOWS_1252`); else InputError: the
    file's encoding cannot be told. The file is read in chunks; a doubt is looked for across their ends too."""
    example, line, tail = "", 1, ""
    with path.open("rb") as handle:
        while chunk := handle.read(4 * _READ_CHUNK):
            try:
                text = tail + chunk.decode(WINDOWS_1252)
            except UnicodeDecodeError as exc:
                raise _encoding_error(path, table, f" nor Windows-1252 (byte 0x{chunk[exc.start]:02x} has no character)") from None
            doubt = re.search(_UNCLEAR_WINDOWS_1252, text)
            if doubt:
                start, end = text.rfind("\n", 0, doubt.start()) + 1, text.find("\n", doubt.end())
                where = line - tail.count("\n") + text.count("\n", 0, doubt.start())
                shown = text[start : end if end >= 0 else None][:60]
                raise _encoding_error(path, table, f" nor clearly Windows-1252 (which reads {shown!r} on file line {where})")
            if not example and (word := re.search(_NON_ASCII_WORD, text)):
                example = word.group()[:40]
            line += text.count("\n") - tail.count("\n")
            tail = text[-2:]
    return example


def _arrow_timestamps(arrow_table: Any, table: str) -> Any:
    """Parse the table's time columns with Arrow's vectorised ISO-8601 parser where every value allows it.

    A column with offsets/`Z` becomes UTC, a column of naive values stays naive (read as UTC later); a column
    mixing both, or holding anything else, stays text for the slower, row-reporting parser of `coerce_table`.
    """
    import pyarrow as pa_arrow
    import pyarrow.compute as pa_compute

    wanted = {c.name for c in TABLES[table].columns if c.kind == "datetime"}
    for index, name in enumerate(arrow_table.column_names):
        if name not in wanted:
            continue
        for target in (pa_arrow.timestamp("us", tz="UTC"), pa_arrow.timestamp("us")):
            try:
                parsed = pa_compute.cast(arrow_table.column(index), target)
            except (pa_arrow.ArrowInvalid, pa_arrow.ArrowNotImplementedError):
                continue
            arrow_table = arrow_table.set_column(index, name, parsed)
            break
    return arrow_table


def _has_quotes(path: Path) -> bool:
    with path.open("rb") as handle:
        while chunk := handle.read(4 * _READ_CHUNK):
            if b'"' in chunk:
                return True
    return False


def _encoding_error(path: Path, table: str, also: str = "") -> InputError:
    """Locate the first byte that is not UTF-8 (reading in chunks) and describe it; `also` tells which other
    encoding does not read it either."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as handle:
        first = True
        while chunk := handle.read(_READ_CHUNK):
            if first and chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
            first = False
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                # The decoder may hold back up to three bytes of the previous chunk; count from this chunk.
                start = max(exc.start - len(exc.object) + len(chunk), 0)
                line += chunk.count(b"\n", 0, start)
                line_start = chunk.rfind(b"\n", 0, start) + 1
                line_end = chunk.find(b"\n", start)
                text = chunk[line_start : line_end if line_end >= 0 else None].decode("utf-8", "replace")
                byte = chunk[start] if start < len(chunk) else chunk[-1]
                where = "in the header" if line == 1 else f"on file line {line}"
                return InputError(
                    f"table {table}: {path.name} is not UTF-8 text (byte 0x{byte:02x} {where}: {text[:60]!r}){also}; "
                    "re-export it as UTF-8"
                )
            line += chunk.count(b"\n")
    return InputError(f"table {table}: {path.name} is not UTF-8 text{also}; re-export it as UTF-8")


def _ragged_error(path: Path, table: str, layout: _CsvLayout) -> InputError:
    """Re-read the file record by record to name the rows whose field count differs from the header's (lines of only
    separators skipped), by the file line each starts on."""
    header = layout.header
    found: list[dict[str, Any]] = []
    with contextlib.suppress(csv.Error, UnicodeDecodeError):
        for line, fields in _data_records(FileRows(path, layout.delimiter, layout.skip_rows, encoding=layout.encoding)):
            if len(fields) != len(header):
                found.append({"line": line, "fields": len(fields), "text": layout.delimiter.join(fields)})
                if len(found) == 3:
                    break
    what = f"ragged rows in {path.name}: the header has {len(header)} fields but"
    if not found:
        return InputError(f"table {table}: {what} some rows do not")
    examples = pl.DataFrame(found)
    return problem(table, None, what + " these rows differ", examples, quote=True)


# ------------------------------------------------------------------------------------------------ coercion


def _as_text(series: pl.Series) -> pl.Series:
    """Any column as text, with integral floats written without '.0' and empty text as null."""
    if series.dtype.is_float():
        series = series.fill_nan(None)
        finite = series.is_finite().fill_null(True)
        integral = (series == series.floor()).fill_null(True) & finite
        if bool(integral.all()):
            series = series.cast(pl.Int64)
    text = series.cast(pl.String)
    if series.dtype in (pl.String, pl.Categorical) or isinstance(series.dtype, pl.Enum):
        text = _empty_as_null(text)
    return text


def _empty_as_null(series: pl.Series) -> pl.Series:
    """Empty text values as nulls (the column is rewritten only when some value is empty)."""
    empty = series == ""
    if not empty.any():
        return series
    return pl.select(pl.when(empty).then(None).otherwise(series)).to_series().alias(series.name)


def _parse_timestamps(text: pl.Series) -> tuple[pl.Series, pl.Series | None, str]:
    """Timestamps from text (see the module's docstring), or from epoch numbers (`_epoch_timestamps`) when the
    column holds numbers; the mask of values that cannot be read (None when all can) and what is wrong with them."""
    if not _holds_numbers(text.head(_EPOCH_HEAD)):
        values, bad, what = _parse_timestamp_text(text)
        if bad is None or not _holds_numbers(_text_where(text, bad)):
            return values, bad, what
    return _epoch_timestamps(text)


def is_unset_time(moment: datetime | None) -> bool:
    """Whether `moment` (an aware datetime) is the Unix epoch, 1970-01-01 00:00 UTC: what integrations write for a
    time never set (0 as an epoch time, or the date 1970-01-01), never a real date of a customer record."""
    return moment is not None and moment == UNSET_EPOCH


def epoch_placeholders(times: pl.Series) -> pl.Series | None:
    """The mask of the values of a UTC datetime column at the Unix epoch (`is_unset_time`), or None when it holds
    none: a column dated after 1970, as real data is, is told so by its minimum, without work per row."""
    earliest = times.min()
    if earliest is None or earliest > UNSET_EPOCH:
        return None
    at_epoch = (times == UNSET_EPOCH).fill_null(False)
    return at_epoch if at_epoch.any() else None


def unset_times_text(count: int, kinds: Sequence[str]) -> str:
    """What a warning says of `count` values of a time column read as empty because they stand for a time never
    set; `kinds`: how they were written, among '0', '0000-00-00' and '1970-01-01' (`_UNSET_MEANINGS`)."""
    meaning = "; ".join(_UNSET_MEANINGS[kind] for kind in kinds)
    return f"{count:,} value(s) {' or '.join(kinds)} read as empty ({meaning}: a placeholder for unset)"


def _unset_zeros_apart(
    parse: Callable[[pl.Series], tuple[pl.Series, pl.Series | None, str]], series: pl.Series
) -> tuple[pl.Series, pl.Series | None, str]:
    """`parse(series)`, a time column's values, with the zeros it cannot read told apart: systems write 0 for a time
    never set (1970-01-01 as an epoch time), or 0000-00-00 (MySQL's zero date). When every other value reads,
    returns the values (empty where zero), the mask of the zeros and `_UNSET_ZEROS`; the zeros are looked for only
    when some value cannot be read."""
    values, bad, what = parse(series)
    if bad is None or not bad.any():
        return values, bad, what
    # looked for in the whole column, not only among the values it could not read: a 0 among ISO-8601 texts makes
    # the column read as epoch numbers, and its texts are then the values refused
    epoch_zero = (series.cast(pl.Float64, strict=False) == 0).fill_null(False)
    zero_date = (
        series.str.contains(_ZERO_DATE_PATTERN).fill_null(False)
        if series.dtype == pl.String
        else pl.repeat(False, series.len(), eager=True)
    )
    zero = epoch_zero | zero_date
    if not zero.any():
        return values, bad, what
    values, bad, what = parse(_text_where(series, ~zero))
    if bad is not None and bad.any():
        return values, bad, what
    return values, zero, _UNSET_ZEROS


def _holds_numbers(text: pl.Series) -> bool:
    """Whether some value of `text` is a finite number."""
    return bool(text.cast(pl.Float64, strict=False).is_finite().any())


def _epoch_timestamps(series: pl.Series) -> tuple[pl.Series, pl.Series | None, str]:
    """Timestamps from epoch numbers, as text or as a number column, in the one unit of `_EPOCH_UNITS` that puts
    every value between 1990 and 2100; the mask of values that cannot be read and what is wrong with them (a column
    mixing numbers and text, or units, or holding spreadsheet serial days or numbers that are no epoch time)."""
    unread = pl.repeat(None, series.len(), dtype=UTC_DATETIME, eager=True).alias(series.name)
    present = series.is_not_null()
    whole = series.cast(pl.Int64, strict=False) if series.dtype == pl.String or series.dtype.is_integer() else None
    if whole is not None and whole.null_count() == series.null_count():
        numbers = whole.cast(pl.Float64)
    else:
        whole = None
        numbers = series.cast(pl.Float64, strict=False).fill_nan(None)
        numbers = pl.select(pl.when(numbers.is_finite()).then(numbers)).to_series()
    text = present & numbers.is_null()
    count = numbers.len() - numbers.null_count()
    if text.any():  # a column written two ways: the rows of the rarer way are shown
        if count < text.sum():
            what = f"written as a number while the rest of the column is text ({series.filter(text)[0]!r})"
            return unread, present & ~text, f"{what}: {_EPOCH_ADVICE}"
        what = f"not a number while the rest of the column holds epoch times ({series.filter(~text)[0]!r})"
        return unread, text, f"{what}: {_EPOCH_ADVICE}"
    if whole is None and series.dtype == pl.String:
        scientific = series.str.contains("[eE]").fill_null(False)
        if scientific.any():
            what = "in scientific notation: a spreadsheet rounded these times"
            return unread, scientific, f"{what}; format the column as a number without decimals and export it again"
    low, high = _EPOCH_RANGE
    fits = [numbers.is_between(low * per_second, high * per_second, closed="left") for _, per_second in _EPOCH_UNITS]
    fitting = [int(f.sum()) for f in fits]
    best = fitting.index(max(fitting))
    unit, per_second = _EPOCH_UNITS[best]
    if fitting[best] == count:
        if whole is None:
            micros = (numbers * (1_000_000 / per_second)).round().cast(pl.Int64)
        elif per_second <= 1_000_000:
            micros = whole * (1_000_000 // per_second)
        else:
            micros = whole // (per_second // 1_000_000)
        return pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC").alias(series.name), None, ""
    if fitting[best] * 2 > count:
        what = f"not epoch {unit} (1990 to 2100) as the rest of the column is ({series.filter(fits[best])[0]!r})"
        return unread, present & ~fits[best], f"{what}: {_EPOCH_ADVICE}"
    if bool(numbers.is_between(*_SERIAL_DAY_RANGE).all()):
        return unread, present, (
            "that look like spreadsheet serial day numbers (from 1900 or 1904? the file does not say): format the "
            "column as dates in the spreadsheet before exporting"
        )
    if whole is not None and bool(whole.is_between(*_DATE_NUMBER_RANGE).all()):
        return unread, present, "that look like dates written as YYYYMMDD numbers: write them as ISO-8601 (2025-03-01)"
    what = "numbers that are no epoch time from 1990 to 2100 in one unit (seconds, milliseconds, microseconds or nanoseconds)"
    return unread, present & ~fits[best], f"{what}: {_EPOCH_ADVICE}"


def _parse_timestamp_text(text: pl.Series) -> tuple[pl.Series, pl.Series | None, str]:
    """Timestamps from text written as dates (see the module's docstring); the mask of values that cannot be read
    (None when all can) and what is wrong with them."""
    fast = text.str.to_datetime(_FAST_TIMESTAMP_FORMAT, strict=False, time_zone="UTC", time_unit="us")
    if fast.null_count() == text.null_count():
        return fast, None, ""
    parts = text.str.extract_groups(_TIMESTAMP_PATTERN).struct.unnest()
    normalised = _normalised_timestamps(parts["date"].str.replace_all(r"[/.]", "-"), parts)
    values = normalised.str.to_datetime(
        _NORMALISED_TIMESTAMP_FORMAT, strict=False, time_zone="UTC", time_unit="us"
    )
    if values.null_count() == text.null_count():
        return values, None, ""
    unread = _text_where(text, values.is_null())
    in_utc = unread.str.contains(_UTC_SUFFIX_PATTERN).fill_null(False)
    if in_utc.any():  # the forms below are read naive = UTC: '11/23/2025 14:05 UTC' as '11/23/2025 14:05'
        text = _text_where(text, in_utc).str.replace(_UTC_SUFFIX_PATTERN, "$1").fill_null(text)
        unread = _text_where(text, values.is_null())
    year_first_twelve_hour = unread.str.contains(_YEAR_FIRST_TWELVE_HOUR_PATTERN).fill_null(False)
    formats = [f"%Y{s}%m{s}%d{t}" for s in _YEAR_FIRST_SEPARATORS for t in _TWELVE_HOUR_FORMATS]
    values = _fill_timestamps(values, text, year_first_twelve_hour, formats)
    if values.null_count() == text.null_count():
        return values, None, ""
    values = _month_name_dates(text, values)
    if values.null_count() == text.null_count():
        return values, None, ""
    values, bad, what = _spreadsheet_dates(text, values)
    unread = _text_where(text, bad)
    two_digit_year = unread.str.contains(_TWO_DIGIT_YEAR_PATTERN).fill_null(False)
    if two_digit_year.any():
        return values, two_digit_year, f"with a two-digit year; export four-digit years or {_ISO_ADVICE}"
    zone = unread.str.extract(_ZONE_NAME_PATTERN, 1).str.to_uppercase()
    zone_named = (zone.is_not_null() & ~zone.is_in(["AM", "PM", "UTC", "GMT"])).fill_null(False)
    if zone_named.any():
        return values, zone_named, _ZONE_NAME_ADVICE
    other_month_name = (
        unread.str.contains(_OTHER_MONTH_NAME_PATTERN) & ~unread.str.contains(_ENGLISH_MONTH_WORD)
    ).fill_null(False)
    if other_month_name.any():
        return values, other_month_name, _OTHER_MONTH_NAME_ADVICE
    return values, bad, what


def _normalised_timestamps(date: pl.Series, parts: pl.DataFrame, half: pl.Series | None = None) -> pl.Series:
    """ISO-8601 text (2025-03-01T14:05:00.5+01:00) from dates written YYYY-MM-DD and the `_CLOCK` and `_OFFSET`
    parts a timestamp pattern extracted: no time is midnight, no seconds :00, no offset (or Z, UTC, GMT) UTC. With
    `half`, a 12-hour time's AM or PM follows the seconds (`_NORMALISED_TWELVE_HOUR_FORMAT`)."""
    offset = parts["offset"].str.to_uppercase()
    offset = pl.select(
        pl.when(offset.is_null() | offset.is_in(["Z", "UTC", "GMT"]))
        .then(pl.lit("+00:00"))
        .when(offset.str.len_chars() == 3)
        .then(offset + ":00")
        .otherwise(offset)
    ).to_series()
    return (
        date
        + "T"
        + parts["hm"].fill_null("00:00").str.zfill(5)
        + parts["sec"].fill_null(":00")
        + parts["frac"].fill_null("").str.replace(",", ".")
        + ("" if half is None else (" " + half).fill_null(""))
        + offset
    )


def _month_name_dates(text: pl.Series, values: pl.Series) -> pl.Series:
    """`values` completed with the dates of `text` written with an English month name (`_MONTH_NAME_DATE_PATTERN`),
    naive = UTC, a 12-hour time (2:05 PM) read as such; only the rows still empty are looked at."""
    unread = _text_where(text, values.is_null())
    parts = unread.str.extract_groups(_MONTH_NAME_DATE_PATTERN).struct.unnest()
    month = pl.select(pl.coalesce(parts["month_first"], parts["month_second"], parts["month_middle"])).to_series()
    if month.null_count() == month.len():
        return values
    day = pl.select(pl.coalesce(parts["day_second"], parts["day_first"], parts["day_last"])).to_series()
    year = pl.select(pl.coalesce(parts["year_third"], parts["year_last"], parts["year_first"])).to_series()
    month_number = month.str.to_lowercase().str.slice(0, 3).replace_strict(
        _ENGLISH_MONTHS, [f"{n:02d}" for n in range(1, 13)], default=None
    )
    date = year + "-" + month_number + "-" + day.str.zfill(2)
    half = parts["half"].str.to_uppercase()
    normalised = _normalised_timestamps(date, parts, half)
    twelve_hour = half.is_not_null()
    values = _fill_timestamps(values, normalised, month.is_not_null() & ~twelve_hour, [_NORMALISED_TIMESTAMP_FORMAT])
    return _fill_timestamps(values, normalised, twelve_hour, [_NORMALISED_TWELVE_HOUR_FORMAT])


def _text_where(text: pl.Series, mask: pl.Series) -> pl.Series:
    """`text` where `mask` is true, null elsewhere (so that string functions skip the other rows)."""
    return pl.select(pl.when(mask).then(text)).to_series()


def _fill_timestamps(
    values: pl.Series, text: pl.Series, pending: pl.Series, formats: Sequence[str]
) -> pl.Series:
    """`values` with its empty `pending` rows read from `text` by the first of `formats` that fits (naive = UTC);
    only those rows are parsed."""
    for timestamp_format in formats:
        todo = pending & values.is_null()
        if not todo.any():
            break
        read = _text_where(text, todo).str.to_datetime(
            timestamp_format, strict=False, time_zone="UTC", time_unit="us"
        )
        values = values.fill_null(read)
    return values


def _spreadsheet_dates(text: pl.Series, values: pl.Series) -> tuple[pl.Series, pl.Series, str]:
    """`values` completed with dates as spreadsheets write them, month-first (11/23/2025 2:05 PM) or day-first
    (23.11.2025, 23-11-2025 14:05), naive = UTC; the mask of values still empty and what is wrong with them.

    The column shows its order: a first part above 12 is a day (day-first), a second part above 12 is a day
    (month-first). A column showing both orders, or neither (every such value like 11/12/2025), is not
    read."""
    unread = _text_where(text, values.is_null())
    parts = unread.str.extract_groups(_SPREADSHEET_DATE_PATTERN).struct.unnest()
    first, second = parts["first"].cast(pl.Int32), parts["second"].cast(pl.Int32)
    day_first = ((first > 12) & (second <= 12)).fill_null(False)
    month_first = ((second > 12) & (first <= 12)).fill_null(False)
    bad = text.is_not_null() & values.is_null()
    if day_first.any() and month_first.any():
        day, month = text.filter(day_first)[0], text.filter(month_first)[0]
        return values, bad, f"mixing day-first ({day!r}) and month-first ({month!r}) dates; {_ISO_ADVICE}"
    if not day_first.any() and not month_first.any():
        if first.null_count() == first.len():  # no value is written as a spreadsheet date
            return values, bad, _TIMESTAMP_ADVICE
        what = f"with no day above 12 to tell whether the day or the month comes first; {_ISO_ADVICE}"
        return values, bad, what
    date_format = "%m{0}%d{0}%Y" if month_first.any() else "%d{0}%m{0}%Y"
    twelve_hour = unread.str.contains(_TWELVE_HOUR_PATTERN).fill_null(False)
    for separator in "/.-":
        if values.null_count() == text.null_count():
            break
        written = first.is_not_null() & unread.str.contains(separator, literal=True).fill_null(False)
        for clock, time_formats in ((~twelve_hour, _TIME_FORMATS), (twelve_hour, _TWELVE_HOUR_FORMATS)):
            formats = [date_format.format(separator) + time_format for time_format in time_formats]
            values = _fill_timestamps(values, text, written & clock, formats)
    return values, text.is_not_null() & values.is_null(), _TIMESTAMP_ADVICE


def _formatted_numbers(text: pl.Series, whole: bool) -> tuple[pl.Series, pl.Series, str]:
    """Read numbers as a spreadsheet formats them (`$1,200.50`, `USD 1,200.50`, `1.200,50 €`, `1 200`; in
    accounting format `(1,200)` is -1200 and `-` is 0; `1,200-`, as ERP exports write it, is -1200); return (Float64 values, mask of values that cannot be
    read, what is wrong with them).

    A value has a decimal-point reading and a decimal-comma reading (either may not exist). The column's own style
    decides between them: a value only one reading fits ('1,200.50', '1200,50') shows it; when no value shows it, a
    value the two readings disagree on ('1,200': 1200 or 1.2) is refused, as is a column showing both styles. With
    `whole`, only whole readings count ('1,200' of an integer column is 1200).
    """
    bare = (
        text.str.replace_all(_UNICODE_MINUS, "-", literal=True)
        .str.replace_all(_CURRENCY_SIGNS, "")
        .str.strip_chars()
        .str.replace(_LEADING_CURRENCY_CODE, "$1")
        .str.replace(_TRAILING_CURRENCY_CODE, "$1")
        .str.strip_chars()
        .str.replace(_TRAILING_MINUS, "-$1")
        .str.replace(_SPACE_AFTER_SIGN, "$1")
    )
    bare = pl.select(
        pl.when(bare == _ACCOUNTING_ZERO).then(pl.lit("0")).otherwise(bare.str.replace(_ACCOUNTING_NEGATIVE, "-$1"))
    ).to_series()
    point = (
        pl.when(bare.str.contains(_POINT_DECIMAL_NUMBER))
        .then(bare.str.replace_all(rf"[{_POINT_GROUPING}]", ""))
        .otherwise(bare)  # also '1e3', '.5'
        .cast(pl.Float64, strict=False)
    )
    comma = (
        pl.when(bare.str.contains(_COMMA_DECIMAL_NUMBER))
        .then(bare.str.replace_all(r"[.\s]", "").str.replace(",", "."))
        .cast(pl.Float64, strict=False)
    )
    if whole:
        point, comma = (pl.when(r == r.floor()).then(r) for r in (point, comma))
    readings = pl.select(point=point, comma=comma, mark=bare.str.contains(r"[.,]"))
    point_only = readings["point"].is_not_null() & readings["comma"].is_null() & readings["mark"]
    comma_only = readings["comma"].is_not_null() & readings["point"].is_null()
    if point_only.any() and comma_only.any():  # the rarer style is shown, with an example of the other
        rare, common = ("comma", "point") if comma_only.sum() <= point_only.sum() else ("point", "comma")
        usual = text.filter(point_only if common == "point" else comma_only)[0]
        return (
            readings["point"],
            comma_only if rare == "comma" else point_only,
            f"with a decimal {rare} while other rows have a decimal {common} ({usual!r}; {_NUMBER_ADVICE})",
        )
    first, second = ("comma", "point") if comma_only.any() else ("point", "comma")
    values = readings.select(pl.coalesce(first, second)).to_series()
    if not point_only.any() and not comma_only.any():
        disagree = (readings["point"] != readings["comma"]).fill_null(False)
        if disagree.any():
            return values, disagree, f"with a thousands separator or a decimal comma? ({_NUMBER_ADVICE})"
    what = "not a whole number" if whole else "not a number"
    return values, text.is_not_null() & values.is_null(), what


def _convert(
    series: pl.Series, column: Column, spreadsheet_ids: bool = True
) -> tuple[pl.Series, pl.Series | None, str]:
    """Cast one column to its canonical dtype; return (values, mask of unreadable values or None, what is wrong).

    With `spreadsheet_ids` (text exports: CSV), ids a spreadsheet rounded to scientific notation are unreadable;
    typed files (parquet) are trusted as written and spared the search."""
    kind, dtype = column.kind, series.dtype
    if column.dictionary:  # text kept as dictionary codes: read as they are when the file stores them so
        codes = _empty_as_null(series) if dtype == pl.Categorical else _as_text(series).cast(pl.Categorical)
        if kind == "id" and spreadsheet_ids:  # among the distinct values: arg_unique hashes the codes, not the text
            distinct = codes.gather(codes.arg_unique()).cast(pl.String)
            if distinct.str.contains(SCIENTIFIC_ID_PATTERN).any():
                return codes, codes.cast(pl.String).str.contains(SCIENTIFIC_ID_PATTERN), _SCIENTIFIC_ID_PROBLEM
        return codes, None, ""
    if kind in ("id", "str", "enum"):
        text = _as_text(series)
        if kind == "id":
            return text, text.str.contains(SCIENTIFIC_ID_PATTERN) if spreadsheet_ids else None, _SCIENTIFIC_ID_PROBLEM
        if kind == "enum" and column.values:  # spelled per distinct value: an enum column holds few of them
            spelled = text.unique().drop_nulls()
            canonical = spelled.str.to_lowercase().str.replace_all(r"[\s\-]+", "_")
            respelled = (canonical != spelled) & canonical.is_in(pl.Series(column.values).implode())
            if respelled.any():
                text = text.replace(spelled.filter(respelled), canonical.filter(respelled))
        return text, None, ""
    if kind == "datetime":
        if isinstance(dtype, pl.Datetime):
            values = (
                series.dt.replace_time_zone("UTC")
                if dtype.time_zone is None
                else series.dt.convert_time_zone("UTC")
            )
            return values.cast(pl.Datetime("us", "UTC")), None, ""
        if dtype == pl.Date:
            return series.cast(pl.Datetime("us")).dt.replace_time_zone("UTC"), None, ""
        if dtype.is_numeric():  # epoch numbers, as a warehouse dump may store them
            return _unset_zeros_apart(_epoch_timestamps, series)
        return _unset_zeros_apart(_parse_timestamps, _as_text(series))
    if kind == "int":
        if dtype.is_integer():
            return series.cast(pl.Int64), None, ""
        exact: pl.Series | None = None
        if dtype.is_float():
            numbers, present = series, series.is_not_null() & ~series.is_nan()
        else:
            text = _as_text(series)
            exact = text.cast(pl.Int64, strict=False)
            if exact.null_count() == text.null_count():
                return exact, None, ""
            numbers, present = text.cast(pl.Float64, strict=False), text.is_not_null()
        whole = (numbers.is_finite() & (numbers == numbers.floor())).fill_null(False)
        from_float = pl.when(whole).then(numbers).otherwise(None).cast(pl.Int64, strict=False)
        values = pl.select(from_float if exact is None else pl.coalesce(exact, from_float)).to_series()
        bad = present & values.is_null()
        if exact is not None and bad.any():  # text: perhaps numbers as a spreadsheet formats them
            numbers, bad, what = _formatted_numbers(text, whole=True)
            values = pl.select(pl.coalesce(exact, numbers.cast(pl.Int64, strict=False))).to_series()
            return values.alias(series.name), bad, what
        return values.alias(series.name), bad, "not a whole number"
    if kind == "float":
        if dtype.is_numeric():
            values = series.cast(pl.Float64).fill_nan(None)
            infinite = values.is_infinite().fill_null(False)
            return values, infinite if infinite.any() else None, "infinite value(s)"
        text = _as_text(series)
        values = text.cast(pl.Float64, strict=False)
        bad = text.is_not_null() & values.is_null()
        what = "not a number"
        if bad.any():  # perhaps numbers as a spreadsheet formats them
            values, bad, what = _formatted_numbers(text, whole=False)
        infinite = values.is_infinite().fill_null(False)
        if infinite.any() and not bad.any():  # 'inf' reads as a number, but no ARR or score is infinite
            bad, what = infinite, "infinite value(s)"
        return values.alias(series.name).fill_nan(None), bad, what
    if kind == "bool":
        if dtype == pl.Boolean:
            return series, None, ""
        text = _as_text(series).str.to_lowercase()
        values = (
            pl.select(
                pl.when(text.is_in(TRUE_WORDS))
                .then(True)
                .when(text.is_in(FALSE_WORDS))
                .then(False)
                .otherwise(None)
            )
            .to_series()
            .alias(series.name)
        )
        return values, text.is_not_null() & values.is_null(), _BOOL_ADVICE
    raise ValueError(f"unknown column kind {kind!r}")


def _without_no_value_words(series: pl.Series, words: Collection[str] = NO_VALUE_WORDS) -> pl.Series:
    """`series` with the words spreadsheets write for no value (N/A, #N/A, null, ...; `words`) as nulls; the same
    series when it holds none."""
    text = series.cast(pl.String)
    short = text.str.len_bytes() <= max(len(word.encode()) for word in words)  # cheap: most values are longer
    if not (short.any() and text.filter(short).str.to_lowercase().is_in(list(words)).any()):
        return series  # lowercasing a whole column of ids costs ~60 ms per million rows; these few are checked
    no_value = text.str.to_lowercase().is_in(list(words))
    return pl.select(pl.when(no_value).then(None).otherwise(series)).to_series().alias(series.name)


def _without_formula_guards(text: pl.Series) -> pl.Series:
    """`text` without the apostrophe an export writes before a value starting with - + = or @ to keep spreadsheets
    from reading it as a formula ('-24000 -> -24000, '=Acme -> =Acme; O'Brien and 'Tis stay), and without the text
    formula Excel-minded exports wrap values in (="00123" -> 00123); the same series when no value is written so."""
    if text.str.starts_with("'").any():
        text = text.str.replace(_FORMULA_GUARD_PATTERN, "$1")
    if text.str.starts_with('="').any():
        text = text.str.replace(_TEXT_FORMULA_PATTERN, "$1")
    return text


def _without_float_tails(ids: pl.Series, table: str, rows: FileRows | None) -> pl.Series:
    """Text ids without the '.0' tail of whole numbers (101.0 -> 101), with one warning, when every value of the
    column is written so (pandas writes an integer id column holding blanks as floats); else `ids` as they are. The
    first values are looked at first: the column is searched only when they are all written so."""
    head = ids.head(_FLOAT_ID_HEAD).drop_nulls()
    if head.is_empty():
        head = ids.drop_nulls()
    if head.is_empty() or not head.str.contains(_FLOAT_ID_PATTERN).all():
        return ids
    if not ids.str.contains(_FLOAT_ID_PATTERN).fill_null(True).all():
        return ids
    example = head[0]
    warnings.warn(
        f"table {table}, column {ids.name}: {_file_name(rows) or 'the table'} writes every id as a whole number with "
        f"a '.0' tail ({example!r}), as pandas writes an id column holding blanks; read without it ({example.split('.')[0]!r})",
        UserWarning, stacklevel=3,
    )
    return ids.str.replace(r"\.0+$", "")


def _placeholders_are_empty(column: Column) -> bool:
    """Whether N/A, null, '-' and the like mean no value in `column`: an optional id, enum or date column
    (contact_id, cs_owner_id, meeting_kind, close_date, closed_at), or an optional text column (industry,
    job_title). Not in a company name, shown as written, nor in a required column, where an empty value is
    refused."""
    if not column.nullable:
        return False
    return column.kind in ("id", "enum", "datetime") or (column.kind == "str" and not column.required)


def _apply_value_map(series: pl.Series, pairs: Mapping[str, str | None]) -> pl.Series:
    """Replace portal values by canonical ones, matching case- and whitespace-insensitively."""
    keys = {_normal_key(k): v for k, v in pairs.items()}
    text = series.cast(pl.String)
    normal = _normal_key_expr(pl.lit(text))
    mapped = normal.replace_strict(list(keys), list(keys.values()), default=None, return_dtype=pl.String)
    return (
        pl.select(pl.when(normal.is_in(list(keys))).then(mapped).otherwise(pl.lit(text)))
        .to_series()
        .alias(series.name)
    )


def _canonical_name(name: str) -> str:
    """'Deal ID' / 'deal-id' / 'DEAL_ID' -> 'deal_id'."""
    return "_".join(name.replace("-", " ").split()).lower()


def _without_unit(name: str, table: str) -> str:
    """A header without the unit it ends with, when the unit fits the canonical column it then names: a currency for
    a number column ('ARR (USD)', 'ARR [€]' -> 'ARR'), UTC for a timestamp column ('Created At (UTC)'). Another unit,
    one that scales the values ('ARR (k)') or another time zone ('Created At (CET)'), is kept: the header then names
    no canonical column, and a required one is reported missing."""
    match = re.fullmatch(_HEADER_UNIT_PATTERN, name.strip())
    if match is None:
        return name
    base, unit = match["name"], match["unit"]
    spec = TABLES[table]
    if _canonical_name(base) not in spec.column_names:
        return name
    kind = spec.column(_canonical_name(base)).kind
    if kind == "float" and re.fullmatch(_CURRENCY_UNIT_PATTERN, unit) or kind == "datetime" and unit in _UTC_UNITS:
        return base
    return name


def _canonical_column(name: str, table: str) -> tuple[str, int] | None:
    """The canonical column of `table` a header names, and how closely (lower is closer): 0 by its own name, 1
    loosely (case, spaces and hyphens aside, and a unit that fits: 'Deal ID', 'ARR (USD)'), 2 and up as a HubSpot
    export names it (`EXPORT_HEADERS`, in order of preference); None for a header the schema does not use."""
    spec = TABLES[table]
    if name in spec.column_names:
        return name, 0
    loose = _canonical_name(_without_unit(name, table))
    if loose in spec.column_names:
        return loose, 1
    key = _normal_key(name)
    for column, headers in EXPORT_HEADERS.get(table, {}).items():
        if key in headers:
            return column, 2 + headers.index(key)
    return None


def _rename_columns(
    frame: pl.DataFrame, table: str, column_map: Mapping[str, str], source: str
) -> pl.DataFrame:
    """Apply the mapping's column renames, then match headers to canonical names (`_canonical_column`): of several
    headers naming one column, the closest is read (the others are kept as extra columns); two as close are
    refused."""
    keys = {_normal_key(k): v for k, v in column_map.items()}
    targets = {c: keys.get(_normal_key(c), c) for c in frame.columns}
    closest: dict[str, tuple[int, list[str]]] = {}  # canonical column -> (closeness, headers that close)
    for header, target in targets.items():
        found = _canonical_column(target, table)
        if found is None:
            continue
        column, rank = found
        best, headers = closest.get(column, (rank, []))
        if rank < best:
            closest[column] = (rank, [header])
        elif rank == best:
            closest[column] = (rank, [*headers, header])
    renames = {**targets, **{headers[0]: column for column, (_, headers) in closest.items()}}
    names = list(renames.values())
    clash = sorted({n for n in names if names.count(n) > 1} | {c for c, (_, h) in closest.items() if len(h) > 1})
    if clash:
        raise InputError(f"table {table}, column {clash[0]}: {source} has two columns that map to {clash[0]}")
    return frame.rename({c: t for c, t in renames.items() if c != t})


def _naive_times(raw: pl.Series) -> pl.Series | None:
    """The rows of a time column written without an offset (None when none can be): every value of a naive
    datetime column; the text values written as dates or times without Z, UTC or an offset. Epoch numbers are
    UTC, and a date column names days."""
    if isinstance(raw.dtype, pl.Datetime):
        return raw.is_not_null() if raw.dtype.time_zone is None else None
    if raw.dtype != pl.String:
        return None
    written_as_date = raw.str.contains(_WRITTEN_AS_DATE_PATTERN).fill_null(False)
    return written_as_date & ~raw.str.contains(_WRITTEN_WITH_OFFSET_PATTERN).fill_null(False)


def _in_time_zone(
    values: pl.Series, naive: pl.Series | None, zone: str
) -> tuple[pl.Series, pl.Series | None, str]:
    """`values` (UTC) with its `naive` rows, read as UTC so far, read as wall-clock times in `zone` instead; the mask
    of times that do not exist there (skipped when clocks go forward) and what is wrong with them. A time the
    zone has twice (when clocks go back) is read as the earlier one. A column whose naive values are all at
    midnight holds dates, which name days and are left as they are."""
    if naive is None or not naive.any():
        return values, None, ""
    wall = values.filter(naive)
    if bool((wall.dt.epoch("us") % _DAY_US == 0).all()):
        return values, None, ""
    local = (
        values.dt.replace_time_zone(None)
        .dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
    )
    skipped = naive & local.is_null() & values.is_not_null()
    if skipped.any():
        return values, skipped, (
            f"that are no time in {zone} (its clocks skip them when daylight saving starts); "
            "write them with their offset or in UTC"
        )
    return pl.select(pl.when(naive).then(local).otherwise(values)).to_series().alias(values.name), None, ""


def _utc_header_columns(columns: Sequence[str], table: str) -> set[str]:
    """The canonical columns of `table` whose header names UTC as its unit ('Close Date (UTC)')."""
    named = set()
    for header in columns:
        unit = re.fullmatch(_HEADER_UNIT_PATTERN, header.strip())
        if unit and unit["unit"] in _UTC_UNITS and (found := _canonical_column(header, table)):
            named.add(found[0])
    return named


def _unset_times_apart(
    table: str, column: Column, raw: pl.Series, values: pl.Series, bad: pl.Series | None, what: str,
    frame: pl.DataFrame, rows: FileRows | None,
) -> tuple[pl.Series, pl.Series | None, str]:
    """A time column's values with the placeholders for a time never set read as empty: the zeros `_convert` took
    out (`bad` when `what` is `_UNSET_ZEROS`) and the values at the Unix epoch (`epoch_placeholders`), however
    written. One warning counts them, with examples, in an optional column; a required one refuses them (the
    returned mask and what is wrong). Other unreadable values are returned as they are."""
    zeros = bad if what == _UNSET_ZEROS else None
    if bad is not None and zeros is None and bool(bad.any()):
        return values, bad, what
    at_epoch = epoch_placeholders(values)
    if zeros is None and at_epoch is None:
        return values, bad, what
    unset = zeros if at_epoch is None else at_epoch if zeros is None else zeros | at_epoch
    kinds = []
    if zeros is not None:
        written = raw.filter(zeros)
        if bool((written.cast(pl.Float64, strict=False) == 0).any()):
            kinds.append("0")
        if written.dtype == pl.String and bool(written.str.contains(_ZERO_DATE_PATTERN).any()):
            kinds.append("0000-00-00")
    if at_epoch is not None:
        kinds.append("1970-01-01")
    meaning = "; ".join(_UNSET_MEANINGS[kind] for kind in kinds)
    if not column.nullable:
        return values, unset, (
            f"{' or '.join(kinds)}, a placeholder for unset ({meaning}); this column needs a time in every row"
        )
    examples = _with_rows(frame.with_columns(raw), unset, [column.name], rows)
    text = unset_times_text(int(unset.sum()), kinds)
    warnings.warn(str(problem(table, column.name, text, examples, quote=True, file=_file_name(rows))), UserWarning,
                  stacklevel=3)
    if at_epoch is not None:
        values = pl.select(pl.when(at_epoch).then(None).otherwise(values)).to_series().alias(values.name)
    return values, None, ""


def coerce_table(
    frame: pl.DataFrame,
    table: str,
    value_map: Mapping[str, Mapping[str, str | None]] | None = None,
    column_map: Mapping[str, str] | None = None,
    source: str | None = None,
    strip_text: bool = True,
    rows: FileRows | None = None,
    time_zone: str | None = None,
) -> pl.DataFrame:
    """Cast a raw table to canonical dtypes, rename and map portal columns and values, add absent optional columns.

    Canonical columns come first in schema order; extra columns are kept after them as read. `strip_text` trims
    spaces around text values of canonical columns and refuses ids a spreadsheet rounded to scientific notation
    (CSV exports; typed parquet files are trusted as written). Raises InputError naming the table, the column and
    example rows (by their line in the CSV file, with `rows`) when a required column is missing or a value is
    unreadable. Times written without an offset are read in `time_zone` (an IANA name; None: UTC), except in a
    column whose header names UTC ('Close Date (UTC)') or that holds dates alone (`_in_time_zone`).
    """
    spec = TABLES[table]
    source = source or f"the {table} table"
    local_zone = None if time_zone in (None, "UTC") else time_zone
    in_utc = _utc_header_columns(frame.columns, table) if local_zone else set()
    frame = _rename_columns(frame, table, column_map or {}, source)
    missing = [c.name for c in spec.columns if c.required and c.name not in frame.columns]
    if missing:
        found = ", ".join(frame.columns)
        found = found if len(found) <= 120 else found[:117] + "..."
        hint = (
            "; is the file comma-separated?"
            if frame.width == 1 and any(s in frame.columns[0] for s in ";\t|")
            else ""
        )
        with_unit = [
            c for c in frame.columns
            if (unit := re.fullmatch(_HEADER_UNIT_PATTERN, c.strip())) and _canonical_name(unit["name"]) == missing[0]
        ]
        if with_unit:
            hint = (
                f"; {with_unit[0]!r} has a unit that is not read (amounts may name a currency, timestamps UTC): "
                f"convert its values and name it {missing[0]}"
            )
        raise InputError(
            f"table {table}, column {missing[0]}: required column missing from {source} (columns found: {found}){hint}"
        )
    value_map = value_map or {}
    columns: list[pl.Series] = []
    for column in spec.columns:
        if column.name not in frame.columns:
            columns.append(pl.Series(column.name, [column.default] * frame.height, dtype=column.dtype))
            continue
        raw = frame[column.name]
        if strip_text and raw.dtype == pl.String:
            raw = raw.str.strip_chars()
            if column.kind in ("id", "str", "enum"):  # other kinds only when a value cannot be read (below)
                raw = _without_formula_guards(raw)
        if column.name in value_map:
            raw = _apply_value_map(raw, value_map[column.name])
        if _placeholders_are_empty(column) and raw.dtype == pl.String:
            raw = _without_no_value_words(raw, PLACEHOLDER_WORDS)  # no id, allowed value, date or industry is 'N/A'
        if strip_text and column.kind == "id" and raw.dtype == pl.String:
            raw = _without_float_tails(raw, table, rows)
        written = raw  # as a message shows it ('-90k, not -90k)
        values, bad, what = _convert(raw, column, spreadsheet_ids=strip_text)
        if bad is not None and bool(bad.any()) and column.kind in ("int", "float", "bool", "datetime"):
            guarded = _without_formula_guards(raw) if strip_text and raw.dtype == pl.String else raw
            words = PLACEHOLDER_WORDS if _placeholders_are_empty(column) else NO_VALUE_WORDS  # '- of a date: '-'
            read = _without_no_value_words(guarded, words)
            if read is not raw:
                raw = read
                values, bad, what = _convert(raw, column, spreadsheet_ids=strip_text)
        if column.kind == "datetime":
            values, bad, what = _unset_times_apart(table, column, raw, values, bad, what, frame, rows)
        if local_zone and column.kind == "datetime" and column.name not in in_utc and (bad is None or not bad.any()):
            values, bad, what = _in_time_zone(values, _naive_times(raw), local_zone)
        if bad is not None and bool(bad.any()):
            count = int(bad.sum())
            examples = _with_rows(frame.with_columns(written), bad, [column.name], rows)
            raise problem(
                table, column.name, f"{count:,} value(s) {what}", examples, quote=True, file=_file_name(rows)
            )
        if column.default is not None:
            values = values.fill_null(column.default)
        columns.append(values.alias(column.name))
    extra = [frame[c] for c in frame.columns if c not in spec.column_names]
    return pl.DataFrame(columns + extra)


# ------------------------------------------------------------------------------------------------ schemas


@dataclass(frozen=True)
class _CheckInfo:
    """A row-wise check: what a failure means, the row predicate (True = fine) and columns worth showing."""

    what: str
    predicate: Callable[[], pl.Expr]
    show: tuple[str, ...] = ()


CORE_EVENT_HEAD = 1 << 20  # usage rows looked at first for the manifest's core events
_UNIQUE_KEY = "field_uniqueness"  # the primary key check (pandera's own name for it)
_CHECKS: dict[tuple[str, str, str], _CheckInfo] = {}  # (table, column, check error text) -> the check


def _row_check(
    table: str, column: str, error: str, predicate: Callable[[], pl.Expr], show: tuple[str, ...] = ()
) -> pa.Check:
    """A pandera check from a row-wise polars predicate (True = fine); null results count as fine.

    pandera keeps only a few failure cases (counting and examples are done from the predicate when a check
    fails), so a check failing on millions of rows is still reported quickly.
    """
    import pandera.polars as pa

    _CHECKS[(table, column, error)] = _CheckInfo(error, predicate, show)
    return pa.Check(
        lambda data: data.lazyframe.select(predicate().fill_null(True)), error=error, n_failure_cases=3
    )


def _distinct_rows(data: Any) -> pl.LazyFrame:
    """Per row of the checked column: True unless its value occurs twice (a null counts as a value, as in pandera's
    own uniqueness check). Distinct 64-bit hashes prove distinct values; only when two hashes collide are the
    values compared row by row."""
    values = data.lazyframe.select(data.key).collect().to_series()
    if values.hash().n_unique() == values.len():
        return data.lazyframe.select(pl.repeat(True, pl.len()).alias(data.key))
    return data.lazyframe.select(~pl.col(data.key).is_duplicated())


def table_schema(
    table: str,
    created_at: datetime | None = None,
    known_ids: Mapping[str, pl.Series] | None = None,
    plain_text: Collection[str] = (),
) -> pa.DataFrameSchema:
    """The pandera schema of a canonical table, built from `hsutils.schema.TABLES`.

    With `created_at`, no time column may be later than it; with `known_ids` (`{"company_id": ids, ...}`), id
    columns must refer to known rows. Dictionary columns are Categorical, or String when named in `plain_text`
    (tables assembled in memory before they are written). Extra columns are allowed.
    """
    import pandera.polars as pa

    spec = TABLES[table]
    known_ids = known_ids or {}
    columns: dict[str, pa.Column] = {}
    for column in spec.columns:
        name = column.name
        col = pl.col(name)
        checks: list[pa.Check] = []
        if column.values is not None:
            allowed = list(column.values)
            error = f"value(s) outside {'/'.join(allowed)}"
            checks.append(_row_check(table, name, error, lambda c=col, a=allowed: c.is_in(a)))
        if name in NON_NEGATIVE.get(table, ()):
            checks.append(_row_check(table, name, "negative value(s)", lambda c=col: c >= 0))
        if (table, name) in VALUE_RANGES:
            low, high = VALUE_RANGES[(table, name)]
            checks.append(
                _row_check(
                    table,
                    name,
                    f"value(s) outside {low}-{high}",
                    lambda c=col, lo=low, hi=high: c.is_between(lo, hi),
                )
            )
        if created_at is not None and name in spec.time_columns:
            limit = created_at.astimezone(UTC)
            stamp = limit.strftime("%Y-%m-%dT%H:%M:%SZ")
            checks.append(
                _row_check(
                    table,
                    name,
                    f"value(s) later than the snapshot's created_at {stamp}",
                    lambda c=col, t=limit: c <= t,
                )
            )
        if name in REFERENCES and name != spec.primary_key and name in known_ids:
            target_table, _ = REFERENCES[name]
            ids = known_ids[name]
            checks.append(
                _row_check(table, name, f"id(s) not in {target_table}", lambda c=col, k=ids: c.is_in(k))
            )
        if name == spec.primary_key:
            checks.append(pa.Check(_distinct_rows, name=_UNIQUE_KEY, error=_UNIQUE_KEY, n_failure_cases=3))
        checks.extend(_relational_checks(table, name))
        columns[name] = pa.Column(
            pl.String if column.dictionary and name in plain_text else column.dtype,
            nullable=column.nullable,
            checks=checks,
            required=True,
        )
    return pa.DataFrameSchema(columns, strict=False, name=table)


def row_checks(table: str) -> list[tuple[str, str, bool, pl.Expr]]:
    """The row-wise checks of `table`'s schema (allowed values, ranges, non-negative values, rules across columns):
    (column, what a failure means, whether the rule reads other columns too, expression True on fine rows)."""
    checks = []
    for name, column in table_schema(table).columns.items():
        for check in column.checks:
            info = _CHECKS.get((table, name, check.error))
            if info is not None:
                checks.append((name, info.what, bool(info.show), info.predicate()))
    return checks


def _relational_checks(table: str, name: str) -> list[pa.Check]:
    """Checks across columns of one row, attached to the column that is reported."""
    if (table, name) == ("deals", "term_end"):
        return [
            _row_check(
                table,
                name,
                "row(s) with term_end not after term_start",
                lambda: pl.col("term_end") > pl.col("term_start"),
                ("term_start",),
            )
        ]
    if (table, name) == ("deals", "close_date"):
        return [
            _row_check(
                table,
                name,
                "won/lost deal(s) without close_date",
                lambda: pl.col("close_date").is_not_null() | (pl.col("stage") == "open"),
                ("stage",),
            )
        ]
    if (table, name) == ("tickets", "closed_at"):
        return [
            _row_check(
                table,
                name,
                "row(s) with closed_at before created_at",
                lambda: pl.col("closed_at") >= pl.col("created_at"),
                ("created_at",),
            )
        ]
    if (table, name) == ("surveys", "score"):
        checks = []
        for kind, (low, high) in SURVEY_SCORE_RANGES.items():
            checks.append(
                _row_check(
                    table,
                    name,
                    f"{kind} score(s) outside {low}-{high}",
                    lambda k=kind, lo=low, hi=high: (
                        (pl.col("kind") != k) | pl.col("score").is_between(lo, hi)
                    ),
                    ("kind",),
                )
            )
        return checks
    return []


# ------------------------------------------------------------------------------------------------ validation


def _describe_failure(
    table: str, frame: pl.DataFrame, cases: pl.DataFrame, rows: FileRows | None = None
) -> InputError:
    """Turn the first failed (column, check) of a pandera failure-case frame into one InputError."""
    spec = TABLES[table]
    order = {name: i for i, name in enumerate(spec.column_names)}
    cases = (
        cases.with_columns(
            pl.col("column").replace_strict(order, default=len(order), return_dtype=pl.Int64).alias("_order")
        )
        .with_row_index("_seen")
        .sort(["_order", "_seen"])
    )
    first = cases.row(0, named=True)
    column, check = first["column"], first["check"]
    these = cases.filter((pl.col("column") == column) & (pl.col("check") == check))
    problems = cases.select("column", "check").unique().height
    suffix = f" (+{problems - 1} more problem(s) in {table})" if problems > 1 else ""
    key = [spec.primary_key] if spec.primary_key and spec.primary_key != column else []

    if check == "column_in_dataframe":
        return problem(table, column, "column missing", suffix=suffix)
    if check.startswith("dtype("):
        expected = spec.column(column).dtype if column in order else check
        return problem(
            table, column, f"has type {frame.schema.get(column)}, expected {expected}", suffix=suffix
        )
    if check == "not_nullable":
        mask = pl.col(column).is_null()
        what = f"{frame[column].null_count():,} empty value(s)"
        show = [*key, column]
    elif check == _UNIQUE_KEY:
        mask = pl.col(column).is_duplicated()
        duplicated = frame.filter(mask)[column]
        what = f"{duplicated.n_unique():,} duplicated key(s) on {duplicated.len():,} rows"
        show = [column, *[c for c in spec.column_names if c != column][:2]]
    elif (table, column, check) in _CHECKS:
        info = _CHECKS[(table, column, check)]
        mask = ~info.predicate().fill_null(True)
        count = frame.select(mask.sum()).item()
        what = f"{count:,} {info.what}"
        show = [*key, column, *info.show]
        if column in REFERENCES:
            suffix = _several_ids_hint(frame, mask, column, REFERENCES[column][0]) + suffix
    else:  # a check described by pandera alone
        indexes = these["index"].drop_nulls().cast(pl.Int64)
        mask = pl.int_range(pl.len()).is_in(indexes.implode())
        what = f"{check} failed"
        show = [*key, column]
    examples = _with_rows(frame, mask, show, rows)
    return problem(table, column, what, examples, suffix=suffix, file=_file_name(rows))


def _several_ids_hint(frame: pl.DataFrame, unknown: pl.Expr, column: str, target_table: str) -> str:
    """A hint when some unknown id holds ';': a HubSpot export's association cell ('101;102', e.g. "Associated
    Company IDs") names several records, and the row must be split into one row per record."""
    several = frame.lazy().filter(unknown & pl.col(column).cast(pl.String).str.contains(";", literal=True))
    if several.select(pl.len()).collect().item() == 0:
        return ""
    return (
        f"; a value with ';' names several {target_table} (an association cell): split such a row, one per id"
    )


def validate_table(
    table: str,
    frame: pl.DataFrame,
    created_at: datetime | None = None,
    known_ids: Mapping[str, pl.Series] | None = None,
    rows: FileRows | None = None,
) -> None:
    """Validate one coerced table with its pandera schema; raise the first problem as an InputError (naming rows by
    their line in the CSV file, with `rows`)."""
    import pandera.errors

    if table in NON_EMPTY_TABLES and frame.height == 0:
        raise InputError(f"table {table}: no rows (a snapshot needs at least one row in {table})")
    plain_text = [c.name for c in TABLES[table].columns if c.dictionary and frame.schema.get(c.name) == pl.String]
    schema = table_schema(table, created_at, known_ids, plain_text)
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        raise _describe_failure(table, frame, exc.failure_cases, rows) from None
    except pandera.errors.SchemaError as exc:  # a check that could not run at all
        column = getattr(getattr(exc, "schema", None), "name", None)
        reason = str(exc).strip().splitlines()[0][:120]
        raise problem(table, column, f"cannot be checked ({reason})") from None


def missing_events(usage_events: pl.DataFrame, names: Sequence[str]) -> list[str]:
    """The event names among `names` that no row of usage_events carries (the first rows are looked at first)."""
    wanted = pl.Series("event", [str(n) for n in names], dtype=pl.String)
    events = usage_events["event"]
    missing = wanted.filter(~wanted.is_in(events.head(CORE_EVENT_HEAD).unique().cast(pl.String).implode()))
    if missing.len() and events.len() > CORE_EVENT_HEAD:  # named events are frequent: the first rows name most
        missing = missing.filter(~missing.is_in(events.unique().cast(pl.String).implode()))
    return missing.to_list()


def most_frequent_events(usage_events: pl.DataFrame, n: int = 5) -> str:
    """The `n` most frequent event names, comma-separated (for messages)."""
    return ", ".join(map(repr, usage_events["event"].value_counts(sort=True)["event"].head(n).to_list())) or "none"


def check_core_events(usage_events: pl.DataFrame, manifest: Manifest) -> None:
    """Every event the manifest names as a value moment must occur in usage_events (when it has any rows)."""
    if usage_events.height == 0:  # no product usage in the snapshot: the usage signals are unknown, not checked
        return
    if not manifest.core_events:
        raise InputError("manifest.json core_events is empty: name the usage events that are the product's value moments")
    missing = missing_events(usage_events, manifest.core_events)
    if missing:
        raise InputError(
            f"table usage_events, column event: manifest core_events never occur: {', '.join(map(repr, missing[:3]))} "
            f"(most frequent events: {most_frequent_events(usage_events)})"
        )


def drop_repeated_rows(
    frame: pl.DataFrame, table: str, rows: FileRows | None = None
) -> tuple[pl.DataFrame, FileRows | None]:
    """`frame` with rows that repeat another row exactly, every column alike, kept once (an export that lists a
    record twice), with a warning counting them; rows sharing a key but differing elsewhere are left for the key
    check to refuse. Only tables with a key: two equal usage events may both have happened. Returns the frame and
    `rows` (where the rows are in the CSV file) updated for the rows dropped."""
    key = TABLES[table].primary_key
    if not key or key not in frame.columns or not frame[key].is_duplicated().any():
        return frame, rows
    first = frame.select(pl.struct(pl.all()).is_first_distinct()).to_series()
    once = frame.filter(first)
    if once.height < frame.height:
        warnings.warn(
            f"table {table}: {frame.height - once.height:,} row(s) repeat another row exactly (a record the export "
            f"lists twice, e.g. {key}={frame.filter(frame.is_duplicated())[key][0]}); each is read once",
            UserWarning, stacklevel=3,
        )
        if rows is not None:
            rows = rows.keeping(first.arg_true())
    return once, rows


def clear_unknown_contacts(tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Empty, in place, the optional contact_id of tickets, engagements and surveys that names no row of contacts
    (a contact deleted in the portal since, or left out of the export or the pull): the activity keeps its company
    and loses the contact link. Returns, per table that had such rows, those rows (row number, key, contact_id)
    for the caller to report."""
    contacts = tables.get("contacts")
    if contacts is None or "contact_id" not in contacts.columns:
        return {}
    known = contacts["contact_id"].cast(pl.String).unique().implode()
    cleared: dict[str, pl.DataFrame] = {}
    for table in ("tickets", "engagements", "surveys"):
        frame = tables.get(table)
        if frame is None or "contact_id" not in frame.columns or frame["contact_id"].null_count() == frame.height:
            continue
        unknown = pl.col("contact_id").is_not_null() & ~pl.col("contact_id").cast(pl.String).is_in(known)
        rows = frame.with_row_index("row", offset=1).filter(unknown)
        if rows.height:
            cleared[table] = rows.select("row", TABLES[table].primary_key, "contact_id")
            tables[table] = frame.with_columns(
                pl.when(unknown).then(None).otherwise(pl.col("contact_id")).alias("contact_id")
            )
    return cleared


def warn_unknown_contacts(
    cleared: Mapping[str, pl.DataFrame], file_rows: Mapping[str, FileRows] | None = None
) -> None:
    """One warning per table of `clear_unknown_contacts`'s result: how many rows lost their contact, and examples (by
    their line in the CSV file, for tables in `file_rows`)."""
    for table, rows in cleared.items():
        where = (file_rows or {}).get(table)
        warnings.warn(
            str(problem(table, "contact_id", f"{rows.height:,} row(s) name a contact not in contacts (deleted since, "
                        "or not exported); their contact is left empty and they still count for their company",
                        at_file_lines(rows.head(3), where), file=_file_name(where))),
            UserWarning, stacklevel=3,
        )


def validate_tables(
    tables: Mapping[str, pl.DataFrame], manifest: Manifest, file_rows: Mapping[str, FileRows] | None = None
) -> None:
    """Validate every canonical table and the references between them; raise the first problem found (naming rows
    by their line in the CSV file, for tables in `file_rows`)."""
    missing = [t for t in TABLES if t not in tables]
    if missing:
        raise InputError(f"table {missing[0]}: missing from the snapshot")
    known: dict[str, pl.Series] = {}
    for table in TABLES:
        validate_table(table, tables[table], manifest.created_at, known, (file_rows or {}).get(table))
        if table == "companies":
            known["company_id"] = tables[table]["company_id"].unique().implode()
    check_core_events(tables["usage_events"], manifest)


def validate_snapshot(snapshot: Snapshot) -> None:
    """Check a loaded snapshot; raise InputError naming table, column and example rows on the first problem."""
    validate_tables(snapshot.tables, snapshot.manifest, snapshot.file_rows)
    snapshot.core_events_checked = (snapshot["usage_events"], tuple(snapshot.manifest.core_events))


def core_events_checked(snapshot: Any) -> bool:
    """Whether the snapshot's usage events and core events, as they are now, passed check_core_events (when it was
    validated, and neither was replaced or changed since)."""
    checked = getattr(snapshot, "core_events_checked", None)
    return (checked is not None and checked[0] is snapshot["usage_events"]
            and checked[1] == tuple(snapshot.manifest.core_events))


def cli_validate(args: Any) -> int:
    """`hsutils validate DIR`: exit 0 with a one-line summary, or exit 2 with one clear message."""
    from hsutils.snapshot import load_snapshot

    snapshot = load_snapshot(args.dir, mapping=getattr(args, "mapping", None))
    rows = ", ".join(f"{t} {f.height:,}" for t, f in snapshot.tables.items())
    print(f"ok: {args.dir} is a valid schema v{snapshot.manifest.schema_version} snapshot ({rows})")
    return 0


__all__ = [
    "FileRows",
    "PortalMapping",
    "at_file_lines",
    "check_core_events",
    "clear_unknown_contacts",
    "core_events_checked",
    "drop_repeated_rows",
    "file_rows",
    "warn_unknown_contacts",
    "missing_events",
    "most_frequent_events",
    "cli_validate",
    "coerce_table",
    "load_mapping",
    "problem",
    "read_table_file",
    "row_checks",
    "table_schema",
    "validate_snapshot",
    "validate_table",
    "validate_tables",
]
