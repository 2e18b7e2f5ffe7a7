"""Portal configuration: which HubSpot objects, properties and values make up each canonical table.

The defaults live in `portal.example.yml` beside this module; a user's YAML file is merged over them, so a
portal only states what differs. The same configuration drives the pull (portal -> canonical) and the local
stand-in's seeding (canonical -> portal), so the two stay inverse of each other.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsutils.errors import InputError
from hsutils.files import load_yaml_text, read_yaml_mapping, yes_no_setting

EXAMPLE_CONFIG = Path(__file__).with_name("portal.example.yml")
ENGAGEMENT_OBJECTS = ("emails", "meetings", "calls", "notes")
ENGAGEMENT_TYPE = {"emails": "email", "meetings": "meeting", "calls": "call", "notes": "note"}
PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
TOP_KEYS = {"core_events", "login_event", "companies", "contacts", "deals", "tickets", "engagements", "surveys",
            "usage", "push"}


def value_key(text: Any) -> str:
    """A portal value, label or setting as it is matched against the config: case ignored, and spaces around and
    within it ("Closed  won ", a stray tab) read as one space. Every lookup of a portal value goes through it."""
    return " ".join(str(text).split()).casefold()


def _string_keys(node: Any) -> Any:
    """`node` with every mapping key, at any depth, as a string, as the YAML files' keys are read (files.TextKeysLoader):
    an id given as a number (`12345`) merges with and matches the same id written in a file (pipeline and stage ids,
    values)."""
    if isinstance(node, dict):
        return {str(key): _string_keys(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_string_keys(value) for value in node]
    return node


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge `override` into a copy of `base` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class TableMap:
    """How one HubSpot object type maps onto (part of) a canonical table."""

    object_type: str
    properties: dict[str, str]
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    _keyed_values: dict[str, dict[str, Any]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def portal_properties(self) -> list[str]:
        return sorted({p for p in self.properties.values() if p})

    def to_canonical(self, column: str, raw: str | None) -> Any:
        """Translate a portal value of `column` through `values` (matched by value_key); an unmapped value passes
        without the spaces around it, as a snapshot file's text is read."""
        if raw is None or raw == "":
            return self.defaults.get(column)
        mapping = self.values.get(column) or {}
        if raw in mapping:
            return mapping[raw]
        return self._value_keys(column).get(value_key(raw), str(raw).strip())

    def _value_keys(self, column: str) -> dict[str, Any]:
        """{value_key(portal value): canonical value} of `column`, built once per column."""
        if column not in self._keyed_values:
            self._keyed_values[column] = {value_key(k): v for k, v in (self.values.get(column) or {}).items()}
        return self._keyed_values[column]

    def to_portal(self, column: str, value: Any) -> Any:
        """The portal value for a canonical value (first matching entry of `values`, else the value itself)."""
        for portal_value, canonical in (self.values.get(column) or {}).items():
            if canonical == value:
                return portal_value
        return value


@dataclass
class PortalConfig:
    """The merged portal configuration (see portal.example.yml for every key); `user` holds what the user's file
    and overrides set themselves, so a built-in default can be told from a choice the user made."""

    raw: dict[str, Any]
    source: str = "defaults"
    user: dict[str, Any] = field(default_factory=dict)

    def set_by_user(self, *keys: str) -> bool:
        """True when the user's file or overrides set the key at `keys` (e.g. "deals", "properties", "seats")."""
        node: Any = self.user
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return True

    # ----- tables --------------------------------------------------------------------------------------------
    def table(self, name: str) -> TableMap:
        spec = self.raw[name]
        return TableMap(
            object_type=spec.get("object", name),
            properties={k: v for k, v in (spec.get("properties") or {}).items() if v},
            values={k: {str(pv): cv for pv, cv in (m or {}).items()} for k, m in (spec.get("values") or {}).items()},
            defaults=dict(spec.get("defaults") or {}),
        )

    def engagement(self, object_type: str) -> TableMap:
        spec = (self.raw.get("engagements") or {}).get(object_type) or {}
        return TableMap(
            object_type=object_type,
            properties={k: v for k, v in (spec.get("properties") or {}).items() if v},
            values={k: {str(pv): cv for pv, cv in (m or {}).items()} for k, m in (spec.get("values") or {}).items()},
            defaults=dict(spec.get("defaults") or {}),
        )

    @property
    def domain_property(self) -> str | None:
        return self.raw["companies"].get("domain_property")

    @property
    def roles(self) -> dict[str, Any]:
        return self.raw["contacts"].get("roles") or {}

    @property
    def deals(self) -> dict[str, Any]:
        return self.raw["deals"]

    @property
    def pipelines(self) -> dict[str, dict[str, Any]]:
        return {str(k): v for k, v in (self.raw["deals"].get("pipelines") or {}).items()}

    @property
    def core_events(self) -> list[str]:
        return [str(e) for e in self.raw.get("core_events") or []]

    @property
    def usage_file(self) -> Path | None:
        """The product usage export the config names (`usage.file`, relative to the config file), or None."""
        name = (self.raw.get("usage") or {}).get("file")
        if not name:
            return None
        path = Path(str(name)).expanduser()
        return path if path.is_absolute() or self.source == "defaults" else Path(self.source).parent / path

    @property
    def usage_columns(self) -> dict[str, list[str]]:
        cols = (self.raw.get("usage") or {}).get("columns") or {}
        return {k: [v] if isinstance(v, str) else list(v or []) for k, v in cols.items()}

    @property
    def push(self) -> dict[str, Any]:
        return self.raw["push"]

    # ----- deals -------------------------------------------------------------------------------------------
    @property
    def term_months(self) -> int:
        """Months a deal's term lasts when the portal has no term end property (`deals.term_months`)."""
        return self.deals["term_months"]

    def deal_type_and_stage(self, pipeline: str | None, stage: str | None, deal_type_raw: str | None,
                            portal_stages: Mapping[str, Mapping[str, str]] | None = None
                            ) -> tuple[str, str, str] | None:
        """Canonical (deal_type, stage, where the stage came from) of a deal, or None when its pipeline is not
        configured. The stage is the one the user's config lists ("config"), else the one HubSpot's own pipeline
        metadata gives (`portal_stages`, {pipeline id: {stage id: open | won | lost}}): "hubspot" where the built-in
        defaults list the stage otherwise or not at all, "defaults" where they agree; else the built-in defaults'
        ("defaults"), else open ("unlisted")."""
        spec = self.pipelines.get(str(pipeline)) if pipeline is not None else None
        if spec is None:
            return None
        deal_type = self.deal_type_of(deal_type_raw) or spec.get("deal_type", "new")
        user = self.user_stages(str(pipeline))
        listed = {str(k): v for k, v in (spec.get("stages") or {}).items()}
        from_portal = ((portal_stages or {}).get(str(pipeline)) or {}).get(str(stage))
        if str(stage) in user:
            return deal_type, user[str(stage)], "config"
        if from_portal is not None:
            return deal_type, from_portal, "defaults" if listed.get(str(stage)) == from_portal else "hubspot"
        if str(stage) in listed:
            return deal_type, listed[str(stage)], "defaults"
        return deal_type, "open", "unlisted"

    def deal_type_of(self, raw: str | None) -> str | None:
        """The canonical deal type a deal type property value maps to (deals.deal_type_values, case ignored), or
        None for an empty or unmapped value."""
        mapping = {value_key(k): v for k, v in (self.deals.get("deal_type_values") or {}).items()}
        return mapping.get(value_key(raw)) if raw else None

    @property
    def reads_unlisted_pipelines(self) -> bool:
        """Whether deals in pipelines deals.pipelines does not list are read where their deal type property and
        HubSpot's stage metadata classify them (deals.unlisted_pipelines: by_deal_type), or all left out (skip)."""
        return self.deals.get("unlisted_pipelines", "by_deal_type") == "by_deal_type"

    def user_stages(self, pipeline: str) -> dict[str, str]:
        """{stage id: open | won | lost} the user's own config lists under deals.pipelines.<pipeline>.stages (the
        user's keys are text, as load_config reads them)."""
        spec = ((self.user.get("deals") or {}).get("pipelines") or {}).get(pipeline) or {}
        return {str(k): v for k, v in ((spec.get("stages") if isinstance(spec, dict) else None) or {}).items()}

    def deal_portal_values(self, deal_type: str, stage: str) -> tuple[str, str, str | None]:
        """Inverse of deal_type_and_stage: (pipeline id, stage id, deal type property value)."""
        pipelines = self.pipelines
        if not pipelines:
            raise InputError("portal config: deals.pipelines is empty; list at least one pipeline")
        chosen = next((pid for pid, spec in pipelines.items() if spec.get("deal_type") == deal_type), None)
        chosen = chosen or next(iter(pipelines))
        stages = {str(k): v for k, v in (pipelines[chosen].get("stages") or {}).items()}
        stage_id = next((sid for sid, canon in stages.items() if canon == stage), None)
        if stage_id is None:
            stage_id = f"{stage}_stage" if stage != "open" else "open_stage"
        type_value = next((pv for pv, cv in (self.deals.get("deal_type_values") or {}).items() if cv == deal_type),
                          deal_type)
        return chosen, stage_id, type_value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PortalConfig:
    """Load the example configuration, merge a user's YAML file and `overrides` over it, and check it."""
    base = load_yaml_text(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    source = "defaults"
    user: dict[str, Any] = {}
    if path:
        path = Path(path)
        user = read_yaml_mapping(path, "portal config")
        unknown = sorted(set(user) - TOP_KEYS)
        if unknown:
            raise InputError(f"portal config {path}: unknown section(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(TOP_KEYS))}")
        source = str(path)
    user = _merge(user, _string_keys(overrides or {}))
    base = _merge(base, user)
    config = PortalConfig(raw=base, source=source, user=user)
    _check(config)
    return config


def _check(config: PortalConfig) -> None:
    push = config.push
    for key in ("group", "prefix"):
        if not isinstance(push.get(key), str) or not PROPERTY_NAME.match(push[key].rstrip("_") or "x"):
            raise InputError(f"portal config ({config.source}): push.{key} must be lowercase letters, digits, "
                             f"underscores, starting with a letter (got {push.get(key)!r})")
    calculated = yes_no_setting(push.get("calculated_property", True))
    if calculated is None:
        raise InputError(f"portal config ({config.source}): push.calculated_property must be true or false "
                         f"(got {push.get('calculated_property')!r})")
    push["calculated_property"] = calculated
    months = config.deals.get("term_months")
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 120:
        raise InputError(f"portal config ({config.source}): deals.term_months must be a whole number of months "
                         f"from 1 to 120 (got {months!r})")
    unlisted = config.deals.get("unlisted_pipelines", "by_deal_type")
    if unlisted not in ("by_deal_type", "skip"):
        raise InputError(f"portal config ({config.source}): deals.unlisted_pipelines must be by_deal_type or skip "
                         f"(got {unlisted!r})")
    for pid, spec in config.pipelines.items():
        if not isinstance(spec, dict):
            raise InputError(f"portal config ({config.source}): deals.pipelines.{pid} must be a mapping")
        bad = {s: v for s, v in (spec.get("stages") or {}).items() if v not in ("open", "won", "lost")}
        if bad:
            raise InputError(f"portal config ({config.source}): deals.pipelines.{pid}.stages maps to "
                             f"{sorted(set(bad.values()))}; use open, won or lost")
