"""The signal registry: every account signal is a named, documented polars computation at weekly as-of dates.

A signal is computed for the panel's rows, one per (company, as-of) while the company is a customer. It sees only
rows dated at or before the as-of moment: the window helpers of `SignalContext` enforce that, so a signal built
from them cannot look ahead. Each signal has a family ("value": what the field found to predict churn;
"activity": what feels good but predicts little), a unit, a direction (+1: higher is healthier, -1: higher is
riskier, 0: no fixed direction) and `point_source` (False for days_to_renewal: it sets urgency, it earns no
points).

How the computation works (and why it is fast): as-of dates lie on a weekly grid, and the panel rows (`grid`)
are the customers at each as-of, found on a (week x company) array of contract terms. Companies are integer codes
in the sorted order of company_id. Windowed sums over the smaller tables (engagements, tickets, surveys) are
exact for windows of any number of days: a row dated t lies in the window (as_of - d, as_of] of exactly the
weeks from the first as-of at or after t to the last one before t + d, so it adds its value to a (week x
customer) array at the first of those weeks and takes it away after the last; running totals over the weeks
give every window at once. A latest value is the highest-ranked row (by time) of each (week, customer) cell,
carried forward over the weeks. Usage events, the largest table, are encoded once per panel into integer
arrays (week x customer cell, exact user code, event code, count; `usage_codes()`). Their id columns are
dictionary (Categorical) columns, so the encoding reads codes and hashes no text; a thread reads them while the
calling thread finds the customer rows, and a background thread then computes the usage signals while the
calling thread computes the others. Usage sums are counts per cell; active users come from the weeks where a
user's "active in the window" flag starts or ends on a (week x user) activity bitmap, summed per company (or
from sorted intervals when a user id appears in several companies); feature breadth comes from per-cell event
bit sets. Other distinct counts become per-value activity intervals whose starts and ends
are counted cumulatively. No Python loop runs over companies or dates.

Windows are half-open on the left: "the 28 days up to as-of" is (as_of - 28 days, as_of].

Built-in signals and how a missing input is represented:

value
- core_depth: value-moment events (the manifest's `core_events`, summed `count`) in 28 days per active user
  (active seat = distinct user with any usage event in the 28 days). 0 when nobody was active.
- core_depth_trend: OLS slope of the 8 weekly core-event counts ending at as-of (oldest to newest), divided by
  their mean: the relative weekly change (+0.1 = growing 10 % of the average per week). 0 when there were no
  core events in the 8 weeks; null while the company has been a customer for under 8 weeks.
- eb_engagement: weighted interactions of economic-buyer contacts over 90 days: an email reply (email marked
  replied, or an inbound email) 1, a meeting 1, a QBR or renewal-prep meeting 2, a call 1. 0 when none.
- eb_days_since_touch: days since the economic buyer's last two-way touch (reply, inbound email, meeting,
  call), capped at 365; 365 when the buyer was never touched or no economic buyer is known.
- support_negative_share: share of tickets created in the last 60 days that were negative or escalated. 0 when
  no ticket was created (no complaints).
- support_negative_trend: that share minus the share in the 60 days before (days 61-120); a window without
  tickets counts as share 0.
- seat_utilisation: active users in 28 days / contracted seats (seats of the current term plus won expansions
  in force). Null when no seats are contracted. May exceed 1.
- days_to_renewal: days from as-of to the end of the current term (urgency; not a point source).

activity
- email_open_rate: opened / outbound emails to the company's contacts in 90 days; null when none was sent.
- logins_28d: login events (summed `count`) in 28 days; the event name is the manifest's `login_event` key,
  "login" by default. 0 when none.
- ticket_volume_90d: tickets created in 90 days. 0 when none.
- latest_nps: score of the latest NPS response at or before as-of; null when there is none.
- feature_breadth_28d: distinct usage events other than the login event and the core events in 28 days. 0
  when none.

An economic-buyer interaction counts only when its contact existed at the time of the interaction
(`contacts.created_at <= occurred_at`), so contacts created later never change the past.

Adding your own product's signal: register a function that returns one value per (cid, k) row. The context's
helpers do the windowing and the point-in-time guarantee::

    import polars as pl
    from hsutils.signals import SignalContext, register_signal

    @register_signal("integrations_synced_28d", family="value", unit="syncs", direction=+1)
    def integrations_synced_28d(ctx: SignalContext) -> pl.DataFrame:
        "Integration syncs run in the 28 days up to as-of."
        return ctx.window_sum("usage_events", "occurred_at", pl.col("count"), days=28,
                              where=pl.col("event") == "integration_synced")

`build_panel` then carries an `integrations_synced_28d` column. The `hsutils` commands and the report's notebooks
run in processes of their own: save the definitions in a file and name it with `--signal-module my_signals.py`
(panel, fit, score, evaluate, report) or `signal_modules: [my_signals.py]` in the report's params.yml;
`load_signal_modules` imports such files, once per process. Other helpers:
`window_sums` (several sums and windows in one pass), `window_distinct` (distinct values in a window), `latest`
(latest value at or before as-of), `weekly` (weekly totals for trend-like arithmetic, read with `.at(shift)`),
`usage_weekly()` (usage counts per company, week and event, as a table), the fast usage helpers for windows of
whole weeks (up to 18) filtered by an expression on `event` (`usage_window_sum`, `usage_weekly_totals`,
`usage_distinct_events`, `usage_active_users`; other windows fall back to the general helpers), `values(array)`
(a result from an array aligned with the grid) and `ctx.grid` (the panel's rows with contract columns).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import threading
import warnings
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hsutils.errors import InputError
from hsutils.schema import UTC_DATETIME

DAY_US = 86_400_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WEEK_US = 7 * DAY_US
KEYS = ["cid", "k"]  # internal row keys: company code and week index (as_of = anchor + k weeks)

FAMILIES = ("value", "activity")
TOUCH_CAP_DAYS = 365
TREND_WEEKS = 8
MAX_CUSTOMER_CELLS = 2**27  # (week x company) cells of the customer array; larger portals use joins
SHARED_LOOKBACK_WEEKS = 18  # weekly totals cover at least 120 days before the first as-of
PRESENCE_BYTES = 1 << 26  # memory for the (event x week x customer) presence array of one pass
CHUNK_ROWS = 1 << 20  # usage rows per chunk where the helpers work through the rows in pieces
DEFAULT_LOGIN_EVENT = "login"
ACTIVE_USER_DAYS = 28  # active seats: distinct users in the 28 days up to as-of


@dataclass(frozen=True)
class Signal:
    """One registered signal: metadata plus the polars computation `compute(ctx) -> frame[cid, k, value]`."""

    name: str
    family: str
    unit: str
    direction: int
    description: str
    compute: Callable[[SignalContext], pl.DataFrame | pl.LazyFrame]
    point_source: bool = True
    reads: tuple[str, ...] | None = None  # the tables it reads, when known (lets the panel share the work out)


SIGNALS: dict[str, Signal] = {}


def register_signal(
    name: str,
    *,
    family: str,
    unit: str,
    direction: int,
    description: str | None = None,
    point_source: bool = True,
    replace: bool = False,
    reads: tuple[str, ...] | None = None,
) -> Callable[[Callable[[SignalContext], Any]], Callable[[SignalContext], Any]]:
    """Decorator adding a signal to `SIGNALS`; the description defaults to the function's docstring.

    The function receives a `SignalContext` and returns a polars frame with columns cid, k and value (one row per
    panel row or fewer: absent rows become null). Use the context's helpers so only data at or before as-of is read.
    `reads` optionally names the tables the signal reads. Signals that read usage_events run in a background
    thread once the usage events are encoded, while the calling thread computes the others; a thread out of work
    takes the other's signals not yet started. A signal that declares nothing runs last, in the calling thread.
    """
    if family not in FAMILIES:
        raise InputError(f"signal {name}: family must be one of {'/'.join(FAMILIES)}, not {family!r}")
    if direction not in (-1, 0, 1):
        raise InputError(f"signal {name}: direction must be +1, -1 or 0, not {direction!r}")

    def decorator(func: Callable[[SignalContext], Any]) -> Callable[[SignalContext], Any]:
        if name in SIGNALS and not replace:
            raise InputError(f"signal {name} is already registered; pass replace=True to redefine it")
        text = description or " ".join((func.__doc__ or "").split()) or name
        SIGNALS[name] = Signal(name, family, unit, direction, text, func, point_source, reads)
        return func

    return decorator


def unregister_signal(name: str) -> None:
    """Remove a signal from the registry (e.g. a user's experiment)."""
    SIGNALS.pop(name, None)


def resolve_signals(names: list[str] | str | None) -> list[Signal]:
    """The registered signals for `names` (a list or comma-separated text; None = all), in registry order."""
    if names is None:
        return list(SIGNALS.values())
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in SIGNALS]
    if unknown:
        raise unknown_signals_error(unknown)
    if not names:
        raise InputError("no signal chosen: give at least one registered signal name")
    return [SIGNALS[n] for n in dict.fromkeys(names)]


def unknown_signals_error(unknown: Collection[str], subject: str = "unknown signal(s)") -> InputError:
    """The one-line error for signal names nobody registered: it names them, the registered ones, and how a
    signal of the user's own is loaded into a command or the report."""
    return InputError(
        f"{subject}: {', '.join(unknown)}; registered: {', '.join(SIGNALS)}; a signal of your own is loaded with "
        "--signal-module FILE.py (signal_modules: in the report's params.yml)"
    )


SIGNAL_MODULE_PREFIX = "hsutils_signal_module_"  # module names of signal files imported by load_signal_modules
_REGISTERED_BY: dict[str, list[str]] = {}  # module name -> the signals its import registered


def is_signal_module_file(spec: str | Path) -> bool:
    """True for a file path (ends in .py or holds a path separator), False for a dotted module name."""
    text = str(spec)
    return isinstance(spec, Path) or text.endswith(".py") or "/" in text or "\\" in text


def signal_module_spec(spec: str | Path) -> str:
    """A signal module as `load_signal_modules` takes it from any folder: a file as its absolute path, a dotted
    module name as it is."""
    return str(Path(spec).resolve()) if is_signal_module_file(spec) else str(spec)


def _module_name_for(path: Path) -> str:
    """A stable module name for a signal file: its stem plus a digest of its resolved path."""
    stem = re.sub(r"\W", "_", path.stem)
    return f"{SIGNAL_MODULE_PREFIX}{stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"


def _import_signal_module(spec: str | Path) -> str:
    """Import one signal module (a file or a dotted name) unless already imported; return its module name."""
    if not is_signal_module_file(spec):
        importlib.invalidate_caches()  # a module written since this process started is found too
        importlib.import_module(str(spec))
        return str(spec)
    path = Path(spec).resolve()
    name = _module_name_for(path)
    if name in sys.modules:
        return name
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return name


def load_signal_modules(specs: Iterable[str | Path] | None) -> list[str]:
    """Import the user's own signal definitions and return the names of the signals they registered.

    Each spec is the path of a .py file (relative to the current folder) or an importable dotted module name.
    Each module is imported once per process: a file under a name derived from its resolved path, so loading it
    again registers nothing twice. A missing file, a syntax error or an exception while importing is an
    InputError of one line, and the signals that module registered before it failed are taken back out.
    """
    names: list[str] = []
    for spec in specs or ():
        before = dict(SIGNALS)
        try:
            module_name = _import_signal_module(spec)
        except Exception as exc:  # the user's own code: any error is reported in one line, without a traceback
            SIGNALS.clear()
            SIGNALS.update(before)
            raise InputError(f"signal module {spec}: {type(exc).__name__}: {exc}") from None
        added = [name for name, signal in SIGNALS.items() if before.get(name) is not signal]
        if added or module_name not in _REGISTERED_BY:  # nothing added: imported before, not by this function
            _REGISTERED_BY[module_name] = added or [
                name for name, signal in SIGNALS.items() if getattr(signal.compute, "__module__", None) == module_name
            ]
        if not _REGISTERED_BY[module_name]:
            warnings.warn(f"signal module {spec} registered no signal", UserWarning, stacklevel=2)
        names.extend(n for n in _REGISTERED_BY[module_name] if n not in names)
    return names


def signal_table() -> pl.DataFrame:
    """The registry as a table (name, family, unit, direction, point_source, description)."""
    return pl.DataFrame(
        [
            {"name": s.name, "family": s.family, "unit": s.unit, "direction": s.direction,
             "point_source": s.point_source, "description": s.description}
            for s in SIGNALS.values()
        ]
    )


def login_event(manifest: Any) -> str:
    """The usage event that counts as a login: the manifest's `login_event`, default "login"."""
    return str(manifest.extra.get("login_event") or DEFAULT_LOGIN_EVENT)


def epoch_us(moment: datetime) -> int:
    """Exact microseconds from 1970 to a timezone-aware moment."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def _week_index(expr: pl.Expr, anchor: datetime) -> pl.Expr:
    """Week k whose as-of moment (anchor + k weeks) is the first at or after the timestamp: ceil division."""
    micros = (expr - pl.lit(anchor, dtype=UTC_DATETIME)).dt.total_microseconds()
    return (-((-micros) // WEEK_US)).cast(pl.Int32)


def _gather(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """table[index] (negative indexes count from the end), a chunk of rows at a time: numpy first converts an index
    array to its own index type, and chunks keep that copy small."""
    out = np.empty(index.shape, dtype=table.dtype)
    for lo in range(0, index.size, CHUNK_ROWS):
        np.take(table, index[lo:lo + CHUNK_ROWS], out=out[lo:lo + CHUNK_ROWS], mode="wrap")
    return out


def _any_in_last(rows: np.ndarray, first: int, weeks: int) -> np.ndarray:
    """Flags OR-ed over windows of weeks: for every row j >= first of `rows` (axis 0: consecutive weeks), rows
    j - weeks + 1 .. j OR-ed together, as a new array."""
    window = rows[first:].copy()
    for back in range(1, weeks):
        window |= rows[first - back:rows.shape[0] - back]
    return window


def _accumulate_weeks(ufunc: np.ufunc, weekly: np.ndarray) -> np.ndarray:
    """`ufunc` accumulated down axis 0 (weeks) of a C-ordered array, in place, one week after another: the same
    operations in the same order as `ufunc.accumulate(weekly, axis=0)`, several times faster, because each step
    runs over a contiguous row instead of striding across the rows."""
    for week in range(1, weekly.shape[0]):
        ufunc(weekly[week - 1], weekly[week], out=weekly[week])
    return weekly


def _take_rows(column: pl.Series, index: np.ndarray) -> pl.Series:
    """column[index] for positions `index` (a numpy array). Numbers and times with no null at those places are
    gathered with numpy: the kernel backs numpy's large arrays with huge pages, so a panel-sized column costs a few
    page faults instead of thousands, the larger part of its cost on a virtual machine. Other columns: polars."""
    dtype = column.dtype
    if (dtype.is_numeric() or dtype.is_temporal()) and (
        column.null_count() == 0 or column.is_not_null().to_numpy()[index].all()
    ):
        physical = column.to_physical()
        values = (physical.fill_null(0) if physical.null_count() else physical).to_numpy()
        return pl.Series(column.name, np.take(values, index)).cast(dtype)
    return column.gather(index)


def _plus(column: pl.Series, extra: np.ndarray) -> pl.Series:
    """column + extra (an array of whole numbers or reals, cast to the column's type first), with numpy when the
    column is Int64 or Float64 without nulls (see _take_rows)."""
    if column.null_count() == 0 and column.dtype in (pl.Int64, pl.Float64):
        values = column.to_numpy()
        return pl.Series(column.name, values + extra.astype(values.dtype, copy=False))
    return column + pl.Series(extra).cast(pl.Int64 if column.dtype.is_integer() else pl.Float64)


def _scatter(table: np.ndarray, index: np.ndarray, value: Any) -> None:
    """table[index] = value, a chunk of rows at a time (see `_gather`)."""
    for lo in range(0, index.size, CHUNK_ROWS):
        table[index[lo:lo + CHUNK_ROWS]] = value


@dataclass(frozen=True)
class WeeklyTotals:
    """Weekly totals per customer on a rectangle of weeks: `totals[name][p, j]` is company position p, week k0 + j.

    `tails[name][m]` holds the totals of only the last m days of each week. `at(shift)` reads the value `shift`
    weeks before each panel row's as-of, aligned with `SignalContext.grid`. The arrays may be laid out week by week
    in memory (a transposed view): `flat_index` addresses every panel row in the arrays' memory order and
    `week_step` is the distance in that order between two weeks of one company.
    """

    k0: int
    totals: dict[str, np.ndarray]
    tails: dict[str, dict[int, np.ndarray]]
    flat_index: np.ndarray  # place of every panel row (its company, the week of its as-of) in memory order
    reach: int = 0  # every panel row can be read up to `reach` weeks back within its company's row of the rectangle
    week_step: int = 1
    running: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)  # cumulative sums
    _base: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)

    @property
    def total(self) -> np.ndarray:
        """The totals of the first (often the only) value."""
        return next(iter(self.totals.values()))

    def at(self, shift: int = 0, array: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Values `shift` weeks before each panel row (of `total`, or of another array of the same layout), written
        to `out` when given; `shift` runs from 0 (the week ending at as-of) to `reach`."""
        if not 0 <= shift <= self.reach:  # outside the rectangle: a later week, or one before the totals start
            raise InputError(f"weekly totals reach 0 to {self.reach} weeks before each as-of, not {shift}"
                             " (ask weekly() for more lookback_weeks)")
        source = (self.total if array is None else array).ravel(order="K")  # a view: the arrays are contiguous
        if not self._base:  # read through a shifted view: no index array per shift
            self._base.append(self.flat_index - self.reach * self.week_step)
        return np.take(source[(self.reach - shift) * self.week_step:], self._base[0], out=out)

    def sum_back(self, weeks: int) -> np.ndarray:
        """Sum of the weekly totals over the `weeks` weeks ending at each panel row's as-of (added up in place)."""
        result = np.zeros(self.flat_index.size)
        buffer = np.empty(self.flat_index.size, dtype=self.total.dtype)
        for shift in range(weeks):
            result += self.at(shift, out=buffer)
        return result

    def window(self, name: str, days: int) -> np.ndarray:
        """Sum over (as_of - days, as_of] of value `name`, aligned with the grid. Needs `days % 7` among the
        `tail_days` given to `weekly` and whole weeks within its lookback."""
        if days < 1:
            raise InputError(f"window of {days} days: a window must last at least one day")
        whole, tail = divmod(days, 7)
        if tail and tail not in self.tails[name]:
            raise InputError(f"window of {days} days: ask weekly() for tail_days=({tail},) to cover the part week")
        if name not in self.running:
            totals = self.totals[name]
            self.running[name] = np.cumsum(totals, axis=1, out=np.empty_like(totals))  # same memory layout
        running = self.running[name]
        result = self.at(0, running) - self.at(whole, running) if whole else np.zeros(self.flat_index.size)
        if tail:
            result = result + self.at(whole, self.tails[name][tail])
        return result


@dataclass(frozen=True)
class UsageCodes:
    """The usage rows the panel can look at, as integers: one entry per row of the panel's customers.

    `cell` is the row's place in the (week x customer position) rectangle that starts at week `k0`, `width` weeks
    long and `n_positions` customers wide, laid out week by week: cell = (week - k0) * n_positions + position, so
    rows in time order touch nearby cells. `user` holds exact, dense codes of user_id (equal codes = equal ids,
    0 .. n_users - 1; `users_complete` is False when some user ids are missing); `event` indexes `event_names`
    (-1: no event).
    """

    k0: int
    width: int
    n_positions: int
    members: np.ndarray  # company code of each position
    cell: np.ndarray
    week: np.ndarray  # week - k0 of every row (int16)
    company: np.ndarray  # company code cid of every row
    user: np.ndarray
    event: np.ndarray
    count: np.ndarray
    event_names: pl.Series
    users_complete: bool = True
    n_users: int = 0  # user codes lie in 0 .. n_users - 1

    @property
    def k(self) -> np.ndarray:
        """Week index of every row."""
        return self.week.astype(np.int64) + self.k0

    @property
    def position(self) -> np.ndarray:
        """Customer position of every row."""
        return self.cell % self.n_positions


class SignalContext:
    """Everything a signal needs at the panel's as-of dates: the snapshot, the customer rows and window helpers.

    `grid` holds one row per (company, as-of) while the company is a customer, sorted by `k` (week index; as_of =
    anchor + k weeks) and `cid` (company code), with company_id, as_of, the current term (term_deal_id,
    term_start, term_end), contracted_seats, arr, tenure_start and active_seats. Helpers return frames with
    cid, k and value in the grid's row order (`values(array)` builds one from an array aligned with the grid).
    """

    def __init__(self, snapshot: Any, anchor: datetime, weeks: list[int], read_usage_early: bool = False,
                 code_early: Collection[str] = ()) -> None:
        """`read_usage_early` starts reading the usage events in a daemon thread while the customer rows are found
        (the panel does; it pays off when the usage helpers will be used); that thread then finds the company codes
        of the tables named in `code_early`."""
        self.snapshot = snapshot
        self.anchor = anchor
        self.weeks = sorted(set(weeks))
        self.manifest = snapshot.manifest
        self.login_event = login_event(snapshot.manifest)
        self.core_events = [str(e) for e in snapshot.manifest.core_events]
        # company codes follow the sorted company ids, so sorting by code sorts by company
        self.companies = (
            snapshot["companies"].select(pl.col("company_id").drop_nulls().unique().sort())
            .with_row_index("cid").with_columns(pl.col("cid").cast(pl.UInt32))
        )
        self._company_enum = pl.Enum(self.companies["company_id"])
        self.k_min, self.k_max = self.weeks[0], self.weeks[-1]
        self.as_of_max = self.as_of(self.k_max)
        self._anchor_us = epoch_us(anchor)
        self._cache: dict[Any, Any] = {}
        self.extra_tables: dict[str, pl.DataFrame] = {}
        self._grid: pl.DataFrame | None = None
        self._prefetch: Future | None = None
        self._prefetch_thread: int | None = None
        # the contract terms (cid, deal_id, term_end) and each grid row's term in them, when the rows were found
        # on the (week x company) array
        self.terms: pl.DataFrame | None = None
        self.term_of_row: np.ndarray | None = None
        self._usage_read: Future | None = None
        self._window_changes: dict[int, Future] = {}  # active-user window changes found by the usage-read thread
        self._weights_lock = threading.Lock()
        if read_usage_early:
            self._usage_read = Future()
            early = [t for t in code_early if t in self.snapshot.tables and t != "usage_events"]
            self._window_changes[ACTIVE_USER_DAYS // 7] = Future()
            threading.Thread(target=self._read_usage_into, args=(self._usage_read, early), name="hsutils-usage-read",
                             daemon=True).start()
        self._rows = self._customer_rows()
        # rectangle layout: customers of the grid (positions) x weeks
        grid_cids = self._rows["cid"].to_numpy()
        members = np.flatnonzero(np.bincount(grid_cids, minlength=self.companies.height))  # sorted, unique
        self._position_of_cid = np.full(self.companies.height + 1, -1, dtype=np.int32)
        self._position_of_cid[members] = np.arange(members.size)
        self.members = members
        self.n_positions = int(members.size)
        self.grid_position = self._position_of_cid[grid_cids].astype(np.int64)
        self.grid_week = self._rows["k"].to_numpy().astype(np.int64)

    @property
    def grid(self) -> pl.DataFrame:
        """The panel's rows with their contract columns and active_seats (see the class docstring)."""
        if self._grid is None:
            if self._rows.height:
                active = self.usage_active_users(days=ACTIVE_USER_DAYS)
                self._grid = self._rows.with_columns(active["value"].alias("active_seats"))
            else:
                self._grid = self._rows
        return self._grid

    @property
    def keys(self) -> pl.DataFrame:
        """The panel rows' keys (cid, k) in the grid's order, available before active_seats is known."""
        return self._rows.select(*KEYS)

    @property
    def contracts(self) -> pl.DataFrame:
        """The grid without active_seats: available at once, without reading the usage events."""
        return self._rows

    def run_in_background(self, work: Callable[[], Any]) -> Future:
        """Encode the usage events (the largest table), then run `work`, in a daemon thread; returns the future
        of work's result. Usage helpers called meanwhile from another thread wait for the encoding (and raise its
        error, if any)."""
        encoded: Future = Future()
        done: Future = Future()
        self._prefetch = encoded

        def run() -> None:
            self._prefetch_thread = threading.get_ident()
            try:
                if self._rows.height:
                    self.usage_active_users(days=ACTIVE_USER_DAYS)
                encoded.set_result(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting threads
                encoded.set_exception(exc)
                done.set_exception(exc)
                return
            try:
                done.set_result(work())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                done.set_exception(exc)

        threading.Thread(target=run, name="hsutils-usage", daemon=True).start()
        return done

    def _await_prefetch(self) -> None:
        """Wait for the background encoding of the usage events (and raise its error, if any)."""
        if self._prefetch is not None and threading.get_ident() != self._prefetch_thread:
            self._prefetch.result()

    # --- time ------------------------------------------------------------------------------------------------
    def as_of(self, k: int) -> datetime:
        """The as-of moment of week k."""
        return self.anchor + timedelta(weeks=k)

    def week_of(self, expr: pl.Expr) -> pl.Expr:
        """Week index of a timestamp expression (its row is visible from that week's as-of on)."""
        return _week_index(expr, self.anchor)

    def as_of_expr(self, k: pl.Expr | str = "k") -> pl.Expr:
        """The as-of moment of a week-index expression."""
        k = pl.col(k) if isinstance(k, str) else k
        return pl.lit(self.anchor, dtype=UTC_DATETIME) + pl.duration(weeks=k)

    # --- tables ----------------------------------------------------------------------------------------------
    def frame(self, name: str) -> pl.DataFrame:
        """A snapshot table, or a table added with `add_table`."""
        if name in self.extra_tables:
            return self.extra_tables[name]
        return self.snapshot[name]

    def add_table(self, name: str, frame: pl.DataFrame) -> None:
        """Make a prepared frame (with company_id and its time column) available to the helpers as `name`."""
        self.extra_tables[name] = frame
        self._cache.pop(("with_cid", name), None)

    def _add_coded_table(self, name: str, frame: pl.DataFrame) -> None:
        """add_table for a frame whose `cid` column already holds this context's company codes."""
        self.add_table(name, frame)
        self._cache[("with_cid", name)] = frame

    def company_code(self, expr: pl.Expr | str = "company_id") -> pl.Expr:
        """The company code cid of a company_id expression (null for a company not in the companies table)."""
        expr = pl.col(expr) if isinstance(expr, str) else expr
        return expr.cast(pl.String).cast(self._company_enum, strict=False).to_physical().cast(pl.UInt32).alias("cid")

    def _company_code_of(self, frame: pl.DataFrame, column: str = "company_id") -> pl.Expr:
        """The company code cid of `frame[column]`: read from the dictionary codes when the column is Categorical
        (no text is compared), else as `company_code`."""
        if frame.schema.get(column) != pl.Categorical or frame.height == 0:
            return self.company_code(column)
        lookup = pl.Series(self._cid_of_code(frame[column])).cast(pl.UInt32, strict=False)  # -1 (unknown): null
        return pl.lit(lookup).gather(pl.col(column).to_physical()).alias("cid")

    def _cid_of_code(self, ids: pl.Series) -> np.ndarray:
        """For a Categorical column of company ids: the company code cid of each dictionary code (-1: not a
        company), as an array indexed by the column's codes."""
        # every Categorical column shares one dictionary: the companies' own ids give their codes in it
        known = self.companies["company_id"].cast(pl.Categorical).to_physical().to_numpy()
        top = max(int(ids.to_physical().max() or 0), int(known.max(initial=0)))
        cid_of_code = np.full(top + 1, -1, dtype=np.int32)
        cid_of_code[known] = np.arange(known.size)
        return cid_of_code

    def _with_cid(self, name: str) -> pl.DataFrame:
        """The table with its company codes in column `cid` (computed once per table). A column of the table that
        is already called cid (an extra column of the portal's) is replaced: it is not this context's codes."""
        key = ("with_cid", name)
        if key not in self._cache:
            frame = self.frame(name)
            self._cache[key] = frame.with_columns(frame.select(self._company_code_of(frame)).to_series())
        return self._cache[key]

    def usage_weekly(self) -> str:
        """Name of a derived table: usage `count` summed per company, week and event, for the weeks the panel can
        look at (18 weeks before the first as-of on). Its `occurred_at` is the week's as-of moment, so it serves
        windows of whole weeks only; it is much smaller than the event table."""
        name = "usage_weekly"
        if name not in self.extra_tables:
            lf = self.table("usage_events", "occurred_at", days=7 * SHARED_LOOKBACK_WEEKS + 7)
            event = pl.col("event").cast(pl.Categorical)
            k_lo = self.k_min - SHARED_LOOKBACK_WEEKS - 2
            bits_k = max(1, (self.k_max - k_lo + 1).bit_length())
            # one integer key per (company, week, event) makes the grouping fast
            packed = (pl.col("cid").cast(pl.Int64) * 2 ** (32 + bits_k) + event.to_physical().cast(pl.Int64) * 2**bits_k
                      + (pl.col("k") - k_lo).cast(pl.Int64))
            sums = lf.group_by(packed.alias("_packed")).agg(pl.col("count").sum(), pl.col("event").first()).with_columns(
                (pl.col("_packed") // 2 ** (32 + bits_k)).cast(pl.UInt32).alias("cid"),
                (pl.col("_packed") % 2**bits_k + k_lo).cast(pl.Int32).alias("k"),
            )
            weekly = sums.select("cid", self.as_of_expr("k").alias("occurred_at"), "event", "count")
            self._add_coded_table(name, weekly.collect())
        return name

    def usage_codes(self) -> UsageCodes:
        """The usage rows of the panel's customers from 18 weeks before the first as-of to the last one, encoded
        once as integer arrays (week x customer cell, exact user code, event code, count) for the usage helpers."""
        self._await_prefetch()
        key = "usage_codes"
        if key in self._cache:
            return self._cache[key]
        k0, width = self._usage_weeks()
        n = max(self.n_positions, 1)
        cell_type = np.intp  # numpy's index type: bincount and ufunc.at take the cells without converting them
        read = self._usage_read.result() if self._usage_read is not None else self._read_usage()
        week, company, user, event, count = read["week"], read["cid"], read["user"], read["event"], read["count"]
        cell = np.empty(week.size, dtype=cell_type)
        every_row = True
        for lo in range(0, week.size, CHUNK_ROWS):  # chunks keep the temporaries small and reused
            position = self._position_of_cid[company[lo:lo + CHUNK_ROWS]]  # no company code (-1): -1
            np.multiply(week[lo:lo + CHUNK_ROWS], cell_type(n), out=cell[lo:lo + CHUNK_ROWS])
            cell[lo:lo + CHUNK_ROWS] += position
            every_row = every_row and bool(np.all((position >= 0) & (week[lo:lo + CHUNK_ROWS] >= 0)
                                                  & (week[lo:lo + CHUNK_ROWS] < width)))
        if not every_row:  # keep the panel's customers in the weeks it can look at
            keep = (self._position_of_cid[company] >= 0) & (week >= 0) & (week < width)
            cell, week, company, user, event, count = (a[keep] for a in (cell, week, company, user, event, count))
        codes = UsageCodes(k0=k0, width=width, n_positions=n, members=self.members, cell=cell, week=week,
                           company=company, user=user, event=event, count=count, event_names=read["event_names"],
                           users_complete=read["users_complete"], n_users=read["n_users"])
        self._cache[key] = codes
        return codes

    def _usage_weeks(self) -> tuple[int, int]:
        """First week k0 and number of weeks of the usage the helpers look at."""
        k0 = self.k_min - SHARED_LOOKBACK_WEEKS
        return k0, self.k_max - k0 + 1

    def _read_usage(self) -> dict[str, Any]:
        """The usage rows as numpy arrays, before the customers are known: week - k0 (clipped to -1 .. width),
        company code cid (-1 when none), exact user codes below n_users (dense, or the dictionary codes when those
        are nearly dense already), dense event codes (indexes of event_names; -1 without an event) and count."""
        k0, width = self._usage_weeks()
        usage = self.frame("usage_events")
        week_type = np.int16 if width < 2**15 else np.int32
        text = ("company_id", "user_id", "event")
        if all(usage.schema.get(c) == pl.Categorical for c in text) and not any(
            usage[c].null_count() for c in (*text, "occurred_at", "count")
        ):  # dictionary codes and times read in place with numpy: no text, and no polars work to wait for
            times = usage["occurred_at"].to_numpy().view(np.int64)
            week = np.empty(times.size, dtype=week_type)
            for lo in range(0, times.size, CHUNK_ROWS):
                chunk = self._week_of_us(times[lo:lo + CHUNK_ROWS]) - k0
                np.clip(chunk, -1, width, out=chunk)
                week[lo:lo + CHUNK_ROWS] = chunk
            cid = _gather(self._cid_of_code(usage["company_id"]), usage["company_id"].to_physical().to_numpy())
            rows = pl.DataFrame({"week": week, "cid": cid, "user": usage["user_id"].to_physical(), "event": usage["event"],
                                 "count": usage["count"]})
        else:
            def categorical(column: str) -> pl.Expr:  # dictionary columns are read as they are: no text is hashed
                expr = pl.col(column)
                return expr if usage.schema.get(column) == pl.Categorical else expr.cast(pl.String).cast(pl.Categorical)

            rows = usage.lazy().select(
                (self.week_of(pl.col("occurred_at")) - k0).clip(-1, width).fill_null(-1)
                .cast(pl.Int16 if width < 2**15 else pl.Int32).alias("week"),
                self._company_code_of(usage).cast(pl.Int32).fill_null(-1).alias("cid"),
                categorical("user_id").to_physical().alias("user"),
                categorical("event").alias("event"),
                pl.col("count").cast(pl.Float64).fill_null(0.0),
            ).collect(engine="in-memory")  # from a table in one chunk, columns in one chunk: numpy reads them in place
        users_complete = rows["user"].null_count() == 0
        raw_user = (rows["user"] if users_complete else rows["user"].fill_null(0)).to_numpy()
        seen = np.zeros(int(raw_user.max(initial=0)) + 1, dtype=bool)
        _scatter(seen, raw_user, True)
        n_users = int(np.count_nonzero(seen))
        if seen.size <= n_users + n_users // 4:  # codes nearly dense already: use them as they are
            user, n_users = raw_user, seen.size
        else:
            user = (np.cumsum(seen, dtype=np.int32) - 1)[raw_user]
        names = rows["event"]
        physical = names.to_physical()
        size = int(physical.max()) + 2 if physical.len() > physical.null_count() else 1
        event = (physical.fill_null(size - 1) if physical.null_count() else physical).to_numpy()
        # dense event codes 0..E-1 in order of the names' codes; -1 for rows without an event (code size - 1)
        present = np.zeros(size, dtype=bool)
        _scatter(present, event, True)
        present[-1] = False
        codes_present = np.flatnonzero(present)
        dense = np.full(size, -1, dtype=np.int16 if codes_present.size < 2**15 else np.int32)
        dense[codes_present] = np.arange(codes_present.size)
        some_row = np.full(size, -1, dtype=np.int64)  # any row holding each code names it
        head = event[:65536]
        some_row[head] = np.arange(head.size)
        if (some_row[codes_present] < 0).any():  # an event first seen further down
            some_row[event] = np.arange(event.size)
        return {
            "week": rows["week"].to_numpy(),
            "cid": rows["cid"].to_numpy(),
            "user": user,
            "n_users": n_users,
            "users_complete": users_complete,
            "event": _gather(dense, event),
            "event_names": names.gather(some_row[codes_present]).cast(pl.String),
            "count": rows["count"].to_numpy(),  # whole numbers stay as read: weights are made from them per filter
        }

    def _read_usage_into(self, result: Future, code_tables: list[str]) -> None:
        """The usage-read thread: read the usage, then find the active-user window changes (they need no customer
        rows) and the company codes of `code_tables` while the calling thread finds the customer rows."""
        try:
            read = self._read_usage()
            result.set_result(read)
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that encodes the usage
            result.set_exception(exc)
            for waiting in self._window_changes.values():
                waiting.set_result(None)
            return
        for weeks, waiting in self._window_changes.items():
            try:  # an error here is raised again where the changes are computed without this head start
                waiting.set_result(self._user_window_changes(read["week"], read["cid"], read["user"], read["n_users"],
                                                             self._usage_weeks()[0], weeks)
                                   if read["users_complete"] else None)
            except Exception:  # noqa: BLE001
                waiting.set_result(None)
        try:
            for table in code_tables:  # done again (and any error raised) where the codes are used, if this fails
                self._with_cid(table)
        except Exception:  # noqa: BLE001, S110 - only a head start
            pass

    def _event_mask(self, where: pl.Expr | None) -> np.ndarray:
        """Which usage event codes satisfy `where`, an expression on the `event` column (evaluated per name); the
        last entry (False) stands for rows without an event, whose code is -1."""
        names = self.usage_codes().event_names
        if where is None:
            return np.append(np.ones(names.len(), dtype=bool), True)
        try:
            mask = pl.DataFrame({"event": names}).select(where.fill_null(False)).to_series()
        except pl.exceptions.ColumnNotFoundError:
            raise InputError("usage helpers filter on the event column only; use window_sum on usage_events") from None
        return np.append(mask.to_numpy().astype(bool), False)

    def _usage_grid_index(self, k0: int) -> np.ndarray:
        """Place of every panel row in a week-by-week (week x position) array starting at week k0 (cached)."""
        key = ("usage_grid_index", k0)
        if key not in self._cache:
            self._cache[key] = (self.grid_week - k0) * max(self.n_positions, 1) + self.grid_position
        return self._cache[key]

    def usage_weekly_totals(self, where: pl.Expr | None = None) -> WeeklyTotals:
        """Weekly totals of usage `count` per customer for events matching `where` (an expression on `event`),
        from 18 weeks before the first as-of: the same as `weekly(usage_weekly(), ...)`, without a table."""
        key = ("usage_weekly_totals", str(where))
        if key in self._cache:
            return self._cache[key]
        codes = self.usage_codes()
        mask = self._event_mask(where)
        if mask.all():
            totals = np.bincount(codes.cell, weights=codes.count, minlength=codes.n_positions * codes.width)
        else:
            with self._weights_lock:  # zero weight for the other events, in one buffer reused by every filter
                if "usage_weights" not in self._cache:
                    self._cache["usage_weights"] = np.empty(codes.count.size, dtype=np.float64)
                weights = np.multiply(codes.count, _gather(mask, codes.event), out=self._cache["usage_weights"])
                totals = np.bincount(codes.cell, weights=weights, minlength=codes.n_positions * codes.width)
        totals = totals.astype(np.float64, copy=False)  # bincount of no rows gives whole numbers
        result = WeeklyTotals(
            codes.k0, {"value": totals.reshape(codes.width, codes.n_positions).T}, {"value": {}},
            self._usage_grid_index(codes.k0), reach=self.k_min - codes.k0, week_step=codes.n_positions,
        )
        self._cache[key] = result
        return result

    def usage_window_sum(self, days: int, where: pl.Expr | None = None) -> pl.DataFrame:
        """Usage `count` summed over (as_of - days, as_of] for events matching `where`: frame[cid, k, value]."""
        if days % 7 or not 7 <= days <= 7 * SHARED_LOOKBACK_WEEKS:
            return self.window_sum("usage_events", "occurred_at", pl.col("count"), days=days, where=where)
        return self.values(self.usage_weekly_totals(where).sum_back(days // 7))

    def usage_distinct_events(self, days: int, where: pl.Expr | None = None) -> pl.DataFrame:
        """Distinct usage events matching `where` in (as_of - days, as_of]: frame[cid, k, value]."""
        codes = self.usage_codes()
        weeks = days // 7
        if days % 7 or not 1 <= weeks <= SHARED_LOOKBACK_WEEKS:
            return self.window_distinct("usage_events", "occurred_at", pl.col("event"), days=days, where=where)
        chosen = np.flatnonzero(self._event_mask(where)[:-1])
        first = self.k_min - codes.k0  # week row of the first as-of
        cells = codes.width * codes.n_positions
        counts = np.zeros(self._rows.height, dtype=np.int64)
        index = self._usage_grid_index(self.k_min)
        group_size = max(1, min(chosen.size, PRESENCE_BYTES // max(cells, 1) - 1))
        for group in range(0, chosen.size, group_size):  # up to group_size events per pass over the rows
            members = chosen[group:group + group_size]
            slots = members.size + 1  # one slot per chosen event and one for every other event
            slot_of_event = np.full(codes.event_names.len() + 1, members.size, dtype=np.intp)  # last: no event
            slot_of_event[members] = np.arange(members.size)
            present = np.zeros(slots * cells, dtype=bool)  # (slot x week x position): the event occurred there
            for lo in range(0, codes.cell.size, CHUNK_ROWS):  # chunks keep the index temporaries small
                at = np.take(slot_of_event, codes.event[lo:lo + CHUNK_ROWS], mode="wrap")  # event -1: the last entry
                at *= cells
                at += codes.cell[lo:lo + CHUNK_ROWS]
                present[at] = True
            present = present.reshape(slots, codes.width, codes.n_positions)[:members.size]
            window = _any_in_last(present.swapaxes(0, 1), first, weeks)  # (week k_min + j, event, position)
            counts += window.sum(axis=1, dtype=np.int32).reshape(-1)[index]
        return self.values(counts.astype(np.float64))

    def usage_active_users(self, days: int = ACTIVE_USER_DAYS) -> pl.DataFrame:
        """Distinct users with any usage event in (as_of - days, as_of] (exact): frame[cid, k, value]."""
        self._await_prefetch()
        key = ("usage_active_users", days)
        if key in self._cache:
            return self._cache[key]
        codes = self.usage_codes()
        weeks = days // 7
        result = None
        if days % 7 == 0 and 1 <= weeks <= SHARED_LOOKBACK_WEEKS and codes.users_complete:
            counts = self._user_week_bitmap_counts(codes, weeks)
            if counts is None:
                k = codes.k
                reach = k >= self.k_min - weeks + 1  # older rows cannot reach any as-of window
                counts = self._distinct_whole_weeks(codes.company[reach], codes.user[reach], k[reach], weeks)
            result = None if counts is None else self.values(counts)
        if result is None:
            result = self.window_distinct("usage_events", "occurred_at", pl.col("user_id"), days=days)
        self._cache[key] = result
        return result

    def table(self, name: str, time: str | None = None, where: pl.Expr | None = None, days: int | None = None) -> pl.LazyFrame:
        """A table, lazily, with `cid` and, given `time`, `k` (the week from whose as-of on the row is visible).

        Rows dated after the last as-of are dropped and, given `days`, rows too old to reach any window.
        """
        lf = self._with_cid(name).lazy().filter(pl.col("cid").is_not_null())
        if where is not None:
            lf = lf.filter(where)
        if time is not None:
            keep = pl.col(time) <= pl.lit(self.as_of_max, dtype=UTC_DATETIME)
            if days is not None:
                keep = keep & (pl.col(time) > pl.lit(self.as_of(self.k_min) - timedelta(days=days), dtype=UTC_DATETIME))
            lf = lf.filter(keep).with_columns(self.week_of(pl.col(time)).alias("k"))
        return lf

    def values(self, array: np.ndarray | pl.Series) -> pl.DataFrame:
        """A helper result: the grid's keys with `array` (aligned with the grid's rows) as column value."""
        return self._rows.select(*KEYS).with_columns(pl.Series("value", array, dtype=pl.Float64))

    def _rectangle(self, frame: pl.DataFrame, columns: list[str], k0: int, width: int) -> dict[str, np.ndarray]:
        """Sum frame[cid, k, columns...] into (position x week) arrays covering weeks k0 .. k0 + width - 1."""
        position = self._position_of_cid[frame["cid"].to_numpy().astype(np.int64)]
        offset = frame["k"].to_numpy().astype(np.int64) - k0
        keep = (position >= 0) & (offset >= 0) & (offset < width)
        flat = position[keep] * width + offset[keep]
        size = self.n_positions * width
        return {
            c: np.bincount(flat, weights=frame[c].to_numpy().astype(np.float64)[keep], minlength=size)
            .astype(np.float64, copy=False).reshape(self.n_positions, width)
            for c in columns
        }

    # --- window helpers --------------------------------------------------------------------------------------
    def weekly(self, table: str, time: str, value: pl.Expr | dict[str, pl.Expr], where: pl.Expr | None = None,
               lookback_weeks: int = 0, tail_days: tuple[int, ...] = ()) -> WeeklyTotals:
        """Weekly totals of `value` (or of several named values, in one pass) per customer, from `lookback_weeks`
        before the first as-of to the last one.

        A row counts in the week whose as-of is the first at or after it. `tail_days` adds, per m, the totals of
        only the last m days of each week (for windows that are not whole weeks).
        """
        values = value if isinstance(value, dict) else {"value": value}
        tail_days = tuple(sorted(set(tail_days)))
        key = ("weekly", table, time, tuple((n, str(v)) for n, v in values.items()), str(where), tail_days)
        if key in self._cache and self._cache[key].k0 <= self.k_min - lookback_weeks:
            return self._cache[key]
        lookback_weeks = max(lookback_weeks, SHARED_LOOKBACK_WEEKS)  # one pass serves the usual windows
        lf = self.table(table, time, where, days=7 * lookback_weeks + 7)
        # materialise the values per row first (a bare literal would be aggregated once per group, not per row)
        names = [f"_v{i}" for i in range(len(values))]
        lf = lf.select("cid", "k", time, *[(v + pl.lit(0.0)).cast(pl.Float64).alias(n) for n, v in zip(names, values.values(), strict=True)])
        aggs = [pl.col(n).sum() for n in names]
        for m in tail_days:
            # a row is in the last m days of its week when the week's as-of is less than m days after it
            recent = (self.as_of_expr("k") - pl.col(time)).dt.total_microseconds() < m * DAY_US
            aggs += [pl.col(n).filter(recent).sum().alias(f"{n}_tail_{m}") for n in names]
        sums = lf.group_by(KEYS).agg(aggs).collect()
        k0 = self.k_min - lookback_weeks
        width = self.k_max - k0 + 1
        arrays = self._rectangle(sums, [a.meta.output_name() for a in aggs], k0, width)
        result = WeeklyTotals(
            k0,
            {label: arrays[n] for label, n in zip(values, names, strict=True)},
            {label: {m: arrays[f"{n}_tail_{m}"] for m in tail_days} for label, n in zip(values, names, strict=True)},
            self.grid_position * width + (self.grid_week - k0),
            reach=self.k_min - k0,
        )
        self._cache[key] = result
        return result

    def window_sum(self, table: str, time: str, value: pl.Expr, days: int, where: pl.Expr | None = None) -> pl.DataFrame:
        """Sum of `value` over rows of `table` with `time` in (as_of - days, as_of]: frame[cid, k, value]."""
        return self.values(self.window_sums(table, time, {"value": value}, (days,), where)["value", days])

    def window_sums(self, table: str, time: str, values: dict[str, pl.Expr], days: tuple[int, ...],
                    where: pl.Expr | None = None) -> dict[tuple[str, int], np.ndarray]:
        """Several windowed sums in one pass over the table: {(name, days): array aligned with the grid}.

        Exact for any number of days: a row dated t is in the window (as_of - d, as_of] of every as-of week k with
        week_of(t) <= k < week_of(t + d), so it adds its value from the first of those weeks and takes it away
        from the week after the last; a running total per customer over the weeks gives every window."""
        if min(days) < 1:
            raise InputError(f"window of {min(days)} days: a window must last at least one day")
        rows = self._dated_rows(table, time, where)
        names = [f"_v{i}" for i in range(len(values))]
        frame = rows["base"].with_columns(
            [(v + pl.lit(0.0)).cast(pl.Float64).fill_null(0.0).alias(n) for n, v in zip(names, values.values(), strict=True)]
        ).select(names).collect()  # with_columns gives a bare literal one value per row
        start = self._week_cells(rows["k_in"], rows["position"])
        result = {}
        for d in days:
            end = self._week_cells(self._week_of_us(rows["time"] + d * DAY_US), rows["position"])
            for name, n in zip(values, names, strict=True):
                result[name, d] = self._entry_exit_totals(start, end, frame[n].to_numpy())
        return result

    def _entry_exit_totals(self, enter: np.ndarray, leave: np.ndarray | None = None,
                           weights: np.ndarray | None = None) -> np.ndarray:
        """Per panel row, the total weight (1 each by default) of the entries in force at its as-of: an entry adds
        its weight from the week of its `enter` cell on and, given `leave`, takes it away from the week of its
        `leave` cell on (cells of `_week_cells`)."""
        weights = np.ones(enter.size) if weights is None else weights
        if leave is not None:
            enter, weights = np.concatenate((enter, leave)), np.concatenate((weights, -weights))
        changes = np.bincount(enter, weights=weights, minlength=self._week_cells_size)
        return self._accumulated_at_grid(np.add, changes.astype(np.float64, copy=False))

    def _company_totals(self, cid: np.ndarray, enter: np.ndarray, leave: np.ndarray | None = None,
                        weights: np.ndarray | None = None) -> np.ndarray:
        """`_entry_exit_totals` of entries given by company code `cid` and weeks `enter` (and `leave`); entries of
        companies outside the panel (and of code -1) count for nothing."""
        position = self._position_of_cid[cid]
        kept = position >= 0
        return self._entry_exit_totals(
            self._week_cells(enter[kept], position[kept]),
            None if leave is None else self._week_cells(leave[kept], position[kept]),
            None if weights is None else weights[kept],
        )

    def _position_of(self, cid: pl.Expr) -> pl.Expr:
        """Customer position of a company-code expression (-1: not a customer in the panel; null: no code)."""
        return pl.lit(pl.Series(self._position_of_cid, dtype=pl.Int64)).gather(cid)

    def _dated_rows(self, table: str, time: str, where: pl.Expr | None) -> dict[str, Any]:
        """The rows of `table` of the panel's customers matching `where` and dated at or before the last as-of:
        the lazy frame (`base`, for their values), each row's customer `position`, `time` (microseconds since
        1970) and the week `k_in` from whose as-of on it is visible. Cached per table, time column and filter."""
        key = ("dated_rows", table, time, str(where))
        if key in self._cache:
            return self._cache[key]
        lf = self._with_cid(table).lazy().filter(pl.col("cid").is_not_null())
        if where is not None:
            lf = lf.filter(where)
        base = (
            lf.filter(pl.col(time).is_not_null() & (pl.col(time) <= pl.lit(self.as_of_max, dtype=UTC_DATETIME)))
            .with_columns(self._position_of(pl.col("cid")).alias("_position"))
            .filter(pl.col("_position") >= 0)
        )
        located = base.select("_position", pl.col(time).dt.epoch("us").alias("_time")).collect()
        row_time = located["_time"].to_numpy()
        rows = {
            "base": base,
            "position": located["_position"].to_numpy(),
            "time": row_time,
            "k_in": self._week_of_us(row_time),
        }
        self._cache[key] = rows
        return rows

    def _week_of_us(self, micros: np.ndarray) -> np.ndarray:
        """Week index of times in microseconds since 1970 (as `week_of`: the first as-of at or after them)."""
        return -((self._anchor_us - micros) // WEEK_US)

    def _week_cells(self, k: np.ndarray, position: np.ndarray) -> np.ndarray:
        """Cells of a (week x customer) array whose row 0 is the first as-of week and whose last row (one past
        the last as-of) collects whatever lies beyond; weeks before the first as-of fold into row 0."""
        week = np.clip(k - self.k_min, 0, self.k_max - self.k_min + 1)
        return week * max(self.n_positions, 1) + position

    @property
    def _week_cells_size(self) -> int:
        """Number of cells of the arrays of `_week_cells`."""
        return (self.k_max - self.k_min + 2) * max(self.n_positions, 1)

    @property
    def _grid_cells(self) -> np.ndarray:
        """The panel rows' cells in the arrays of `_week_cells` (rows come in week, then customer order): their
        places in a week-by-week array starting at the first as-of week, shared with the usage helpers."""
        return self._usage_grid_index(self.k_min)

    def _accumulated_at_grid(self, ufunc: np.ufunc, cells: np.ndarray) -> np.ndarray:
        """Accumulate an array of `_week_cells` over the weeks of each customer with `ufunc` (np.add: running
        totals; np.maximum: carried forward), in place (`cells` is overwritten), and read it at the panel rows."""
        weekly = cells.reshape(-1, max(self.n_positions, 1))
        return _accumulate_weeks(ufunc, weekly).reshape(-1)[self._grid_cells]  # in place: no new array

    def window_distinct(self, table: str, time: str, key_expr: pl.Expr, days: int, where: pl.Expr | None = None) -> pl.DataFrame:
        """Number of distinct `key_expr` values among rows with `time` in (as_of - days, as_of]: frame[cid, k, value].
        Rows whose key is null count for nothing (as in SQL's COUNT(DISTINCT ...)).

        Each distinct value is active from its row's week until `days` after its latest row; overlapping activity
        is merged per value, then the starts (+1) and ends (-1) are summed cumulatively over the weeks.
        """
        if days < 7:
            raise InputError(f"distinct window of {days} days: use at least 7 days")
        cache_key = ("window_distinct", table, time, str(key_expr), str(where), days)
        if cache_key in self._cache:
            return self._cache[cache_key]
        whole_weeks = days % 7 == 0
        code = key_expr.cast(pl.String).cast(pl.Categorical).to_physical().cast(pl.Int64).alias("_key")
        rows = self.table(table, time, where, days=days).select(
            pl.col("cid").cast(pl.Int64), code, pl.col("k").cast(pl.Int64), *([] if whole_weeks else [time])
        ).filter(pl.col("_key").is_not_null()).collect()
        if rows.height == 0:
            result = self.values(np.zeros(self._rows.height))
            self._cache[cache_key] = result
            return result
        if whole_weeks:
            few = self._distinct_few(rows, days // 7)
            if few is not None:
                result = self.values(few)
                self._cache[cache_key] = result
                return result
        if whole_weeks:
            counts = self._distinct_whole_weeks(rows["cid"].to_numpy(), rows["_key"].to_numpy(), rows["k"].to_numpy(), days // 7)
            if counts is not None:
                result = self.values(counts)
                self._cache[cache_key] = result
                return result
        # general case (windows of whole weeks plus days, or codes too large to pack): sort on the columns
        buckets = rows.unique() if whole_weeks else rows.group_by("cid", "_key", "k").agg(pl.col(time).max().alias("_last"))
        buckets = buckets.sort("cid", "_key", "k")
        same_entity = (pl.col("cid") == pl.col("cid").shift(-1)) & (pl.col("_key") == pl.col("_key").shift(-1))
        if whole_weeks:
            buckets = buckets.with_columns((pl.col("k") + days // 7).alias("k_end"))
        else:
            buckets = buckets.with_columns(self.week_of(pl.col("_last") + pl.duration(days=days)).cast(pl.Int64).alias("k_end"))
        intervals = buckets.select(
            "cid", "k",
            pl.when(same_entity).then(pl.min_horizontal("k_end", pl.col("k").shift(-1))).otherwise("k_end").alias("k_end"),
        )
        deltas = pl.concat(
            [
                intervals.select("cid", "k", pl.lit(1.0).alias("delta")),
                intervals.select("cid", pl.col("k_end").alias("k"), pl.lit(-1.0).alias("delta")),
            ]
        )
        result = self.values(self.cumulate(deltas))
        self._cache[cache_key] = result
        return result

    def _user_week_bitmap_counts(self, codes: UsageCodes, weeks: int) -> np.ndarray | None:
        """Distinct users per customer over `weeks` whole weeks from a (week x user) activity bitmap, aligned with
        the grid. Needs every user code to belong to one company; None otherwise or when the bitmap is too large.

        A user's window flag changes from one as-of week to the next only where a run of active weeks starts or
        ends, so each company's count is the running total of +1 (a run starts) and -1 (a run ends) over the weeks."""
        if codes.user.size == 0:
            return np.zeros(self._rows.height)
        early = self._window_changes.get(weeks)
        changes = early.result() if early is not None else None
        if changes is None:
            changes = self._user_window_changes(codes.week, codes.company, codes.user, codes.n_users, codes.k0, weeks)
        if changes is None:
            return None
        row, company, step = changes
        return self._company_totals(company, row + self.k_min, weights=step)

    def _user_window_changes(self, week: np.ndarray, company: np.ndarray, user: np.ndarray, n_users: int, k0: int,
                             weeks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Where each user's "active in the last `weeks` weeks" flag changes over the as-of weeks: (row j = week
        k_min + j, the user's company code, +1 or -1), from usage rows given as week - k0 (-1: older, past the
        last as-of: later), company code and user code (< n_users). Needs no customer rows. None when a user
        appears under two companies or the bitmap would be too large."""
        # bitmap rows: row 0 takes every week too old to reach an as-of window, row j >= 1 week first - 1 + j; one
        # more row at the end takes the rows dated after the last as-of
        first = self.k_min - weeks + 1
        span = self.k_max - first + 2
        if n_users * span > 2**28:
            return None
        owner = np.full(n_users, -1, dtype=company.dtype)  # the company code of each user
        active = np.zeros((span + 1, n_users), dtype=bool)
        flat = active.reshape(-1)
        # start of each usage week's bitmap row in `flat`, by week - k0 (0 .. max; the last entry is week -1)
        row_start = np.clip(np.append(np.arange(int(week.max(initial=0)) + 1), -1) + k0 - first + 1, 0, span) * n_users
        for lo in range(0, user.size, CHUNK_ROWS):  # chunks keep the temporaries small and reused
            users = user[lo:lo + CHUNK_ROWS].astype(np.intp)  # numpy's index type: cast once, used twice
            owner[users] = company[lo:lo + CHUNK_ROWS]
            at = np.take(row_start, week[lo:lo + CHUNK_ROWS], mode="wrap")  # week -1: the last entry
            at += users
            flat[at] = True
        for lo in range(0, user.size, CHUNK_ROWS):
            if not np.array_equal(np.take(owner, user[lo:lo + CHUNK_ROWS]), company[lo:lo + CHUNK_ROWS]):
                return None  # a user id shared by companies: count per company
        in_window = _any_in_last(active[:span], weeks, weeks)  # row j: week k_min + j
        changed = active[:in_window.shape[0]]  # the bitmap's memory is free again: reuse it
        changed[0] = in_window[0]
        np.not_equal(in_window[1:], in_window[:-1], out=changed[1:])
        where = np.flatnonzero(changed)
        row, users = np.divmod(where, n_users)
        return row, owner[users], np.where(in_window.reshape(-1)[where], 1.0, -1.0)

    def _distinct_whole_weeks(self, cid: np.ndarray, key: np.ndarray, k: np.ndarray, weeks: int) -> np.ndarray | None:
        """Distinct keys per company over `weeks` whole weeks, aligned with the grid; None when (company, key,
        week) does not pack into one 62-bit integer. Sorting and de-duplicating integers is fast."""
        if k.size == 0:
            return np.zeros(self._rows.height)
        k_lo = int(k.min())
        bits_k = max(1, (int(k.max()) + weeks + 2 - k_lo).bit_length())
        bits_key = max(1, (int(key.max()) + 1).bit_length())
        bits_cid = max(1, (int(cid.max()) + 1).bit_length())
        if bits_k + bits_key + bits_cid > 62:
            return None
        packed = (cid.astype(np.int64) << (bits_key + bits_k)) | (key.astype(np.int64) << bits_k) | (k.astype(np.int64) - k_lo)
        packed.sort()
        packed = packed[np.concatenate(([True], packed[1:] != packed[:-1]))]
        entity = packed >> bits_k
        k = (packed & ((1 << bits_k) - 1)) + k_lo
        k_end = k + weeks
        same = entity[1:] == entity[:-1]  # the next active week of the same value ends this interval early
        k_end[:-1][same] = np.minimum(k_end[:-1][same], k[1:][same])
        return self._company_totals(packed >> (bits_key + bits_k), k, k_end)  # intervals [k, k_end) in force

    def _distinct_few(self, rows: pl.DataFrame, weeks: int) -> np.ndarray | None:
        """Distinct counts over `weeks` whole weeks when there are at most 63 distinct values (e.g. event names):
        one bit per value, OR-ed per week and over the window, then counted. None when there are more values."""
        if rows["_key"].head(200_000).n_unique() > 63:
            return None
        codes = rows["_key"].unique().sort()
        if codes.len() > 63:
            return None
        bits = rows.lazy().select(
            "cid", "k",
            pl.col("_key").replace_strict(
                codes, pl.Series([1 << i for i in range(codes.len())], dtype=pl.UInt64), return_dtype=pl.UInt64
            ).alias("_bit"),
        ).group_by("cid", "k").agg(pl.col("_bit").bitwise_or()).collect()
        k0 = self.k_min - weeks + 1
        width = self.k_max - k0 + 1
        position = self._position_of_cid[bits["cid"].to_numpy().astype(np.int64)]
        offset = bits["k"].to_numpy().astype(np.int64) - k0
        keep = (position >= 0) & (offset >= 0) & (offset < width)
        weekly = np.zeros((self.n_positions, width), dtype=np.uint64)
        weekly[position[keep], offset[keep]] = bits["_bit"].to_numpy()[keep]
        column = self.grid_week - k0
        window = np.zeros(self._rows.height, dtype=np.uint64)
        for back in range(weeks):
            window |= weekly[self.grid_position, column - back]
        return np.bitwise_count(window).astype(np.float64)

    def cumulate(self, deltas: pl.DataFrame) -> np.ndarray:
        """Running total per company of frame[cid, k, delta] at each panel row (aligned with the grid).

        Deltas before the first as-of are folded into it; deltas after the last, and rows without a company or a
        week, are ignored; a null delta adds nothing.
        """
        deltas = deltas.drop_nulls(["cid", "k"]).with_columns(pl.col("delta").fill_null(0))
        return self._company_totals(deltas["cid"].to_numpy().astype(np.int64), deltas["k"].to_numpy().astype(np.int64),
                                    weights=deltas["delta"].to_numpy().astype(np.float64))

    def latest(self, table: str, time: str, value: pl.Expr, where: pl.Expr | None = None,
               tiebreak: str | None = None) -> pl.DataFrame:
        """The value of the latest row at or before as-of: frame[cid, k, value, time] (time = that row's time).

        Rows are ordered by time, then by `tiebreak`, then by their order in the table (the later row wins): the
        highest-ranked row of each (week, customer) cell is carried forward over the weeks."""
        key = ("latest", table, time, str(value), str(where), tiebreak)
        if key in self._cache:
            return self._cache[key]
        rows = self._dated_rows(table, time, where)
        picked = rows["base"].select(
            value.alias("value"), pl.col(time).alias("time"),
            pl.arg_sort_by([time, *([tiebreak] if tiebreak else [])], maintain_order=True).alias("_order"),
        ).collect()
        if picked.height == 0:  # nothing to find: all null
            result = self.keys.with_columns(picked.drop("_order").clear(self._rows.height))
        else:
            order = picked["_order"].to_numpy()
            rank = np.empty(order.size, dtype=np.int64)
            rank[order] = np.arange(order.size)
            best = np.full(self._week_cells_size, -1, dtype=np.int64)
            np.maximum.at(best, self._week_cells(rows["k_in"], rows["position"]), rank)
            best = self._accumulated_at_grid(np.maximum, best)
            found = best >= 0
            chosen = picked.drop("_order")[order[np.maximum(best, 0)]]
            result = self.keys.with_columns(chosen.with_columns(pl.when(pl.Series(found)).then(pl.all()).name.keep()))
        self._cache[key] = result
        return result

    # --- customers and contracts -----------------------------------------------------------------------------
    def _customer_rows(self) -> pl.DataFrame:
        """One row per (company, requested week) while a contract term is in force and known at as-of, sorted by
        week, then company.

        A term is a won new/renewal deal; it is known from its close_date and in force from max(term_start,
        close_date) until term_end (exclusive). Where terms overlap, the latest-starting one is current (then the
        latest-ending, then the highest deal_id). A company whose renewal was recorded lost at or before as-of,
        during the current term, is no longer a customer. Won expansions in force (closed by as-of, term_start <=
        as_of < term_end) add seats and ARR. Computed on a (week x company) array; a portal too large for one
        falls back to joins.
        """
        lo, hi = self.k_min, self.k_max + 1
        n_weeks, n_companies = hi - lo, max(self.companies.height, 1)
        if n_weeks * n_companies > MAX_CUSTOMER_CELLS:
            return self._customer_rows_by_join()
        deals = self._with_cid("deals").lazy().filter(pl.col("cid").is_not_null() & pl.col("close_date").is_not_null())
        start = pl.max_horizontal("term_start", "close_date")
        in_force_columns = (start.alias("effective_start"), self.week_of(start).alias("k_from"),
                            self.week_of(pl.col("term_end")).alias("k_to"))
        terms, expansions, lost = pl.collect_all([
            deals.filter(pl.col("deal_type").is_in(["new", "renewal"]) & (pl.col("stage") == "won"))
            .sort(start, "term_end", "deal_id")  # ascending rank: the highest rank in force is the current term
            .with_columns(*in_force_columns),
            deals.filter((pl.col("deal_type") == "expansion") & (pl.col("stage") == "won")).with_columns(*in_force_columns),
            deals.filter((pl.col("deal_type") == "renewal") & (pl.col("stage") == "lost"))
            .select("cid", self.week_of(pl.col("close_date")).alias("k"), pl.col("close_date").dt.epoch("us").alias("close")),
        ])

        def weeks_in_force(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
            """(cell, row) of every (week, company) cell in which a row of `frame` is in force."""
            k_from = np.clip(frame["k_from"].fill_null(hi).to_numpy(), lo, hi)
            k_to = np.clip(frame["k_to"].fill_null(lo).to_numpy(), lo, hi)
            length = np.maximum(k_to - k_from, 0).astype(np.int64)
            row = np.repeat(np.arange(frame.height, dtype=np.int32), length)
            week = np.arange(row.size) - np.repeat(np.cumsum(length) - length, length) + np.repeat(k_from - lo, length)
            return week * n_companies + frame["cid"].to_numpy()[row], row

        size = n_weeks * n_companies
        cell, row = weeks_in_force(terms)
        current = np.full(size, -1, dtype=np.int32)
        np.maximum.at(current, cell, row)
        customer = current >= 0
        # the latest lost renewal at or before each as-of (older ones count from the first week), on a (week x
        # company) array of the companies with a lost renewal only
        lost_week = lost["k"].to_numpy().astype(np.int64)
        seen = lost_week < hi
        lost_cid = lost["cid"].to_numpy().astype(np.int64)[seen]
        losers = np.unique(lost_cid)
        if losers.size:
            never = np.iinfo(np.int64).min
            lost_close = np.full((n_weeks, losers.size), never, dtype=np.int64)
            np.maximum.at(lost_close.reshape(-1), np.maximum(lost_week[seen] - lo, 0) * losers.size
                          + np.searchsorted(losers, lost_cid), lost["close"].to_numpy()[seen])
            _accumulate_weeks(np.maximum, lost_close)
            their_cells = (np.arange(n_weeks)[:, None] * n_companies + losers[None, :]).reshape(-1)
            latest_loss = lost_close.reshape(-1)
            term_start = terms["term_start"].dt.epoch("us").fill_null(never).to_numpy()
            term = current[their_cells]
            ended = (term >= 0) & (latest_loss != never)
            ended[ended] = latest_loss[ended] >= term_start[term[ended]]  # a null term_start ends at any loss
            customer[their_cells[ended]] = False
        if len(self.weeks) < n_weeks:
            requested = np.zeros(n_weeks, dtype=bool)
            requested[np.asarray(self.weeks) - lo] = True
            customer &= np.repeat(requested, n_companies)
        cells = np.flatnonzero(customer)  # week, then company
        rank = current[cells]
        exp_cell, exp_row = weeks_in_force(expansions)
        slot = np.full(size, -1, dtype=np.int32)
        slot[cells] = np.arange(cells.size, dtype=np.int32)
        exp_slot = slot[exp_cell]
        counted = exp_slot >= 0
        expansion_arr = np.bincount(exp_slot[counted], weights=expansions["arr"].fill_null(0.0).to_numpy()[exp_row[counted]],
                                    minlength=cells.size)
        expansion_seats = np.bincount(exp_slot[counted], weights=expansions["seats"].fill_null(0).to_numpy()[exp_row[counted]],
                                      minlength=cells.size)
        tenure = terms.group_by("cid").agg(pl.col("effective_start").min().alias("tenure_start"))
        tenure_by_cid = pl.Series("tenure_start", [None] * n_companies, dtype=UTC_DATETIME).scatter(
            tenure["cid"], tenure["tenure_start"])
        week, company = np.divmod(cells, n_companies)
        week += lo
        self.terms, self.term_of_row = terms.select("cid", "deal_id", "term_end"), rank
        # the rows' columns: numbers and times gathered and added up with numpy (see _take_rows); text with polars
        seats, arr = _take_rows(terms["seats"], rank), _take_rows(terms["arr"], rank)
        return pl.DataFrame([
            pl.Series("cid", company.astype(np.uint32)),
            pl.Series("k", week.astype(np.int32)),
            self.companies["company_id"].gather(company),
            pl.Series("as_of", week * WEEK_US + self._anchor_us).cast(UTC_DATETIME),
            terms["deal_id"].gather(rank).alias("term_deal_id"),
            _take_rows(terms["term_start"], rank),
            _take_rows(terms["term_end"], rank),
            _plus(seats, expansion_seats).alias("contracted_seats"),
            _plus(arr, expansion_arr).alias("arr"),
            _take_rows(tenure_by_cid, company),
        ])

    def _customer_rows_by_join(self) -> pl.DataFrame:
        """One row per (company, requested week) while a contract term is in force and known at as-of.

        A term is a won new/renewal deal; it is known from its close_date and in force from max(term_start,
        close_date) until term_end (exclusive). Where terms overlap, the latest-starting one is current. A company
        whose renewal was recorded lost at or before as-of, during the current term, is no longer a customer.
        Won expansions in force (closed by as-of, term_start <= as_of < term_end) add seats and ARR.
        """
        deals = self.table("deals")
        weeks = pl.DataFrame({"k": self.weeks}, schema={"k": pl.Int32}).lazy()
        lo, hi = self.k_min, self.k_max + 1
        every_week = len(self.weeks) == hi - lo

        def in_force(frame: pl.LazyFrame) -> pl.LazyFrame:
            start = pl.max_horizontal("term_start", "close_date")
            exploded = (
                frame.filter(pl.col("close_date").is_not_null())
                .with_columns(
                    start.alias("effective_start"),
                    self.week_of(start).alias("k_from"),
                    self.week_of(pl.col("term_end")).alias("k_to"),
                )
                .with_columns(
                    pl.int_ranges(pl.max_horizontal("k_from", pl.lit(lo)), pl.min_horizontal("k_to", pl.lit(hi)),
                                  dtype=pl.Int32).alias("k")
                )
                .explode("k")
                .filter(pl.col("k").is_not_null())
            )
            return exploded if every_week else exploded.join(weeks, on="k", how="semi")

        terms = deals.filter(pl.col("deal_type").is_in(["new", "renewal"]) & (pl.col("stage") == "won"))
        tenure = (
            terms.filter(pl.col("close_date").is_not_null())
            .group_by("cid").agg(pl.max_horizontal("term_start", "close_date").min().alias("tenure_start"))
        )
        # rank terms once (latest start, then latest end, then deal_id wins) and keep the best rank per week
        ranked = (
            terms.filter(pl.col("close_date").is_not_null())
            .sort(pl.max_horizontal("term_start", "close_date"), "term_end", "deal_id")
            .with_row_index("rank")
            .collect()
        )
        best = in_force(ranked.lazy()).group_by(KEYS).agg(pl.col("rank").max())
        current = best.join(
            ranked.lazy().select(
                "rank", pl.col("deal_id").alias("term_deal_id"), "term_start", "term_end",
                pl.col("arr").alias("term_arr"), pl.col("seats").alias("term_seats"),
            ),
            on="rank",
        ).drop("rank")
        expansions = (
            in_force(deals.filter((pl.col("deal_type") == "expansion") & (pl.col("stage") == "won")))
            .group_by(KEYS)
            .agg(pl.col("arr").sum().alias("expansion_arr"), pl.col("seats").sum().alias("expansion_seats"))
        )
        lost = (
            deals.filter((pl.col("deal_type") == "renewal") & (pl.col("stage") == "lost") & pl.col("close_date").is_not_null())
            .with_columns(self.week_of(pl.col("close_date")).alias("k"))
            .group_by(KEYS)
            .agg(pl.col("close_date").max().alias("lost_close"))
            .sort(KEYS)
            .collect()
        )
        rows = current.collect().sort(KEYS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = rows.join_asof(lost, on="k", by="cid", strategy="backward", check_sortedness=False)
        rows = (
            rows.lazy()
            .filter(pl.col("lost_close").is_null() | (pl.col("lost_close") < pl.col("term_start")))
            .join(expansions, on=KEYS, how="left")
            .join(tenure, on="cid", how="left")
            .join(self.companies.lazy(), on="cid", how="left")
            .select(
                *KEYS,
                "company_id",
                self.as_of_expr("k").alias("as_of"),
                "term_deal_id", "term_start", "term_end",
                (pl.col("term_seats") + pl.col("expansion_seats").fill_null(0)).alias("contracted_seats"),
                (pl.col("term_arr") + pl.col("expansion_arr").fill_null(0.0)).alias("arr"),
                "tenure_start",
            )
            .sort("k", "cid")
        )
        return rows.collect()


# ------------------------------------------------------------------------------------------------------------
# built-in signals
# ------------------------------------------------------------------------------------------------------------
def _core_filter(ctx: SignalContext) -> pl.Expr:
    return pl.col("event").is_in(ctx.core_events)


def _grid_value(grid: pl.DataFrame, expr: pl.Expr) -> pl.DataFrame:
    return grid.select(*KEYS, expr.alias("value"))


def _eb_engagements(ctx: SignalContext) -> str:
    """Table name of the engagements with economic-buyer contacts that existed when the engagement happened."""
    name = "eb_engagements"
    if name not in ctx.extra_tables:
        buyers = ctx.snapshot["contacts"].filter((pl.col("role") == "economic_buyer") & pl.col("contact_id").is_not_null()).select(
            "contact_id", pl.col("created_at").alias("_contact_created")
        )
        # from the engagements with their company codes (found once, often ahead in the usage-read thread)
        engagements = ctx._with_cid("engagements").lazy().filter(pl.col("contact_id").is_not_null())
        if buyers["contact_id"].is_unique().all():  # look the buyer up by code: cheaper than a join on text
            buyer = pl.col("contact_id").cast(pl.String).cast(pl.Enum(buyers["contact_id"].cast(pl.String)), strict=False).to_physical()
            created = pl.lit(buyers["_contact_created"]).gather(buyer)
            eb = engagements.filter(buyer.is_not_null()).filter(created <= pl.col("occurred_at"))
        else:
            eb = (engagements.join(buyers.lazy(), on="contact_id", how="inner")
                  .filter(pl.col("_contact_created") <= pl.col("occurred_at")).drop("_contact_created"))
        ctx._add_coded_table(name, eb.collect())  # cid: the engagements' codes
    return name


EB_REPLY = (pl.col("type") == "email") & (pl.col("replied").fill_null(False) | (pl.col("direction") == "inbound"))
EB_MEETING = pl.col("type") == "meeting"
EB_DECISION_MEETING = EB_MEETING & pl.col("meeting_kind").is_in(["qbr", "renewal"]).fill_null(False)  # kind unknown: a meeting
EB_CALL = pl.col("type") == "call"
EB_POINTS = (
    EB_REPLY.cast(pl.Float64) + EB_MEETING.cast(pl.Float64) + EB_DECISION_MEETING.cast(pl.Float64) + EB_CALL.cast(pl.Float64)
)
DAYS_TO_RENEWAL = (pl.col("term_end") - pl.col("as_of")).dt.total_microseconds() / DAY_US
NEGATIVE_TICKET = (pl.col("sentiment") == "negative") | pl.col("escalated").fill_null(False)


@register_signal("core_depth", family="value", unit="core events per active user", direction=+1, reads=("usage_events",))
def core_depth(ctx: SignalContext) -> pl.DataFrame:
    """Value-moment events (manifest core_events) in the 28 days up to as-of per active user (distinct users with
    any usage in those days); 0 when nobody was active."""
    core = ctx.usage_window_sum(28, where=_core_filter(ctx))["value"]
    active = ctx.grid["active_seats"]
    return ctx.values(pl.select(pl.when(active > 0).then(core / active).otherwise(0.0)).to_series())


@register_signal("core_depth_trend", family="value", unit="relative change per week", direction=+1, reads=("usage_events",))
def core_depth_trend(ctx: SignalContext) -> pl.DataFrame:
    """OLS slope of the 8 weekly value-moment counts ending at as-of divided by their mean; 0 without core events
    in the 8 weeks, null while the company has been a customer for under 8 weeks."""
    weeks = TREND_WEEKS
    weekly = ctx.usage_weekly_totals(where=_core_filter(ctx))
    x = np.arange(weeks) - (weeks - 1) / 2  # week 0 is the oldest, weeks-1 the one ending at as-of
    weighted, total, count = np.zeros(ctx.grid.height), np.zeros(ctx.grid.height), np.empty(ctx.grid.height)
    for i in range(weeks):  # whole counts: these sums are exact, whatever the order
        weekly.at(weeks - 1 - i, out=count)
        total += count
        count *= x[i]
        weighted += count
    slope = weighted / (x**2).sum()
    mean = total / weeks
    trend = np.divide(slope, mean, out=np.zeros_like(slope), where=mean > 0)
    full_history = ctx.grid.select(pl.col("as_of") - pl.col("tenure_start") >= pl.duration(weeks=weeks)).to_series()
    return ctx.values(trend).with_columns(pl.when(full_history).then(pl.col("value")).alias("value"))


@register_signal("eb_engagement", family="value", unit="weighted interactions", direction=+1, reads=("engagements", "contacts"))
def eb_engagement(ctx: SignalContext) -> pl.DataFrame:
    """Economic-buyer interactions over 90 days: reply or inbound email 1, meeting 1, QBR/renewal meeting 2,
    call 1; 0 when none."""
    return ctx.window_sum(_eb_engagements(ctx), "occurred_at", EB_POINTS, days=90, where=EB_POINTS > 0)


@register_signal("eb_days_since_touch", family="value", unit="days", direction=-1, reads=("engagements", "contacts"))
def eb_days_since_touch(ctx: SignalContext) -> pl.DataFrame:
    """Days since the economic buyer's last two-way touch (reply, inbound email, meeting, call), capped at 365;
    365 when never touched."""
    touch = EB_REPLY | EB_MEETING | EB_CALL
    last = ctx.latest(_eb_engagements(ctx), "occurred_at", pl.col("occurred_at"), where=touch)
    days = (ctx.as_of_expr("k") - pl.col("value")).dt.total_microseconds() / DAY_US
    return last.select(*KEYS, pl.min_horizontal(days, pl.lit(float(TOUCH_CAP_DAYS))).fill_null(float(TOUCH_CAP_DAYS)).alias("value"))


def _negative_shares(ctx: SignalContext) -> pl.DataFrame:
    if "negative_shares" in ctx._cache:
        return ctx._cache["negative_shares"]
    sums = ctx.window_sums("tickets", "created_at", {"n": pl.lit(1.0), "negative": NEGATIVE_TICKET.cast(pl.Float64)},
                           days=(60, 120))
    n_now, neg_now = sums["n", 60], sums["negative", 60]
    n_before, neg_before = sums["n", 120] - n_now, sums["negative", 120] - neg_now
    share = np.divide(neg_now, n_now, out=np.zeros_like(n_now), where=n_now > 0)
    share_before = np.divide(neg_before, n_before, out=np.zeros_like(n_before), where=n_before > 0)
    ctx._cache["negative_shares"] = ctx.values(share).with_columns(pl.Series("share_before", share_before))
    return ctx._cache["negative_shares"]


@register_signal("support_negative_share", family="value", unit="share of tickets", direction=-1, reads=("tickets",))
def support_negative_share(ctx: SignalContext) -> pl.DataFrame:
    """Share of tickets created in the last 60 days that were negative or escalated; 0 without tickets."""
    return _negative_shares(ctx).select(*KEYS, "value")


@register_signal("support_negative_trend", family="value", unit="change in share", direction=-1, reads=("tickets",))
def support_negative_trend(ctx: SignalContext) -> pl.DataFrame:
    """Negative-or-escalated share of tickets in the last 60 days minus the share in the 60 days before."""
    return _negative_shares(ctx).select(*KEYS, pl.col("value") - pl.col("share_before"))


@register_signal("seat_utilisation", family="value", unit="active users per contracted seat", direction=+1, reads=("usage_events", "deals"))
def seat_utilisation(ctx: SignalContext) -> pl.DataFrame:
    """Distinct users active in 28 days divided by contracted seats (current term plus won expansions in force);
    null when no seats are contracted."""
    seats = pl.col("contracted_seats")
    return _grid_value(ctx.grid, pl.when(seats > 0).then(pl.col("active_seats") / seats))


@register_signal("days_to_renewal", family="value", unit="days", direction=0, point_source=False, reads=("deals",))
def days_to_renewal(ctx: SignalContext) -> pl.DataFrame:
    """Days from as-of to the end of the current term: renewal urgency, not a point source."""
    return _grid_value(ctx.contracts, DAYS_TO_RENEWAL)


@register_signal("email_open_rate", family="activity", unit="share of emails", direction=+1, reads=("engagements",))
def email_open_rate(ctx: SignalContext) -> pl.DataFrame:
    """Share of outbound emails to the company's contacts in 90 days that were opened; null when none was sent."""
    outbound = (pl.col("type") == "email") & (pl.col("direction") == "outbound")
    sums = ctx.window_sums("engagements", "occurred_at", {"sent": pl.lit(1.0), "opened": pl.col("opened").fill_null(False)},
                           days=(90,), where=outbound)
    sent, opened = sums["sent", 90], sums["opened", 90]
    return ctx.values(np.divide(opened, sent, out=np.full_like(sent, np.nan), where=sent > 0)).with_columns(
        pl.col("value").fill_nan(None))


@register_signal("logins_28d", family="activity", unit="logins", direction=+1, reads=("usage_events",))
def logins_28d(ctx: SignalContext) -> pl.DataFrame:
    """Login events (manifest login_event, default "login") in the 28 days up to as-of."""
    return ctx.usage_window_sum(28, where=pl.col("event") == ctx.login_event)


@register_signal("ticket_volume_90d", family="activity", unit="tickets", direction=-1, reads=("tickets",))
def ticket_volume_90d(ctx: SignalContext) -> pl.DataFrame:
    """Tickets created in the 90 days up to as-of."""
    return ctx.window_sum("tickets", "created_at", pl.lit(1.0), days=90)


@register_signal("latest_nps", family="activity", unit="NPS score (0-10)", direction=+1, reads=("surveys",))
def latest_nps(ctx: SignalContext) -> pl.DataFrame:
    """Score of the latest NPS response at or before as-of; null when there is none."""
    return ctx.latest("surveys", "submitted_at", pl.col("score"), where=pl.col("kind") == "nps", tiebreak="response_id").drop("time")


@register_signal("feature_breadth_28d", family="activity", unit="distinct features", direction=+1, reads=("usage_events",))
def feature_breadth_28d(ctx: SignalContext) -> pl.DataFrame:
    """Distinct usage events other than the login event and the core (value-moment) events used in the 28 days
    up to as-of: how many features an account touches, apart from the work the product is bought for."""
    excluded = [ctx.login_event, *ctx.core_events]
    return ctx.usage_distinct_events(28, where=~pl.col("event").is_in(excluded))
