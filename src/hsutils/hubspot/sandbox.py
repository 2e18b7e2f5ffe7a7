"""A local HubSpot stand-in: a loopback HTTP server answering the endpoints hsutils calls, the way HubSpot does.

It serves CRM v3 object lists (cursor paging), batch read/update (200, 207 with errors, 400 for invalid
properties), search, properties and property groups (201 / 409, calculated properties evaluated), associations v4
with labels (USER_DEFINED labels with portal-specific type ids) and their batch read, owners and feedback
submissions. It checks the bearer token (401) and scopes (403 MISSING_SCOPES), limits requests per 10 s (429 with
HubSpot's RATE_LIMIT body and X-HubSpot-RateLimit-* headers) and injects faults at set rates, deterministic by
seed (429, 500, slow answers, 207 partial failures). It counts requests per endpoint for tests and benchmarks.
Merged companies behave as HubSpot's merges do (`Portal.merge`): the merged records' ids still read, answered by
the surviving record under its own id, which lists them in `hs_merged_object_ids`; a portal can be given a limit of
custom properties per object type (`Sandbox(property_limit=...)`), past which a property is refused with a 400;
properties and groups can be archived (DELETE). Associations carry HubSpot's type ids: every contact, deal and ticket
has one primary company (the primary type beside the plain one, labelled "Deal with Primary Company" and so on), and
one in twelve is linked to a second company too, plain only and listed first, so a pull must go by the primary type.

It is seeded from a canonical snapshot through the portal configuration, so `pull` gives the snapshot back.
Product usage is not a HubSpot object: `write_usage_export` writes it as an event export file instead.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import random
import re
import secrets
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import polars as pl

from hsutils.hubspot.config import ENGAGEMENT_OBJECTS, PortalConfig, load_config
from hsutils.schema import TABLES

OBJECT_ALIASES = {
    "company": "companies", "companies": "companies", "0-2": "companies",
    "contact": "contacts", "contacts": "contacts", "0-1": "contacts",
    "deal": "deals", "deals": "deals", "0-3": "deals",
    "ticket": "tickets", "tickets": "tickets", "0-5": "tickets",
    "email": "emails", "emails": "emails", "0-49": "emails",
    "meeting": "meetings", "meetings": "meetings", "0-47": "meetings",
    "call": "calls", "calls": "calls", "0-48": "calls",
    "note": "notes", "notes": "notes", "0-46": "notes",
    "feedback_submission": "feedback_submissions", "feedback_submissions": "feedback_submissions",
    "0-19": "feedback_submissions",
}
SINGULAR = {"companies": "company", "contacts": "contact", "deals": "deal", "tickets": "ticket", "emails": "email",
            "meetings": "meeting", "calls": "call", "notes": "note", "feedback_submissions": "feedback_submission"}
# HubSpot-defined association types (from -> to) used by the stand-in: (the plain type id, the primary company's
# type id or None). Every link carries the plain type; a record's one primary company also carries the primary
# type (contact, deal and ticket to company, and back); activities and feedback submissions have no primary.
ASSOCIATION_TYPES = {
    ("contacts", "companies"): (279, 1), ("companies", "contacts"): (280, 2),
    ("deals", "companies"): (341, 5), ("companies", "deals"): (342, 6),
    ("tickets", "companies"): (339, 26), ("companies", "tickets"): (340, 25),
    ("tickets", "contacts"): (16, None), ("contacts", "tickets"): (15, None),
    ("emails", "companies"): (186, None), ("companies", "emails"): (185, None),
    ("emails", "contacts"): (198, None), ("contacts", "emails"): (197, None),
    ("meetings", "companies"): (188, None), ("companies", "meetings"): (187, None),
    ("meetings", "contacts"): (200, None), ("contacts", "meetings"): (199, None),
    ("calls", "companies"): (182, None), ("companies", "calls"): (181, None),
    ("calls", "contacts"): (194, None), ("contacts", "calls"): (193, None),
    ("notes", "companies"): (190, None), ("companies", "notes"): (189, None),
    ("notes", "contacts"): (202, None), ("contacts", "notes"): (201, None),
    ("feedback_submissions", "contacts"): (98, None), ("contacts", "feedback_submissions"): (97, None),
    ("feedback_submissions", "companies"): (928, None), ("companies", "feedback_submissions"): (929, None),
}


def primary_label(from_type: str, to_type: str) -> str:
    """The label HubSpot gives a primary-company association type since February 2024 ("Deal with Primary
    Company"): integrations are to go by the type id, never the label."""
    if from_type == "companies":
        return f"Primary Company with {SINGULAR.get(to_type, to_type).title()}"
    return f"{SINGULAR.get(from_type, from_type).title()} with Primary Company"


DEFAULT_PROPERTIES = ("hs_object_id", "createdate", "hs_lastmodifieddate")
MERGED_IDS = "hs_merged_object_ids"  # the ids merged into a record, ';'-separated
HUBSPOT_DEFINED = {"name", "domain", "createdate", "industry", "numberofemployees", "hubspot_owner_id", "jobtitle",
                   "closedate", "amount", "dealtype", "pipeline", "dealstage", "closed_date", "hs_createdate"}
KIND_TO_TYPE = {"datetime": ("datetime", "date"), "int": ("number", "number"), "float": ("number", "number"),
                "bool": ("bool", "booleancheckbox"), "id": ("string", "text"), "str": ("string", "text"),
                "enum": ("enumeration", "select")}
READ_SCOPE = {"tickets": "tickets"}
PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")


def iso_ms(value: datetime | None) -> str | None:
    """HubSpot's timestamp format: ISO-8601 UTC with milliseconds."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _modification_metadata(hubspot_defined: bool, calculated: bool) -> dict[str, bool]:
    """A property's `modificationMetadata` as HubSpot sends it: a calculated property's values are read-only."""
    return {"archivable": not hubspot_defined, "readOnlyDefinition": hubspot_defined, "readOnlyValue": calculated,
            "readOnlyOptions": False}


def _now() -> str:
    return iso_ms(datetime.now(UTC))


def _error(status_word: str, category: str, message: str, **extra: Any) -> dict[str, Any]:
    body = {"status": status_word, "message": message, "correlationId": str(uuid.uuid4()), "category": category,
            "context": {}, "links": {}, "errors": []}
    body.update(extra)
    return body


class ApiError(Exception):
    """An HTTP error answer of the stand-in."""

    def __init__(self, status: int, category: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = _error("error", category, message, **extra)


# ----- calculated properties ---------------------------------------------------------------------------------
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_FUNCS = {"min": min, "max": max, "abs": abs}


def formula_names(formula: str) -> set[str]:
    """Property names a calculation formula refers to (raises ValueError for syntax outside the subset)."""
    tree = ast.parse(formula, mode="eval")
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Call, ast.Load,
                                   ast.USub, ast.UAdd, *_BINOPS)):
            raise ValueError(f"unsupported syntax {type(node).__name__}")
    return names - set(_FUNCS)


def evaluate_formula(formula: str, values: dict[str, Any]) -> float | None:
    """Evaluate a calculation formula (+ - * /, min, max, abs) over numeric property values; None if any is empty."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            raw = values.get(node.id)
            if raw in (None, ""):
                raise LookupError(node.id)
            return float(raw)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
            return float(_FUNCS[node.func.id](*[ev(a) for a in node.args]))
        raise ValueError("unsupported")

    try:
        return ev(ast.parse(formula, mode="eval"))
    except (LookupError, ValueError, ZeroDivisionError, SyntaxError, TypeError):
        return None


def _number_text(value: float | None) -> str | None:
    if value is None or math.isnan(value):
        return None
    return str(int(value)) if float(value).is_integer() else repr(round(value, 6))


# ----- the portal's state ------------------------------------------------------------------------------------
@dataclass
class Faults:
    """Fault injection rates (0..1 per request), deterministic for a seed and a sequential client."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.3
    partial_rate: float = 0.0  # share of batch reads/updates answered 207 with some inputs failed
    partial_items: float = 0.1  # share of inputs failed inside such a batch (at least one)
    outage_after: int | None = None  # after this many requests every answer is 503 (a crash in the middle)
    seed: int = 0

    @classmethod
    def parse(cls, text: str | None) -> Faults:
        """From "429=0.2,500=0.02,slow=0.01,207=0.1,seed=3"."""
        faults = cls()
        keys = {"429": "rate_429", "500": "rate_500", "slow": "slow_rate", "slow_seconds": "slow_seconds",
                "207": "partial_rate", "items": "partial_items", "outage_after": "outage_after",
                "seed": "seed"}
        for part in filter(None, (text or "").split(",")):
            key, _, value = part.partition("=")
            if key.strip() not in keys:
                raise ValueError(f"unknown fault {key!r}: use {', '.join(keys)}")
            attr = keys[key.strip()]
            setattr(faults, attr, int(value) if attr in ("seed", "outage_after") else float(value))
        return faults


@dataclass
class Portal:
    """Everything the stand-in stores: objects, property definitions, groups, associations, labels, owners."""

    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    order: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    properties: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    groups: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    assoc: dict[tuple[str, str], dict[str, dict[str, list[int]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(dict)))
    labels: dict[tuple[str, str], dict[int, tuple[str, str | None]]] = field(default_factory=lambda: defaultdict(dict))
    owners: list[dict[str, Any]] = field(default_factory=list)
    pipelines: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    update_counts: Counter = field(default_factory=Counter)
    merged: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))  # old id -> surviving id
    archived_properties: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))

    # --- schema ---
    def ensure_group(self, object_type: str, name: str, label: str) -> None:
        self.groups[object_type].setdefault(
            name, {"name": name, "label": label, "displayOrder": -1, "archived": False})

    def define(self, object_type: str, name: str, kind: str = "str", group: str | None = None,
               options: list[str] | None = None) -> None:
        if name in self.properties[object_type]:
            return
        prop_type, field_type = KIND_TO_TYPE.get(kind, ("string", "text"))
        if kind == "bool" and name.endswith("_count"):
            prop_type, field_type = "number", "number"
        group = group or f"{SINGULAR.get(object_type, object_type)}information"
        self.ensure_group(object_type, group, f"{SINGULAR.get(object_type, object_type).title()} information")
        self.properties[object_type][name] = {
            "name": name, "label": name.replace("_", " ").capitalize(), "type": prop_type, "fieldType": field_type,
            "groupName": group, "description": "", "displayOrder": -1, "hidden": False, "formField": False,
            "hubspotDefined": name in HUBSPOT_DEFINED or name.startswith("hs_"), "calculated": False,
            "modificationMetadata": _modification_metadata(name in HUBSPOT_DEFINED or name.startswith("hs_"), False),
            "options": [{"label": o, "value": o, "hidden": False, "displayOrder": i} for i, o in enumerate(options or [])],
            "createdAt": _now(), "updatedAt": _now(), "archived": False,
        }

    def define_pipeline(self, object_type: str, pipeline_id: str, label: str,
                        stages: list[tuple[str, str, dict[str, str]]]) -> None:
        """Add (or replace) a pipeline as HubSpot's pipelines API lists it; `stages` are (id, label, metadata), a
        deal stage's metadata {"isClosed": "true" | "false", "probability": "0.0" .. "1.0"}."""
        stamp = _now()
        pipeline = {"id": pipeline_id, "label": label, "displayOrder": len(self.pipelines[object_type]),
                    "archived": False, "createdAt": stamp, "updatedAt": stamp,
                    "stages": [{"id": sid, "label": slabel, "displayOrder": i, "metadata": dict(metadata),
                                "archived": False, "createdAt": stamp, "updatedAt": stamp,
                                "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT"}
                               for i, (sid, slabel, metadata) in enumerate(stages)]}
        self.pipelines[object_type] = [p for p in self.pipelines[object_type] if p["id"] != pipeline_id] + [pipeline]

    # --- records ---
    def add(self, object_type: str, object_id: str, properties: dict[str, Any], created: str | None) -> None:
        created = created or _now()
        clean = {k: (None if v is None else str(v)) for k, v in properties.items()}
        clean.setdefault("createdate", created)
        clean["hs_object_id"] = object_id
        clean["hs_lastmodifieddate"] = created
        if object_id not in self.objects[object_type]:
            self.order[object_type].append(object_id)
        self.objects[object_type][object_id] = {"properties": clean, "createdAt": created, "updatedAt": created}

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str,
                  labels: tuple[int, int] | None = None, primary: bool = True) -> None:
        """Link two records both ways with HubSpot's plain type, plus an optional (forward, backward) label. With
        `primary`, `to_id` becomes the record's one primary company (where the pair has a primary type): a primary
        it had before loses the mark, as in HubSpot."""
        plain, primary_type = ASSOCIATION_TYPES.get((from_type, to_type), (1000, None))
        back, back_primary = ASSOCIATION_TYPES.get((to_type, from_type), (1001, None))
        forward = self.assoc[(from_type, to_type)][from_id]
        marked = primary and primary_type is not None
        if marked:
            for other, types in forward.items():
                if other != to_id and primary_type in types:
                    types.remove(primary_type)
                    self.assoc[(to_type, from_type)][other][from_id].remove(back_primary)
        forward[to_id] = sorted(set(forward.get(to_id, [])) | {plain, *([primary_type] if marked else []),
                                                                *(labels[:1] if labels else ())})
        backward = self.assoc[(to_type, from_type)][to_id]
        backward[from_id] = sorted(set(backward.get(from_id, [])) | {back, *([back_primary] if marked else []),
                                                                     *(labels[1:] if labels else ())})

    def label_of(self, from_type: str, to_type: str, type_id: int) -> dict[str, Any]:
        category, label = self.labels[(from_type, to_type)].get(type_id, ("HUBSPOT_DEFINED", None))
        return {"category": category, "typeId": type_id, "label": label}

    def deactivate_owner(self, owner_id: str) -> None:
        """Deactivate an owner's user as HubSpot does when someone leaves: the owner keeps its id (and the records
        it owns), is listed only with archived=true, and loses its active userId."""
        for owner in self.owners:
            if owner["id"] == owner_id:
                owner.update(archived=True, userId=None, updatedAt=_now())

    def merge(self, object_type: str, merged_ids: list[str], into: str) -> None:
        """Merge the records `merged_ids` into the record `into` as HubSpot does: the merged records are gone, their
        ids (and ids merged into them before) now answer with `into`, which lists them all in `hs_merged_object_ids`
        (`into` may be a new id: HubSpot gives a merge of two companies a new record whose id neither had)."""
        records = self.objects[object_type]
        if into not in records:
            first = records[merged_ids[0]]
            self.add(object_type, into, dict(first["properties"]), first["createdAt"])
        self.define(object_type, MERGED_IDS)
        survivor = records[into]["properties"]
        before = _merged_ids(survivor)
        for old in merged_ids:
            if old == into:
                continue
            gone = records.pop(old)
            self.order[object_type].remove(old)
            before += [old, *_merged_ids(gone["properties"])]
        for old in before:
            self.merged[object_type][old] = into
        survivor[MERGED_IDS] = ";".join(dict.fromkeys(before))

    def resolve(self, object_type: str, object_id: str) -> str | None:
        """The id of the record that answers for `object_id` (itself, or the record it was merged into); None when
        HubSpot has no such record."""
        if object_id in self.objects[object_type]:
            return object_id
        return self.merged[object_type].get(object_id)

    def recompute(self, object_type: str, object_id: str) -> None:
        record = self.objects[object_type][object_id]["properties"]
        for name, spec in self.properties[object_type].items():
            if spec.get("calculated") and spec.get("calculationFormula"):
                record[name] = _number_text(evaluate_formula(spec["calculationFormula"], record))


def _label_type_id(seed: int, label: str) -> int:
    """A portal-specific type id for a USER_DEFINED label (stable for a seed, never a HubSpot-defined id)."""
    return 100 + (sum(ord(c) * (i + 1) for i, c in enumerate(label)) * 7919 + seed * 104729) % 9000


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text or "").lower()).strip("-")[:40] or "company"


def _fmt(value: Any, kind: str, prop: str = "") -> str | None:
    if value is None:
        return None
    if kind == "datetime":
        return iso_ms(value)
    if kind == "bool":
        if prop.endswith("_count"):
            return "1" if value else "0"
        return "true" if value else "false"
    if kind == "float":
        return repr(float(value))
    return str(value)


def _merged_ids(properties: dict[str, Any]) -> list[str]:
    """The ids a record's `hs_merged_object_ids` lists (merged into it before)."""
    return [i for i in (properties.get(MERGED_IDS) or "").split(";") if i]


def _deal_stage_metadata(stage: str, probability: float) -> dict[str, str]:
    """HubSpot's metadata of a deal stage with canonical `stage` (an open stage at `probability`)."""
    if stage == "open":
        return {"isClosed": "false", "probability": f"{probability:.1f}"}
    return {"isClosed": "true", "probability": "1.0" if stage == "won" else "0.0"}


def _seed_deal_pipelines(portal: Portal, config: PortalConfig, used: dict[str, dict[str, str]]) -> None:
    """The deal pipelines of the config as HubSpot lists them, with the stages it maps and those the seeded deals
    are in (`used`, {pipeline id: {stage id: canonical stage}}), each stage's metadata saying what it maps to."""
    for pid, spec in config.pipelines.items():
        stages = {str(k): v for k, v in (spec.get("stages") or {}).items()}
        stages.update({sid: canon for sid, canon in used.get(pid, {}).items() if sid not in stages})
        open_ids = [sid for sid, canon in stages.items() if canon == "open"]
        labels = {"open": "In progress", "won": "Closed won", "lost": "Closed lost"}
        portal.define_pipeline("deals", pid, str(spec.get("label") or pid), [
            (sid, f"{labels[canon]} {sid}" if sid.isdigit() else sid.replace("_", " ").capitalize(),
             _deal_stage_metadata(canon, (open_ids.index(sid) + 1) / (len(open_ids) + 1) if canon == "open" else 0))
            for sid, canon in stages.items()])


SECOND_COMPANY_EVERY = 12  # one contact, deal and ticket in this many is linked to a second company too


def _next_companies(company_ids: list[str]) -> dict[str, str]:
    """{company id: the company after it, the last one followed by the first}; empty for a portal of one company."""
    if len(company_ids) < 2:
        return {}
    following: dict[str, str] = {}
    for position, company_id in enumerate(company_ids):
        following.setdefault(company_id, company_ids[(position + 1) % len(company_ids)])
    return following


def _second_company(next_company: dict[str, str], index: int, own: str) -> str | None:
    """The company the stand-in links to every SECOND_COMPANY_EVERY-th seeded record beside its own (a contact's
    former employer, a deal's reseller, the partner that raised a ticket), unlabelled and listed before the primary
    one; None for the other records or a portal of one company. Deterministic: the company after `own`
    (`next_company`, from `_next_companies`)."""
    if index % SECOND_COMPANY_EVERY != SECOND_COMPANY_EVERY // 2:
        return None
    return next_company.get(own)


def _link_company(portal: Portal, object_type: str, object_id: str, company_id: str, index: int,
                  next_company: dict[str, str], labels: tuple[int, int] | None = None) -> None:
    """Link a seeded record to its company, its one primary company, after a second company for a share of the
    records (see `_second_company`), so a pull has to go by the primary type, not by the order of the links."""
    other = _second_company(next_company, index, company_id)
    if other is not None:
        portal.associate(object_type, object_id, "companies", other, primary=False)
    portal.associate(object_type, object_id, "companies", company_id, labels)


def _map_columns(portal: Portal, object_type: str, row: dict[str, Any], tmap, table: str) -> dict[str, Any]:
    """Portal properties of one canonical row through a TableMap (inverse of the pull)."""
    props: dict[str, Any] = {}
    for column, prop in tmap.properties.items():
        kind = TABLES[table].column(column).kind if column in TABLES[table].column_names else "str"
        portal.define(object_type, prop, kind)
        value = row.get(column)
        if kind in ("enum", "str") and value is not None:
            value = tmap.to_portal(column, value)
        props[prop] = _fmt(value, kind, prop)
    return props


def seed_portal(tables: dict[str, pl.DataFrame], config: PortalConfig, created_at: datetime | None = None,
                seed: int = 0) -> Portal:
    """Build the stand-in's portal from canonical tables through the portal configuration."""
    portal = Portal()
    stamp = iso_ms(created_at) if created_at else _now()
    roles = config.roles
    # association labels: HubSpot's plain and primary types plus the portal's USER_DEFINED role labels
    for (from_type, to_type), (plain, primary) in ASSOCIATION_TYPES.items():
        portal.labels[(from_type, to_type)][plain] = ("HUBSPOT_DEFINED", None)
        if primary is not None:
            portal.labels[(from_type, to_type)][primary] = ("HUBSPOT_DEFINED", primary_label(from_type, to_type))
    role_label: dict[str, int] = {}
    for label, role in (roles.get("labels") or {}).items():
        type_id = _label_type_id(seed, label)
        back_id = type_id + 1
        portal.labels[("contacts", "companies")][type_id] = ("USER_DEFINED", label)
        portal.labels[("companies", "contacts")][back_id] = ("USER_DEFINED", label)
        role_label.setdefault(role, type_id)

    maps = [("companies", config.table("companies")), ("contacts", config.table("contacts")),
            ("deals", config.table("deals")), ("tickets", config.table("tickets")),
            ("engagements", None), ("surveys", config.table("surveys"))]
    for table, tmap in maps:
        for object_type, m in ([(o, config.engagement(o)) for o in ENGAGEMENT_OBJECTS] if tmap is None
                               else [(tmap.object_type, tmap)]):
            for column, prop in m.properties.items():
                kind = TABLES[table].column(column).kind if column in TABLES[table].column_names else "str"
                portal.define(object_type, prop, kind)
    companies = config.table("companies")
    domain_prop = config.domain_property
    owners: set[str] = set()
    for row in tables["companies"].iter_rows(named=True):
        props = _map_columns(portal, "companies", row, companies, "companies")
        if domain_prop:
            portal.define("companies", domain_prop)
            props[domain_prop] = row.get("domain") or f"{_slug(row.get('name'))}-{row['company_id']}.example.com".lower()
        portal.add("companies", str(row["company_id"]), props, _fmt(row.get("created_at"), "datetime") or stamp)
        owners.update(str(row[c]) for c in ("cs_owner_id", "ae_owner_id") if row.get(c) is not None)

    contacts = config.table("contacts")
    role_prop = roles.get("property")
    role_values = {v: k for k, v in reversed(list((roles.get("values") or {}).items()))}
    next_company = _next_companies([str(c) for c in tables["companies"].get_column("company_id")])
    for i, row in enumerate(tables["contacts"].iter_rows(named=True)):
        props = _map_columns(portal, "contacts", row, contacts, "contacts")
        role = row.get("role")
        if role_prop:
            portal.define("contacts", role_prop)
            props[role_prop] = role_values.get(role) if role not in role_label and role != roles.get("default") else None
        cid = str(row["contact_id"])
        portal.add("contacts", cid, props, _fmt(row.get("created_at"), "datetime") or stamp)
        label = (role_label[role], role_label[role] + 1) if role in role_label else None
        _link_company(portal, "contacts", cid, str(row["company_id"]), i, next_company, label)

    deals = config.table("deals")
    for name in ("pipeline", "dealstage", config.deals.get("deal_type_property") or "dealtype"):
        portal.define("deals", name)
    used_stages: dict[str, dict[str, str]] = defaultdict(dict)
    for i, row in enumerate(tables["deals"].iter_rows(named=True)):
        props = _map_columns(portal, "deals", row, deals, "deals")
        pipeline, stage, type_value = config.deal_portal_values(row["deal_type"], row["stage"])
        used_stages[pipeline][stage] = row["stage"]
        props.update({"pipeline": pipeline, "dealstage": stage,
                      config.deals.get("deal_type_property") or "dealtype": type_value})
        did = str(row["deal_id"])
        portal.add("deals", did, props, _fmt(row.get("term_start"), "datetime") or stamp)
        _link_company(portal, "deals", did, str(row["company_id"]), i, next_company)
    _seed_deal_pipelines(portal, config, used_stages)

    tickets = config.table("tickets")
    for i, row in enumerate(tables["tickets"].iter_rows(named=True)):
        props = _map_columns(portal, "tickets", row, tickets, "tickets")
        tid = str(row["ticket_id"])
        portal.add("tickets", tid, props, _fmt(row.get("created_at"), "datetime") or stamp)
        _link_company(portal, "tickets", tid, str(row["company_id"]), i, next_company)
        if row.get("contact_id") is not None:
            portal.associate("tickets", tid, "contacts", str(row["contact_id"]))

    by_type = {ENGAGEMENT_OBJECTS[i]: t for i, t in enumerate(("email", "meeting", "call", "note"))}
    for object_type, kind in by_type.items():
        emap = config.engagement(object_type)
        for row in tables["engagements"].filter(pl.col("type") == kind).iter_rows(named=True):
            props = _map_columns(portal, object_type, row, emap, "engagements")
            eid = str(row["engagement_id"])
            portal.add(object_type, eid, props, props.get("hs_timestamp") or stamp)
            portal.associate(object_type, eid, "companies", str(row["company_id"]))
            if row.get("contact_id") is not None:
                portal.associate(object_type, eid, "contacts", str(row["contact_id"]))

    surveys = config.table("surveys")
    for row in tables["surveys"].iter_rows(named=True):
        props = _map_columns(portal, surveys.object_type, row, surveys, "surveys")
        rid = str(row["response_id"])
        portal.add(surveys.object_type, rid, props, _fmt(row.get("submitted_at"), "datetime") or stamp)
        portal.associate(surveys.object_type, rid, "companies", str(row["company_id"]))
        if row.get("contact_id") is not None:
            portal.associate(surveys.object_type, rid, "contacts", str(row["contact_id"]))

    for i, owner_id in enumerate(sorted(owners)):
        portal.owners.append({
            "id": owner_id, "email": f"owner{i + 1}@example.com", "firstName": "Owner", "lastName": str(i + 1),
            "type": "PERSON", "userId": 9_000 + i, "userIdIncludingInactive": 9_000 + i, "archived": False,
            "createdAt": stamp, "updatedAt": stamp, "teams": [],
        })
    for object_type in ("companies", "contacts", "deals", "tickets", *ENGAGEMENT_OBJECTS, "feedback_submissions"):
        for name in DEFAULT_PROPERTIES:
            portal.define(object_type, name, "datetime" if name != "hs_object_id" else "str")
    return portal


def write_synthetic_model(path: str | Path, points: dict[str, float], version: str) -> Path:
    """A minimal model file (version and points per signal) for stand-in runs of `push`."""
    import yaml

    signals = [{"name": name, "family": "value", "points": value} for name, value in points.items()]
    signals.append({"name": "days_to_renewal", "family": "value", "points": 0})
    path = Path(path)
    path.write_text(yaml.safe_dump({"version": version, "kind": "fitted", "signals": signals}), encoding="utf-8")
    return path


def write_synthetic_scores(path: str | Path, company_ids: list[str], points: dict[str, float], seed: int = 0,
                           version: str = "standin-1") -> pl.DataFrame:
    """A scores file in the `hsutils score` layout with random component points (each within its signal's
    points) for stand-in runs of `push`; about a fifth of the 30-day changes are unknown."""
    rng = random.Random(seed)
    rows = []
    for cid in company_ids:
        earned = {f"points_{k}": round(rng.uniform(0, v), 2) for k, v in points.items()}
        score = sum(earned.values())
        rows.append({"company_id": cid, "as_of": datetime(2026, 11, 9, tzinfo=UTC), "health_score": score,
                     "band": "Healthy" if score >= 70 else ("At risk" if score < 55 else "Neutral"),
                     "churn_probability": round(rng.random(), 4), **earned,
                     "score_change_30d": round(rng.uniform(-20, 20), 2) if rng.random() < 0.8 else None,
                     "expansion_candidate": score >= 85, "arr": 12_000.0, "cs_owner_id": "501",
                     "model_version": version})
    frame = pl.DataFrame(rows)
    frame.write_parquet(path)
    return frame


def write_usage_export(usage: pl.DataFrame, path: str | Path, style: str = "segment") -> Path:
    """Write canonical usage events as a product-analytics export (segment, mixpanel or amplitude columns)."""
    path = Path(path)
    if style == "segment":
        out = usage.select(pl.col("company_id").alias("group_id"), pl.col("user_id"), pl.col("event"),
                           pl.col("occurred_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").alias("timestamp"),
                           pl.col("count"))
    elif style == "mixpanel":
        out = usage.select(pl.col("event"), pl.col("user_id").alias("distinct_id"),
                           (pl.col("occurred_at").dt.epoch("ms")).alias("time"),
                           pl.col("company_id").alias("$group_id"), pl.col("count"))
    elif style == "amplitude":
        out = usage.select(pl.col("user_id"), pl.col("event").alias("event_type"),
                           pl.col("occurred_at").dt.strftime("%Y-%m-%d %H:%M:%S%.6f").alias("event_time"),
                           pl.col("company_id").alias("account_id"), pl.col("count").alias("event_count"))
    else:
        raise ValueError(f"unknown usage export style {style!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        out.write_parquet(path)
    else:
        out.write_csv(path)
    return path


# ----- the server ----------------------------------------------------------------------------------------------
class Sandbox:
    """The stand-in server: portal state, tokens with scopes, a rate limit, faults and request counters."""

    def __init__(self, portal: Portal | None = None, token: str | None = None, rate: int | None = None,
                 faults: Faults | None = None, scopes: set[str] | None = None, allow_calculated: bool = True,
                 extra_tokens: dict[str, set[str] | None] | None = None, window: float = 10.0,
                 property_limit: int | None = None) -> None:
        self.portal = portal or Portal()
        self.token = token or f"pat-sandbox-{secrets.token_hex(16)}"
        self.tokens: dict[str, set[str] | None] = {self.token: scopes}
        self.tokens.update(extra_tokens or {})
        self.rate = rate
        self.window = window
        self.faults = faults or Faults()
        self.allow_calculated = allow_calculated
        self.property_limit = property_limit  # custom properties an object type may have (the portal's tier)
        self.counts: Counter = Counter()
        self.served: Counter = Counter()
        self.fault_counts: Counter = Counter()
        self.lock = threading.RLock()
        self._random = random.Random(self.faults.seed)
        self._admitted = 0
        self._windows: dict[str, deque[float]] = defaultdict(deque)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---
    def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        sandbox = self

        class Handler(_Handler):
            pass

        Handler.sandbox = sandbox
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hubspot-sandbox", daemon=True)
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()
            self.served.clear()
            self.fault_counts.clear()

    def set_faults(self, faults: Faults) -> None:
        with self.lock:
            self.faults = faults
            self._random = random.Random(faults.seed)
            self._admitted = 0

    # --- request pipeline ---
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, dict]:
        parsed = urlparse(raw_path)
        path = parsed.path.rstrip("/") or "/"
        query = parse_qs(parsed.query, keep_blank_values=True)
        route, handler, params = self._route(method, path)
        key = f"{method} {route}"
        extra_headers: dict[str, str] = {}
        with self.lock:
            self.counts[key] += 1
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if token not in self.tokens:
            return 401, _error("error", "INVALID_AUTHENTICATION",
                               "Authentication credentials not found. This API supports OAuth 2.0 authentication."), {}
        if handler is None:
            return 404, _error("error", "OBJECT_NOT_FOUND", f"unknown endpoint {method} {path}"), {}
        scopes = self.tokens[token]
        needed = self._scope(route, method, params)
        if scopes is not None and needed not in scopes:
            body_ = _error("error", "MISSING_SCOPES", "This app hasn't been granted all required scopes to make this "
                           "call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
                           errors=[{"message": "One or more of the following scopes are required.",
                                    "context": {"requiredGranularScopes": [needed]}}],
                           links={"scopes": "https://developers.hubspot.com/scopes"})
            return 403, body_, {}
        if self.rate and not route.endswith("/search"):
            with self.lock:
                window = self._windows[token]
                now = time.monotonic()
                while window and now - window[0] >= self.window:
                    window.popleft()
                remaining = self.rate - len(window)
                extra_headers = {"X-HubSpot-RateLimit-Max": str(self.rate),
                                 "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(self.window * 1000))}
                if remaining <= 0:
                    self.fault_counts["rate_limited"] += 1
                    retry_after = max(0.0, self.window - (now - window[0]))
                    extra_headers.update({"X-HubSpot-RateLimit-Remaining": "0",
                                          "Retry-After": str(max(1, math.ceil(retry_after)))})
                    return 429, {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                                 "errorType": "RATE_LIMIT", "correlationId": str(uuid.uuid4()),
                                 "policyName": "TEN_SECONDLY_ROLLING",
                                 "groupName": "publicapi:private-app-api-calls-ten-secondly"}, extra_headers
                window.append(now)
                extra_headers["X-HubSpot-RateLimit-Remaining"] = str(remaining - 1)
        with self.lock:
            f = self.faults
            self._admitted += 1
            if f.outage_after is not None and self._admitted > f.outage_after:
                self.fault_counts["outage"] += 1
                return 503, _error("error", "SERVICE_UNAVAILABLE", "Service unavailable (injected outage)"), {}
            draw, slow_draw, partial_draw = self._random.random(), self._random.random(), self._random.random()
            partial_seed = self._random.randrange(1 << 30)
        if draw < f.rate_429:
            with self.lock:
                self.fault_counts["429"] += 1
            return 429, {"status": "error", "message": "You have reached your secondly limit.",
                         "errorType": "RATE_LIMIT", "correlationId": str(uuid.uuid4()),
                         "policyName": "SECONDLY"}, extra_headers
        if draw < f.rate_429 + f.rate_500:
            with self.lock:
                self.fault_counts["500"] += 1
            return 500, _error("error", "INTERNAL_ERROR", "Internal error (injected)"), extra_headers
        if slow_draw < f.slow_rate:
            with self.lock:
                self.fault_counts["slow"] += 1
            time.sleep(f.slow_seconds)
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return 400, _error("error", "VALIDATION_ERROR", "Invalid input JSON"), extra_headers
        partial = random.Random(partial_seed) if partial_draw < f.partial_rate else None
        try:
            with self.lock:
                status, out = handler(params=params, query=query, body=payload, partial=partial)
                self.served[key] += 1
                if status == 207 and partial is not None:
                    self.fault_counts["207"] += 1
        except ApiError as exc:
            return exc.status, exc.body, extra_headers
        return status, out, extra_headers

    def _scope(self, route: str, method: str, params: dict[str, str]) -> str:
        object_type = params.get("type") or params.get("from") or ""
        if route.startswith("/crm/v3/owners"):
            return "crm.objects.owners.read"
        if route.startswith("/crm/v3/properties"):
            return f"crm.schemas.{object_type}.{'read' if method == 'GET' else 'write'}"
        write = route.endswith("/batch/update") or (method in ("PATCH", "PUT", "DELETE"))
        if object_type in READ_SCOPE:
            return READ_SCOPE[object_type]
        return f"crm.objects.{object_type}.{'write' if write else 'read'}"

    def _route(self, method: str, path: str):
        parts = [unquote(p) for p in path.strip("/").split("/")]
        table: list[tuple[str, str, Any]] = [
            ("GET", "crm/v3/owners", self._owners),
            ("GET", "crm/v3/pipelines/{type}", self._pipelines),
            ("GET", "crm/v3/objects/{type}", self._list),
            ("GET", "crm/v3/objects/{type}/{id}", self._get),
            ("POST", "crm/v3/objects/{type}/batch/read", self._batch_read),
            ("POST", "crm/v3/objects/{type}/batch/update", self._batch_update),
            ("POST", "crm/v3/objects/{type}/search", self._search),
            ("GET", "crm/v3/properties/{type}/groups", self._groups),
            ("POST", "crm/v3/properties/{type}/groups", self._create_group),
            ("GET", "crm/v3/properties/{type}", self._properties),
            ("POST", "crm/v3/properties/{type}", self._create_property),
            ("GET", "crm/v3/properties/{type}/{name}", self._get_property),
            ("PATCH", "crm/v3/properties/{type}/{name}", self._update_property),
            ("DELETE", "crm/v3/properties/{type}/{name}", self._archive_property),
            ("DELETE", "crm/v3/properties/{type}/groups/{name}", self._archive_group),
            ("GET", "crm/v4/associations/{from}/{to}/labels", self._labels),
            ("POST", "crm/v4/associations/{from}/{to}/batch/read", self._assoc_batch_read),
            ("GET", "crm/v4/objects/{type}/{id}/associations/{to}", self._assoc_page),
        ]
        for verb, template, handler in table:
            tparts = template.split("/")
            if len(tparts) != len(parts):
                continue
            params: dict[str, str] = {}
            for t, p in zip(tparts, parts, strict=True):
                if t.startswith("{"):
                    params[t[1:-1]] = p
                elif t != p:
                    break
            else:
                if verb != method:
                    continue
                for key in ("type", "from", "to"):
                    if key in params:
                        if params[key] not in OBJECT_ALIASES:
                            return "/" + template, self._unknown_type, params
                        params[key] = OBJECT_ALIASES[params[key]]
                return "/" + template, handler, params
        return path, None, {}

    # --- handlers: objects ---
    def _unknown_type(self, params, **_):
        raise ApiError(400, "VALIDATION_ERROR", "Unable to infer object type from: " + str(params))

    def _record(self, object_type: str, object_id: str, props: list[str] | None) -> dict[str, Any]:
        stored = self.portal.objects[object_type][object_id]
        known = self.portal.properties[object_type]
        names = list(DEFAULT_PROPERTIES) + [p for p in (props or []) if p in known and p not in DEFAULT_PROPERTIES]
        return {"id": object_id, "properties": {n: stored["properties"].get(n) for n in names},
                "createdAt": stored["createdAt"], "updatedAt": stored["updatedAt"], "archived": False}

    @staticmethod
    def _multi(query: dict[str, list[str]], key: str) -> list[str]:
        return [p for value in query.get(key, []) for p in value.split(",") if p]

    def _list(self, params, query, **_):
        object_type = params["type"]
        limit = int((query.get("limit") or ["10"])[0])
        if limit > 100 or limit < 1:
            raise ApiError(400, "VALIDATION_ERROR", f"limit must be between 1 and 100, got {limit}")
        start = int((query.get("after") or ["0"])[0] or 0)
        ids = self.portal.order[object_type][start:start + limit]
        props = self._multi(query, "properties")
        to_types = [OBJECT_ALIASES.get(t, t) for t in self._multi(query, "associations")]
        results = []
        for object_id in ids:
            rec = self._record(object_type, object_id, props)
            if to_types:
                rec["associations"] = {}
                for to_type in to_types:
                    linked = self.portal.assoc[(object_type, to_type)].get(object_id) or {}
                    if linked:
                        kind = f"{SINGULAR[object_type]}_to_{SINGULAR.get(to_type, to_type)}"
                        rec["associations"][to_type] = {"results": [{"id": t, "type": kind} for t in linked]}
            results.append(rec)
        out: dict[str, Any] = {"results": results}
        if start + limit < len(self.portal.order[object_type]):
            after = str(start + limit)
            out["paging"] = {"next": {"after": after, "link": f"?after={after}"}}
        return 200, out

    def _get(self, params, query, **_):
        if params["id"] not in self.portal.objects[params["type"]]:
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found")
        return 200, self._record(params["type"], params["id"], self._multi(query, "properties"))

    def _batch_inputs(self, body: dict[str, Any], limit: int = 100) -> list[dict[str, Any]]:
        inputs = body.get("inputs")
        if not isinstance(inputs, list):
            raise ApiError(400, "VALIDATION_ERROR", "inputs is required")
        if len(inputs) > limit:
            raise ApiError(400, "VALIDATION_ERROR", f"Too many inputs: {len(inputs)} > {limit}")
        return inputs

    def _batch_answer(self, results: list, errors: list) -> tuple[int, dict[str, Any]]:
        stamp = _now()
        out = {"status": "COMPLETE", "results": results, "requestedAt": stamp, "startedAt": stamp,
               "completedAt": stamp}
        if errors:
            out["errors"] = errors
            out["numErrors"] = len(errors)
            return 207, out
        return 200, out

    def _partial_fail(self, ids: list[str], partial: random.Random | None) -> set[str]:
        if partial is None or not ids:
            return set()
        failed = {i for i in ids if partial.random() < self.faults.partial_items}
        return failed or {partial.choice(ids)}

    def _batch_read(self, params, body, partial, **_):
        object_type = params["type"]
        inputs = self._batch_inputs(body)
        props = [p for p in body.get("properties") or [] if p]
        ids = [str(i.get("id")) for i in inputs]
        missing = [i for i in ids if self.portal.resolve(object_type, i) is None]
        failed = self._partial_fail([i for i in ids if i not in missing], partial)
        answering = dict.fromkeys(self.portal.resolve(object_type, i) for i in ids if i not in missing and i not in failed)
        results = [self._record(object_type, i, props) for i in answering]
        errors = []
        if missing:
            errors.append(_error("error", "OBJECT_NOT_FOUND", f"Could not get some {SINGULAR[object_type].upper()} "
                                 "objects, they may be deleted or not exist. Check that ids are valid.",
                                 context={"ids": missing}))
        if failed:
            errors.append(_error("error", "INTERNAL_ERROR", "Some objects could not be read; retry them.",
                                 context={"ids": sorted(failed)}))
        return self._batch_answer(results, errors)

    def _check_value(self, object_type: str, name: str, value: Any) -> str | None:
        spec = self.portal.properties[object_type].get(name)
        if spec is None:
            return f'Property "{name}" does not exist'
        if spec.get("calculated") or spec.get("fieldType") == "calculation_equation" or (
                spec.get("modificationMetadata") or {}).get("readOnlyValue"):
            return f'"{name}" is a calculated or read-only property and cannot be set'
        if value in (None, ""):
            return None
        if spec["type"] == "number":
            try:
                float(value)
            except (TypeError, ValueError):
                return f'"{value}" is not a valid number for {name}'
        if spec["type"] == "bool" and str(value).lower() not in ("true", "false"):
            return f'"{value}" is not a valid boolean for {name}'
        if spec["type"] == "enumeration" and spec.get("options") and str(value) not in {
                o["value"] for o in spec["options"]}:
            return f'"{value}" was not one of the allowed options for {name}'
        return None

    def _batch_update(self, params, body, partial, **_):
        object_type = params["type"]
        inputs = self._batch_inputs(body)
        ids = [str(i.get("id")) for i in inputs]
        if len(set(ids)) != len(ids):
            raise ApiError(400, "VALIDATION_ERROR", "Duplicate IDs found in batch input")
        problems = [m for i in inputs for n, v in (i.get("properties") or {}).items()
                    if (m := self._check_value(object_type, n, v))]
        if problems:
            raise ApiError(400, "VALIDATION_ERROR", "Property values were not valid: " + "; ".join(problems[:5]))
        missing = [i for i in ids if i not in self.portal.objects[object_type]]
        failed = self._partial_fail([i for i in ids if i not in missing], partial)
        results = []
        stamp = _now()
        for item in inputs:
            object_id = str(item["id"])
            if object_id in missing or object_id in failed:
                continue
            record = self.portal.objects[object_type][object_id]
            for name, value in (item.get("properties") or {}).items():
                record["properties"][name] = None if value in (None, "") else str(value)
            record["properties"]["hs_lastmodifieddate"] = stamp
            record["updatedAt"] = stamp
            self.portal.recompute(object_type, object_id)
            self.portal.update_counts[(object_type, object_id)] += 1
            results.append(self._record(object_type, object_id, list(item.get("properties") or {})))
        errors = []
        if missing:
            errors.append(_error("error", "OBJECT_NOT_FOUND", "Could not update some objects, they may be deleted "
                                 "or not exist.", context={"ids": missing}))
        if failed:
            errors.append(_error("error", "INTERNAL_ERROR", "Some updates failed; retry them.",
                                 context={"ids": sorted(failed)}))
        return self._batch_answer(results, errors)

    def _search(self, params, body, **_):
        object_type = params["type"]
        limit = int(body.get("limit") or 10)
        if limit > 200:
            raise ApiError(400, "VALIDATION_ERROR", f"limit must be at most 200, got {limit}")
        start = int(body.get("after") or 0)
        if start + limit > 10_000:
            raise ApiError(400, "VALIDATION_ERROR", "search results are limited to 10,000")
        ops = {"EQ": operator.eq, "NEQ": operator.ne, "GT": operator.gt, "GTE": operator.ge, "LT": operator.lt,
               "LTE": operator.le}

        def match(props: dict[str, Any], flt: dict[str, Any]) -> bool:
            value, op = props.get(flt.get("propertyName")), flt.get("operator", "EQ")
            if op == "HAS_PROPERTY":
                return value not in (None, "")
            if op == "NOT_HAS_PROPERTY":
                return value in (None, "")
            if op == "IN":
                return value in (flt.get("values") or [])
            if value is None or op not in ops:
                return False
            target = flt.get("value")
            try:
                return ops[op](float(value), float(target))
            except (TypeError, ValueError):
                return ops[op](str(value), str(target))

        groups = body.get("filterGroups") or []
        hits = [i for i in self.portal.order[object_type]
                if not groups or any(all(match(self.portal.objects[object_type][i]["properties"], f)
                                         for f in g.get("filters") or []) for g in groups)]
        page = hits[start:start + limit]
        out: dict[str, Any] = {"total": len(hits),
                               "results": [self._record(object_type, i, body.get("properties")) for i in page]}
        if start + limit < len(hits):
            out["paging"] = {"next": {"after": str(start + limit)}}
        return 200, out

    # --- handlers: properties ---
    def _properties(self, params, **_):
        return 200, {"results": list(self.portal.properties[params["type"]].values())}

    def _get_property(self, params, **_):
        spec = self.portal.properties[params["type"]].get(params["name"])
        if spec is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property {params['name']}")
        return 200, spec

    def _groups(self, params, **_):
        return 200, {"results": list(self.portal.groups[params["type"]].values())}

    def _create_group(self, params, body, **_):
        name = str(body.get("name") or "")
        if not PROPERTY_NAME.match(name) or not body.get("label"):
            raise ApiError(400, "VALIDATION_ERROR", "a group needs a valid name and a label")
        if name in self.portal.groups[params["type"]]:
            raise ApiError(409, "OBJECT_ALREADY_EXISTS", f"A property group named '{name}' already exists.")
        self.portal.ensure_group(params["type"], name, body["label"])
        return 201, self.portal.groups[params["type"]][name]

    def _validate_formula(self, object_type: str, formula: str) -> None:
        try:
            names = formula_names(formula)
        except (SyntaxError, ValueError) as exc:
            raise ApiError(400, "VALIDATION_ERROR", f"invalid calculation formula: {exc}") from None
        known = self.portal.properties[object_type]
        bad = sorted(n for n in names if n not in known or known[n]["type"] != "number")
        if bad:
            raise ApiError(400, "VALIDATION_ERROR", f"calculation formula refers to unknown or non-number "
                           f"properties: {', '.join(bad)}")

    def _create_property(self, params, body, **_):
        object_type = params["type"]
        name = str(body.get("name") or "")
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
        if missing:
            raise ApiError(400, "VALIDATION_ERROR", f"missing field(s): {', '.join(missing)}")
        if not PROPERTY_NAME.match(name):
            raise ApiError(400, "VALIDATION_ERROR", f"invalid property name {name!r}")
        if name in self.portal.properties[object_type]:
            raise ApiError(409, "OBJECT_ALREADY_EXISTS", f"Property named '{name}' already exists.")
        if body["groupName"] not in self.portal.groups[object_type]:
            raise ApiError(400, "VALIDATION_ERROR", f"property group {body['groupName']} does not exist")
        custom = sum(1 for spec in self.portal.properties[object_type].values() if not spec.get("hubspotDefined"))
        if self.property_limit is not None and custom >= self.property_limit:
            raise ApiError(400, "VALIDATION_ERROR", f"You have reached your limit of {self.property_limit} custom "
                           f"properties for {object_type}.", subCategory="PropertyValidationError.LIMIT_EXCEEDED")
        calculated = body.get("fieldType") == "calculation_equation"
        if calculated:
            if not self.allow_calculated:
                raise ApiError(400, "VALIDATION_ERROR", "This portal has reached its limit of calculated "
                               "properties (or its tier does not include them).")
            if not body.get("calculationFormula"):
                raise ApiError(400, "VALIDATION_ERROR", "calculation_equation needs a calculationFormula")
            self._validate_formula(object_type, body["calculationFormula"])
        stamp = _now()
        spec = {
            "name": name, "label": body["label"], "type": body["type"], "fieldType": body["fieldType"],
            "groupName": body["groupName"], "description": body.get("description") or "",
            "options": [{"label": o.get("label"), "value": o.get("value"), "hidden": bool(o.get("hidden")),
                         "displayOrder": o.get("displayOrder", i)} for i, o in enumerate(body.get("options") or [])],
            "displayOrder": body.get("displayOrder", -1), "hidden": bool(body.get("hidden")),
            "formField": bool(body.get("formField")), "hubspotDefined": False, "calculated": calculated,
            "modificationMetadata": _modification_metadata(False, calculated),
            "createdAt": stamp, "updatedAt": stamp, "archived": False,
        }
        if calculated:
            spec["calculationFormula"] = body["calculationFormula"]
        self.portal.properties[object_type][name] = spec
        if calculated:
            for object_id in self.portal.order[object_type]:
                self.portal.recompute(object_type, object_id)
        return 201, spec

    def _update_property(self, params, body, **_):
        object_type = params["type"]
        spec = self.portal.properties[object_type].get(params["name"])
        if spec is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property {params['name']}")
        if spec.get("hubspotDefined"):
            raise ApiError(400, "VALIDATION_ERROR", "HubSpot-defined properties cannot be changed")
        if "calculationFormula" in body and body["calculationFormula"]:
            self._validate_formula(object_type, body["calculationFormula"])
        for key in ("label", "description", "groupName", "calculationFormula", "hidden", "displayOrder"):
            if key in body and body[key] is not None:
                spec[key] = body[key]
        if "options" in body and body["options"] is not None:
            spec["options"] = [{"label": o.get("label"), "value": o.get("value"), "hidden": bool(o.get("hidden")),
                                "displayOrder": o.get("displayOrder", i)} for i, o in enumerate(body["options"])]
        spec["updatedAt"] = _now()
        if spec.get("calculated"):
            for object_id in self.portal.order[object_type]:
                self.portal.recompute(object_type, object_id)
        return 200, spec

    def _archive_property(self, params, **_):
        """Archive a property (HubSpot's delete): gone from the list, its definition kept among the archived."""
        spec = self.portal.properties[params["type"]].get(params["name"])
        if spec is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property {params['name']}")
        if spec.get("hubspotDefined"):
            raise ApiError(400, "VALIDATION_ERROR", "HubSpot-defined properties cannot be archived")
        self.portal.archived_properties[params["type"]][params["name"]] = {**spec, "archived": True}
        del self.portal.properties[params["type"]][params["name"]]
        return 204, None

    def _archive_group(self, params, **_):
        if self.portal.groups[params["type"]].pop(params["name"], None) is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Unable to find property group {params['name']}")
        return 204, None

    # --- handlers: associations, owners ---
    def _labels(self, params, **_):
        labels = self.portal.labels[(params["from"], params["to"])]
        return 200, {"results": [self.portal.label_of(params["from"], params["to"], t) for t in sorted(labels)]}

    def _linked(self, from_type: str, to_type: str, object_id: str) -> list[dict[str, Any]]:
        linked = self.portal.assoc[(from_type, to_type)].get(object_id) or {}
        return [{"toObjectId": to_id, "associationTypes": [self.portal.label_of(from_type, to_type, t) for t in types]}
                for to_id, types in linked.items()]

    def _assoc_batch_read(self, params, body, **_):
        inputs = self._batch_inputs(body, limit=1000)
        results, errors = [], []
        for item in inputs:
            object_id = str(item.get("id"))
            linked = self._linked(params["from"], params["to"], object_id)
            if not linked:
                errors.append(_error("error", "OBJECT_NOT_FOUND", f"No {SINGULAR.get(params['to'])} is associated "
                                     f"with {SINGULAR.get(params['from'])} {object_id}.",
                                     subCategory="crm.associations.NO_ASSOCIATIONS_FOUND",
                                     context={"fromObjectId": [object_id]}))
                continue
            start = int(item.get("after") or 0)
            page = {"from": {"id": object_id}, "to": linked[start:start + 500]}
            if start + 500 < len(linked):
                page["paging"] = {"next": {"after": str(start + 500)}}
            results.append(page)
        return self._batch_answer(results, errors)

    def _assoc_page(self, params, query, **_):
        limit = min(int((query.get("limit") or ["500"])[0]), 500)
        start = int((query.get("after") or ["0"])[0] or 0)
        linked = self._linked(params["type"], params["to"], params["id"])
        out: dict[str, Any] = {"results": linked[start:start + limit]}
        if start + limit < len(linked):
            out["paging"] = {"next": {"after": str(start + limit)}}
        return 200, out

    def _pipelines(self, params, **_):
        """Every pipeline of an object type with its stages (HubSpot's answer has no paging)."""
        return 200, {"results": self.portal.pipelines.get(params["type"], [])}

    def _owners(self, query, **_):
        """Active owners, or with archived=true only the deactivated ones (HubSpot lists them apart)."""
        limit = min(int((query.get("limit") or ["100"])[0]), 500)
        start = int((query.get("after") or ["0"])[0] or 0)
        archived = (query.get("archived") or ["false"])[0].lower() == "true"
        owners = [o for o in self.portal.owners if bool(o.get("archived")) == archived]
        out: dict[str, Any] = {"results": owners[start:start + limit]}
        if start + limit < len(owners):
            out["paging"] = {"next": {"after": str(start + limit)}}
        return 200, out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # headers and body leave in one write (no Nagle / delayed-ACK stalls)
    disable_nagle_algorithm = True
    sandbox: Sandbox

    def log_message(self, format: str, *args: Any) -> None:  # quiet: never log request lines or headers
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, payload, extra = self.sandbox.handle(self.command, self.path, headers, body)
        except Exception as exc:  # an answer, never a dropped connection
            status, payload, extra = 500, _error("error", "INTERNAL_ERROR", f"{type(exc).__name__}"), {}
        data = b"" if status == 204 else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


# ----- entry points ------------------------------------------------------------------------------------------
def sandbox_from_snapshot(snapshot_dir: str | Path | None, config: PortalConfig | None = None, **kwargs: Any) -> Sandbox:
    """A Sandbox seeded from a canonical snapshot folder (or empty when `snapshot_dir` is None)."""
    from hsutils.snapshot import load_snapshot

    config = config or load_config()
    if snapshot_dir is None:
        return Sandbox(portal=Portal(), **kwargs)
    snapshot = load_snapshot(snapshot_dir)
    portal = seed_portal(snapshot.tables, config, snapshot.manifest.created_at)
    return Sandbox(portal=portal, **kwargs)


def serve_in_thread(snapshot_dir: str | Path | None, port: int = 0, token: str | None = None,
                    config: PortalConfig | None = None, **kwargs: Any):
    """Start a stand-in seeded from `snapshot_dir` on 127.0.0.1 in a thread; return (url, token, stop)."""
    sandbox = sandbox_from_snapshot(snapshot_dir, config=config, token=token, **kwargs)
    url = sandbox.start(port=port)
    return url, sandbox.token, sandbox.stop


def demo_sync(snapshot_dir: str | Path, out: str | Path, model: str | Path | None = None,
              scores: str | Path | None = None, usage_style: str = "segment", quiet: bool = True) -> str:
    """The demo path: start the stand-in from a snapshot, pull it into `out`, dry-run a push; return the summary."""
    from hsutils.hubspot.pull import pull
    from hsutils.hubspot.push import push
    from hsutils.snapshot import load_snapshot

    snapshot = load_snapshot(snapshot_dir)
    config = load_config(overrides={"core_events": snapshot.manifest.core_events})
    out = Path(out)
    usage_file = write_usage_export(snapshot["usage_events"], out.parent / f"{out.name}.usage.csv", usage_style)
    sandbox = Sandbox(portal=seed_portal(snapshot.tables, config, snapshot.manifest.created_at))
    url = sandbox.start()
    lines = []
    try:
        result = pull(out, host=url, token=sandbox.token, config=config, usage=usage_file, rate=None,
                      progress=not quiet)
        lines.append(result.summary())
        if model and scores:
            report = push(model, scores, host=url, token=sandbox.token, apply=False, config=config, rate=None)
            lines.append(report.summary())
    finally:
        sandbox.stop()
    return "\n".join(lines)


def cli_sandbox(args) -> int:
    """`hsutils sandbox`: serve the stand-in until interrupted, or run the demo pull (and dry-run push)."""
    import os

    from hsutils.hubspot.client import TOKEN_ENV

    if getattr(args, "pull_to", None):
        if not args.snapshot:
            from hsutils.errors import InputError

            raise InputError("sandbox --pull-to needs --snapshot DIR to seed the stand-in")
        print(demo_sync(args.snapshot, args.pull_to, model=args.model, scores=args.scores, quiet=False))
        return 0
    config = load_config(getattr(args, "config", None))
    token = os.environ.get(TOKEN_ENV, "").strip() or None
    try:
        faults = Faults.parse(getattr(args, "faults", None))
    except ValueError as exc:
        from hsutils.errors import InputError

        raise InputError(f"--faults: {exc}") from None
    rate = getattr(args, "rate", None)
    sandbox = sandbox_from_snapshot(args.snapshot, config=config, token=token or "sandbox", faults=faults,
                                    rate=int(rate) if rate else None)
    url = sandbox.start(port=args.port)
    source = f"seeded from {args.snapshot}" if args.snapshot else "empty"
    who = f"the token in {TOKEN_ENV}" if token else "the bearer token 'sandbox' (no HUBSPOT_ACCESS_TOKEN was set)"
    try:  # the announcement inside: a Ctrl-C as soon as it is read stops the stand-in as cleanly as any later
        print(f"HubSpot stand-in on {url} ({source}); it accepts {who}. Ctrl-C stops it.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
        print("stand-in stopped", file=sys.stderr)
    return 0
