"""Canonical snapshot schema, version 1: the tables, their columns, types and allowed values.

This module is the single source of truth for the schema; readers, writers, validation, the demo
portal and the HubSpot pull all use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

SCHEMA_VERSION = 1

# column kinds -> polars dtype
UTC_DATETIME = pl.Datetime("us", "UTC")
KIND_DTYPES: dict[str, pl.DataType] = {
    "id": pl.String(),
    "str": pl.String(),
    "enum": pl.String(),
    "datetime": UTC_DATETIME,
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
}


@dataclass(frozen=True)
class Column:
    """One column of a canonical table."""

    name: str
    kind: str  # id | str | enum | datetime | int | float | bool
    required: bool = True  # must be present in the file (optional columns are added as nulls)
    nullable: bool = False  # may hold empty values
    values: tuple[str, ...] | None = None  # allowed values for enum columns
    default: object = None  # value for an optional column that is absent or empty
    dictionary: bool = False  # text held as a Categorical (dictionary) column: a few values repeat on many rows

    @property
    def dtype(self) -> pl.DataType:
        """The dtype of the column in a loaded snapshot (Categorical for dictionary columns)."""
        return pl.Categorical() if self.dictionary else KIND_DTYPES[self.kind]


@dataclass(frozen=True)
class Table:
    """One canonical table: its columns and primary key (None for event tables)."""

    name: str
    columns: tuple[Column, ...]
    primary_key: str | None
    time_columns: tuple[str, ...]  # columns that date a row; none may be later than the manifest's created_at

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def polars_schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.columns}


ROLES = ("economic_buyer", "champion", "user", "other")
DEAL_TYPES = ("new", "renewal", "expansion")
DEAL_STAGES = ("open", "won", "lost")
ENGAGEMENT_TYPES = ("email", "meeting", "call", "note")
DIRECTIONS = ("inbound", "outbound")
MEETING_KINDS = ("qbr", "renewal", "check_in", "other")
PRIORITIES = ("low", "medium", "high", "urgent")
SENTIMENTS = ("positive", "neutral", "negative")
SURVEY_KINDS = ("nps", "csat")
DEFAULT_TIERS = ("starter", "pro", "enterprise")  # a portal may use its own tier names

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "companies",
            (
                Column("company_id", "id"),
                Column("name", "str", nullable=True),
                Column("created_at", "datetime"),
                Column("tier", "str"),
                Column("employees", "int", required=False, nullable=True),
                Column("industry", "str", required=False, nullable=True),
                Column("cs_owner_id", "id", required=False, nullable=True),
                Column("ae_owner_id", "id", required=False, nullable=True),
            ),
            primary_key="company_id",
            time_columns=("created_at",),
        ),
        Table(
            "contacts",
            (
                Column("contact_id", "id"),
                Column("company_id", "id"),
                Column("role", "enum", values=ROLES),
                Column("created_at", "datetime"),
                Column("job_title", "str", required=False, nullable=True),
            ),
            primary_key="contact_id",
            time_columns=("created_at",),
        ),
        Table(
            "deals",
            (
                Column("deal_id", "id"),
                Column("company_id", "id"),
                Column("deal_type", "enum", values=DEAL_TYPES),
                Column("stage", "enum", values=DEAL_STAGES),
                Column("term_start", "datetime"),
                Column("term_end", "datetime"),
                Column("close_date", "datetime", nullable=True),
                Column("arr", "float"),
                Column("seats", "int"),
            ),
            primary_key="deal_id",
            time_columns=("close_date",),
        ),
        Table(
            "engagements",
            (
                Column("engagement_id", "id"),
                Column("company_id", "id"),
                Column("contact_id", "id", required=False, nullable=True),
                Column("type", "enum", values=ENGAGEMENT_TYPES),
                Column("direction", "enum", values=DIRECTIONS),
                Column("occurred_at", "datetime"),
                Column("opened", "bool", nullable=True),
                Column("replied", "bool", nullable=True),
                Column("meeting_kind", "enum", nullable=True, values=MEETING_KINDS),
            ),
            primary_key="engagement_id",
            time_columns=("occurred_at",),
        ),
        Table(
            "tickets",
            (
                Column("ticket_id", "id"),
                Column("company_id", "id"),
                Column("contact_id", "id", required=False, nullable=True),
                Column("created_at", "datetime"),
                Column("closed_at", "datetime", required=False, nullable=True),
                Column("priority", "enum", values=PRIORITIES),
                Column("sentiment", "enum", values=SENTIMENTS),
                Column("escalated", "bool"),
                Column("csat", "int", required=False, nullable=True),
            ),
            primary_key="ticket_id",
            time_columns=("created_at", "closed_at"),
        ),
        Table(
            "surveys",
            (
                Column("response_id", "id"),
                Column("company_id", "id"),
                Column("contact_id", "id", required=False, nullable=True),
                Column("submitted_at", "datetime"),
                Column("kind", "enum", values=SURVEY_KINDS),
                Column("score", "float"),
            ),
            primary_key="response_id",
            time_columns=("submitted_at",),
        ),
        Table(
            "usage_events",
            (
                Column("company_id", "id", dictionary=True),
                Column("user_id", "id", dictionary=True),
                Column("occurred_at", "datetime"),
                Column("event", "str", dictionary=True),
                Column("count", "int", required=False, default=1),
            ),
            primary_key=None,
            time_columns=("occurred_at",),
        ),
    )
}

TABLE_NAMES: tuple[str, ...] = tuple(TABLES)


def empty_frame(table: str) -> pl.DataFrame:
    """An empty frame with the canonical columns and dtypes of `table`."""
    return pl.DataFrame(schema=TABLES[table].polars_schema)
