"""The built-in demo portal: a synthetic B2B SaaS HubSpot portal in canonical schema v1, with a known truth.

The portal is simulated week by week (vectorised over companies, user seats and rows; the only Python loop runs
over the ~160 weeks of history). Every company carries a slowly drifting latent health and four value drivers
derived from it: core-workflow depth, seat utilisation, economic-buyer engagement and support negativity. At
each renewal decision the churn probability is a documented logistic function of those drivers *as they appear
in the generated tables* (see `GROUND_TRUTH_COEFFICIENTS` and the README written beside the snapshot).

Activity signals (email opens, logins, ticket volume, yearly NPS, feature breadth) come from habits drawn per
account, independent of health, seat use, the number of active users and (nearly) of tier, so they carry little
or no information about churn: an account's weekly logins are drawn at its own, slowly drifting habit rate and
shared out among whichever users are active that week (its admin signs in even in a week when nobody works in
the product); its non-core feature events come from its own habitual set of features; opens follow a
per-account open rate; ticket volume is a per-account rate; NPS is a per-account level plus noise. Only core
events, active users, economic-buyer interactions and ticket sentiment/escalation follow health.

`write_demo` writes the snapshot with `snapshot.write_snapshot` and the ground truth in `<out>.truth/`, never
inside the snapshot.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from hsutils.errors import InputError, counted
from hsutils.schema import SCHEMA_VERSION, TABLES
from hsutils.snapshot import Manifest, write_snapshot

SNAPSHOT_MOMENT = datetime(2026, 11, 15, tzinfo=UTC)
HISTORY_WEEKS = 163  # 2023-10-01 .. 2026-11-15
GENERATOR_VERSION = "1"

TIERS = ("starter", "pro", "enterprise")
TIER_SHARES = (0.58, 0.31, 0.11)
CORE_EVENTS = ("report_published", "workflow_run")
LOGIN_EVENT = "login"
FEATURE_EVENTS = (
    "dashboard_viewed",
    "record_exported",
    "comment_added",
    "filter_saved",
    "integration_synced",
    "template_used",
    "alert_created",
    "search_run",
)
EVENT_NAMES = (LOGIN_EVENT, *CORE_EVENTS, *FEATURE_EVENTS)
INDUSTRIES = (
    "Software", "Financial Services", "Healthcare", "Manufacturing", "Retail", "Professional Services",
    "Education", "Logistics", "Media", "Real Estate",
)
NAME_FIRST = (
    "Acme", "Blue", "Bright", "Cedar", "Clear", "Copper", "Delta", "Echo", "Evergreen", "Falcon", "Granite",
    "Harbor", "Iron", "Juniper", "Kite", "Lumen", "Maple", "Nimbus", "North", "Oak", "Orbit", "Pine", "Quartz",
    "River", "Sierra", "Summit", "Tidal", "Union", "Vertex", "Willow",
)
NAME_SECOND = (
    "Analytics", "Labs", "Systems", "Logistics", "Health", "Capital", "Works", "Cloud", "Networks", "Foods",
    "Robotics", "Media", "Partners", "Energy", "Software", "Retail", "Bio", "Security", "Learning", "Freight",
)
NAME_SUFFIX = ("Inc", "LLC", "GmbH", "Ltd", "Co", "Group", "")
OWNER_FIRST = ("Maya", "Jonas", "Priya", "Tom", "Sofia", "Daniel", "Aisha", "Lukas", "Elena", "Marcus", "Hana",
               "Oliver", "Grace", "Mateo")
OWNER_LAST = ("Chen", "Okafor", "Lindqvist", "Patel", "Moreau", "Kowalski", "Reyes", "Nakamura", "Brennan",
              "Haddad", "Fischer")
JOB_TITLES = {
    "economic_buyer": ("CFO", "COO", "VP Finance", "Chief Revenue Officer", "VP Operations", "CEO"),
    "champion": ("RevOps Manager", "Sales Operations Lead", "Marketing Ops Manager", "Head of CS Operations"),
    "user": ("Account Executive", "SDR", "Customer Success Manager", "Analyst", "Sales Manager"),
    "other": ("IT Administrator", "Procurement Manager", "Legal Counsel", "Office Manager"),
}

# --- ground truth -------------------------------------------------------------------------------------------
# the negative share is smoothed towards a prior, so a single ticket does not decide a renewal; the prior is about
# the overall share of negative or escalated tickets, so the number of tickets alone does not move the share
SHARE_PRIOR = 0.23
SHARE_PRIOR_WEIGHT = 3.0
# logit p_churn = intercept[tier][term] + sum_k coef[tier][k] * (driver_k - CENTER_k)
DRIVER_NAMES = (
    "core_depth",  # log(1 + core events per distinct active user, last 28 days)
    "core_depth_trend",  # core_depth(last 28 days) - core_depth(the 28 days before)
    "eb_engagement",  # log(1 + economic-buyer interactions, last 91 days)
    "support_negative_share",  # share of negative or escalated tickets, last 63 days (0 without tickets)
    "support_negative_rise",  # that share minus the same share over the 63 days before
    "seat_utilisation",  # distinct active users, last 28 days / contracted seats
)
DRIVER_CENTERS = {
    "core_depth": 2.6,
    "core_depth_trend": 0.0,
    "eb_engagement": 1.1,
    "support_negative_share": SHARE_PRIOR,
    "support_negative_rise": 0.0,
    "seat_utilisation": 0.7,
}
GROUND_TRUTH_COEFFICIENTS: dict[str, dict[str, float]] = {
    # small accounts: churn comes through shallow core use and idle seats
    "starter": {
        "core_depth": -1.3,
        "core_depth_trend": -0.7,
        "eb_engagement": -0.35,
        "support_negative_share": 1.2,
        "support_negative_rise": 0.6,
        "seat_utilisation": -4.0,
    },
    "pro": {
        "core_depth": -1.1,
        "core_depth_trend": -0.8,
        "eb_engagement": -0.9,
        "support_negative_share": 2.2,
        "support_negative_rise": 1.0,
        "seat_utilisation": -2.5,
    },
    # large accounts: churn comes through a disengaged economic buyer and escalating support
    "enterprise": {
        "core_depth": -0.6,
        "core_depth_trend": -0.5,
        "eb_engagement": -1.7,
        "support_negative_share": 3.5,
        "support_negative_rise": 1.8,
        "seat_utilisation": -1.2,
    },
}
GROUND_TRUTH_INTERCEPTS: dict[str, dict[str, float]] = {
    "starter": {"annual": -3.85, "monthly": -5.6},
    "pro": {"annual": -3.5, "monthly": -4.4},
    "enterprise": {"annual": -3.1, "monthly": -6.0},
}

WEEK_DAYS = 7
LOGINS_PER_WEEK = 10.0  # median weekly logins of an account (habits vary far more than account sizes do)
ONBOARDING_WEEKS = 6  # a new customer's champion gets about one onboarding email a week for this long
ENGAGED_WEEKLY_ACTIVE = 0.45  # an engaged seat holder uses the product in a given week with this chance
ENGAGEMENT_TYPES = ("email", "meeting", "call", "note")
DIRECTIONS = ("inbound", "outbound")
MEETING_KINDS = ("qbr", "renewal", "check_in", "other")
PRIORITIES = ("low", "medium", "high", "urgent")
SENTIMENTS = ("positive", "neutral", "negative")


@dataclass
class DemoPortal:
    """A generated portal: canonical tables, its manifest, and the ground truth of every renewal decision."""

    tables: dict[str, pl.DataFrame]
    manifest: Manifest
    truth: pl.DataFrame


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _epoch_day(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)).days)


def _add_months(days: np.ndarray, months: np.ndarray | int) -> np.ndarray:
    """Add calendar months to epoch days (day of month is kept; callers keep it at most 28)."""
    d = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    m = d.astype("datetime64[M]")
    dom = (d - m.astype("datetime64[D]")).astype(np.int64)
    shifted = (m + np.asarray(months, dtype=np.int64)).astype("datetime64[D]") + dom
    return shifted.astype(np.int64)


def _ar_step(state: np.ndarray, phi: float, rng: np.random.Generator) -> None:
    """One step of a stationary AR(1) with unit variance, in place."""
    state *= phi
    state += rng.standard_normal(state.shape[0]) * np.sqrt(1.0 - phi * phi)


class _Rows:
    """Column arrays collected week by week, concatenated once at the end."""

    def __init__(self, *names: str) -> None:
        self.parts: dict[str, list[np.ndarray]] = {n: [] for n in names}

    def add(self, **cols: np.ndarray) -> None:
        for name, values in cols.items():
            self.parts[name].append(np.asarray(values))

    def arrays(self) -> dict[str, np.ndarray]:
        """Concatenate every column, releasing the weekly pieces as it goes (keeps peak memory down)."""
        out = {}
        for name in list(self.parts):
            pieces = self.parts.pop(name)
            out[name] = np.concatenate(pieces) if pieces else np.empty(0)
            del pieces
        return out


def _id_series(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    """IDs like 'c00042' from integers, built without a Python loop."""
    return pl.select(
        pl.concat_str(pl.lit(prefix), pl.Series("n", numbers.astype(np.int64)).cast(pl.String).str.zfill(width))
    ).to_series()


def _owner_names(companies: pl.DataFrame) -> dict[str, str]:
    """{owner id: name} for the companies' CS and AE owners ('o0107' -> a name fixed by its number), as a HubSpot
    pull records them, so the demo's account lists name the owners."""
    ids = sorted(set(companies["cs_owner_id"].drop_nulls()) | set(companies["ae_owner_id"].drop_nulls()))
    return {i: f"{OWNER_FIRST[int(i[1:]) % len(OWNER_FIRST)]} {OWNER_LAST[int(i[1:]) % len(OWNER_LAST)]}"
            for i in ids}


def _days_to_datetime(days: np.ndarray, seconds: np.ndarray | None = None) -> pl.Series:
    micros = np.asarray(days, dtype=np.int64) * 86_400_000_000
    if seconds is not None:
        micros = micros + np.asarray(seconds, dtype=np.int64) * 1_000_000
    return pl.Series(micros).cast(pl.Datetime("us", "UTC"))


def generate_demo(companies: int = 3000, seed: int = 7) -> DemoPortal:
    """Generate the demo portal for `companies` customers, deterministically for (`companies`, `seed`).

    The snapshot moment is fixed at 2026-11-15T00:00:00Z; history starts on 2023-10-01 and new customers keep
    arriving until a few weeks before the snapshot.
    """
    if companies < 1:
        raise InputError(f"demo-data: --companies must be at least 1, got {companies}")
    rng = np.random.default_rng(seed)
    n = int(companies)
    t_day = _epoch_day(SNAPSHOT_MOMENT)
    weeks = HISTORY_WEEKS
    g0 = t_day - weeks * WEEK_DAYS  # first day of week 0

    # --- companies: tier, size, contract -------------------------------------------------------------------
    tier = rng.choice(3, size=n, p=TIER_SHARES).astype(np.int8)
    monthly_share = np.array([0.22, 0.10, 0.0])[tier]
    monthly = rng.random(n) < monthly_share
    term_months = np.where(monthly, 1, 12)
    seat_lo = np.array([2, 5, 15])[tier]
    seat_med = np.array([3.0, 8.0, 24.0])[tier]
    seats0 = np.maximum(seat_lo, np.round(seat_med * np.exp(rng.normal(0, 0.45, n)))).astype(np.int64)
    pool = np.maximum(seats0 * 2 + 2, seats0 + 4)  # user slots: room for expansions
    emp_med = np.array([25.0, 150.0, 1500.0])[tier]
    employees = np.round(emp_med * np.exp(rng.normal(0, 0.7, n))).astype(np.int64) + seats0
    fee = np.array([1800.0, 8000.0, 30000.0])[tier] * np.exp(rng.normal(0, 0.12, n))
    seat_price = np.array([600.0, 1400.0, 2400.0])[tier] * np.exp(rng.normal(0, 0.15, n))
    seat_price = np.where(monthly, seat_price * 1.15, seat_price)

    # arrivals: an initial cohort in late 2023, then a growing stream of new customers
    initial = rng.random(n) < 0.24
    late = rng.beta(1.5, 1.0, n)  # density rises over time
    start_week = np.where(initial, rng.integers(0, 12, n), 12 + np.floor(late * (weeks - 15)).astype(np.int64))
    start_day = g0 + start_week * WEEK_DAYS + rng.integers(0, WEEK_DAYS, n)
    sd = start_day.astype("datetime64[D]")
    dom = (sd - sd.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64)
    start_day = np.where(dom > 27, start_day - (dom - 27), start_day).astype(np.int64)
    start_week = (start_day - g0) // WEEK_DAYS
    created_day = start_day - rng.integers(20, 160, n)
    created_sec = rng.integers(8 * 3600, 19 * 3600, n)

    # habits that drive activity signals only: drawn per account, independent of health, seat use and of how
    # many users are active (logins are an account's habit, spread over whichever users are active that week)
    login_level = rng.normal(0.0, 0.5, n)  # SSO, tabs, habits: widely spread, and drifting (see the weekly loop)
    login_drift = rng.standard_normal(n)
    feature_set = rng.random((n, len(FEATURE_EVENTS))) < rng.beta(2.0, 2.0, n)[:, None]  # features it relies on
    feature_p = np.where(feature_set, rng.uniform(0.2, 0.5, n)[:, None], 0.01)  # weekly chance of each one
    open_p = rng.beta(5, 4, n)
    champ_email_rate = np.exp(rng.normal(np.log(np.array([0.25, 0.5, 0.8])[tier]), 0.5))
    ticket_rate = np.exp(rng.normal(np.log(np.array([0.12, 0.17, 0.24])[tier]), 0.6))
    nps_responder = rng.random(n) < 0.45
    nps_level = rng.normal(7.4, 1.6, n)
    nps_offset = rng.integers(8, 30, n)
    core_mix = rng.beta(6, 3, n)  # share of core work done as the first core event

    # latent health: a stable company level plus slowly drifting parts
    mu = rng.standard_normal(n)
    h = rng.standard_normal(n)
    d_own, u_own, e_own, s_own = (rng.standard_normal(n) for _ in range(4))
    eb_quiet = rng.random(n) < np.array([0.10, 0.16, 0.22])[tier]
    quiet_from = start_week + rng.integers(10, 140, n)
    quiet_len = np.where(rng.random(n) < 0.5, rng.integers(8, 30, n), 10_000)
    quiet_to = np.where(eb_quiet, quiet_from + quiet_len, -1)
    quiet_from = np.where(eb_quiet, quiet_from, 10_000_000)

    # --- contacts ------------------------------------------------------------------------------------------
    n_champ = np.where(tier == 0, 1, rng.integers(1, 3, n))
    n_users = np.array([1, 2, 3])[tier] + rng.integers(0, 3, n)
    n_other = rng.integers(0, 3, n)
    # a quiet spell that ends does so because a new economic buyer takes over (a new contact appears)
    eb_change_week = np.where(eb_quiet & (quiet_to < weeks - 1), quiet_to, -1)
    n_eb = 1 + (eb_change_week >= 0)
    n_contacts = n_eb + n_champ + n_users + n_other
    c_off = np.concatenate([[0], np.cumsum(n_contacts)[:-1]])
    first_eb = c_off
    eb_contact = first_eb.copy()  # the economic buyer engaged with now
    champ_first = c_off + n_eb
    user_first = champ_first + n_champ

    # --- user slots (product users behind the seats) ---------------------------------------------------------
    slot_off = np.concatenate([[0], np.cumsum(pool)[:-1]])
    n_slots = int(pool.sum())
    slot_company = np.repeat(np.arange(n), pool)
    slot_k = np.arange(n_slots) - slot_off[slot_company]
    # each user's share of core work done as the first core event, around the account's mix (some specialise)
    slot_mix = rng.beta(2.0 * core_mix[slot_company], 2.0 * (1.0 - core_mix[slot_company]))

    # --- simulation state ------------------------------------------------------------------------------------
    seats = seats0.copy()
    term_end = _add_months(start_day, term_months)
    decision_week = (term_end - WEEK_DAYS - g0) // WEEK_DAYS
    stop_week = np.full(n, weeks + 1, dtype=np.int64)  # first week without activity (after churn)
    ring8 = 8
    act_ring = np.zeros((n_slots, ring8), dtype=bool)
    core_ring = np.zeros((n, ring8))
    eb_ring = np.zeros((n, 13))
    champ_ring = np.zeros((n, 13))
    tk_ring = np.zeros((n, 18))
    neg_ring = np.zeros((n, 18))

    usage = _Rows("slot", "day", "event", "count")
    eng = _Rows("company", "contact", "type", "direction", "day", "sec", "opened", "replied", "kind")
    tix = _Rows("company", "contact", "day", "sec", "priority", "sentiment", "escalated", "csat", "close_hours")
    nps = _Rows("company", "contact", "day", "sec", "score")
    deals = _Rows("company", "type", "stage", "start", "end", "close", "arr", "seats")
    truth = _Rows(
        "deal_serial", "company", "term", "decided_day", "term_end", "p", "churned", "health", "eb_quiet",
        "active_users", "seats", "champion_touches", *DRIVER_NAMES,
    )
    deal_serial = 0

    # first deals: one `new` deal per company, signed shortly before the start
    arr0 = np.round(fee + seat_price * seats0, 2)
    new_close = start_day - rng.integers(0, 21, n)
    order = np.argsort(new_close, kind="stable")
    deals.add(
        company=order, type=np.zeros(n, np.int8), stage=np.ones(n, np.int8), start=start_day[order],
        end=term_end[order], close=new_close[order], arr=arr0[order], seats=seats0[order],
    )
    deal_serial += n
    # a deal's serial is its row in `deals`; ids are given by close date at the end
    coef = {k: np.array([GROUND_TRUTH_COEFFICIENTS[t][k] for t in TIERS]) for k in DRIVER_NAMES}
    intercept = np.array([[GROUND_TRUTH_INTERCEPTS[t]["annual"], GROUND_TRUTH_INTERCEPTS[t]["monthly"]] for t in TIERS])
    tier_i = tier.astype(np.int64)

    for w in range(weeks):
        day0 = g0 + w * WEEK_DAYS
        # latent drift
        _ar_step(h, 0.975, rng)
        for state in (d_own, u_own, e_own, s_own):
            _ar_step(state, 0.96, rng)
        _ar_step(login_drift, 0.9, rng)  # login habits shift over the months (new people, SSO, seasons)
        login_rate = LOGINS_PER_WEEK * np.exp(login_level + 0.6 * login_drift)
        health = 0.6 * mu + 0.8 * h
        quiet_now = (w >= quiet_from) & (w < quiet_to)
        eb_contact = np.where((eb_change_week >= 0) & (w >= eb_change_week), first_eb + 1, first_eb)
        z_depth = 0.7 * health + 0.72 * d_own
        z_util = 0.65 * health + 0.76 * u_own
        z_eb = 0.6 * health + 0.8 * e_own - 2.6 * quiet_now
        z_neg = -0.55 * health + 0.84 * s_own

        # trailing windows (weeks w-1 .. w-k) from the rings
        last4 = [(w - j) % ring8 for j in range(1, 5)]
        prev4 = [(w - j) % ring8 for j in range(5, 9)]
        users_last = np.bincount(slot_company, weights=act_ring[:, last4].any(axis=1), minlength=n)
        users_prev = np.bincount(slot_company, weights=act_ring[:, prev4].any(axis=1), minlength=n)
        core_last = core_ring[:, last4].sum(axis=1)
        core_prev = core_ring[:, prev4].sum(axis=1)
        in_contract = (w >= start_week) & (w < stop_week)

        # --- renewal decisions ----------------------------------------------------------------------------
        deciding = np.flatnonzero(in_contract & (decision_week == w) & (term_end <= t_day))
        if deciding.size:
            c = deciding
            depth_l = np.log1p(core_last[c] / np.maximum(users_last[c], 1))
            depth_p = np.log1p(core_prev[c] / np.maximum(users_prev[c], 1))
            trend = np.where(users_prev[c] > 0, depth_l - depth_p, 0.0)
            eb_eng = np.log1p(eb_ring[c].sum(axis=1))
            t_last = tk_ring[c][:, [(w - j) % 18 for j in range(1, 10)]]
            t_prev = tk_ring[c][:, [(w - j) % 18 for j in range(10, 19)]]
            n_last = neg_ring[c][:, [(w - j) % 18 for j in range(1, 10)]].sum(axis=1)
            n_prev = neg_ring[c][:, [(w - j) % 18 for j in range(10, 19)]].sum(axis=1)
            share_l = (n_last + SHARE_PRIOR_WEIGHT * SHARE_PRIOR) / (t_last.sum(axis=1) + SHARE_PRIOR_WEIGHT)
            share_p = (n_prev + SHARE_PRIOR_WEIGHT * SHARE_PRIOR) / (t_prev.sum(axis=1) + SHARE_PRIOR_WEIGHT)
            util = users_last[c] / seats[c]
            drivers = {
                "core_depth": depth_l,
                "core_depth_trend": trend,
                "eb_engagement": eb_eng,
                "support_negative_share": share_l,
                "support_negative_rise": share_l - share_p,
                "seat_utilisation": util,
            }
            logit = intercept[tier_i[c], monthly[c].astype(np.int64)].copy()
            for k in DRIVER_NAMES:
                logit += coef[k][tier_i[c]] * (drivers[k] - DRIVER_CENTERS[k])
            p = _sigmoid(logit)
            churned = rng.random(c.size) < p
            old_end = term_end[c]
            new_end = _add_months(old_end, term_months[c])
            uplift = np.where(monthly[c], 1.0, 1.0 + rng.uniform(0.0, 0.06, c.size))
            fee[c] *= uplift
            seat_price[c] *= uplift
            arr = np.round(fee[c] + seat_price[c] * seats[c], 2)
            close = np.where(churned, old_end, old_end - rng.integers(0, 8, c.size))
            serials = deal_serial + np.arange(c.size)
            deal_serial += c.size
            deals.add(
                company=c, type=np.ones(c.size, np.int8), stage=np.where(churned, 2, 1).astype(np.int8),
                start=old_end, end=new_end, close=close, arr=arr, seats=seats[c].copy(),
            )
            truth.add(
                deal_serial=serials, company=c, term=monthly[c], decided_day=np.full(c.size, day0),
                term_end=old_end, p=p, churned=churned, health=health[c], eb_quiet=quiet_now[c],
                active_users=users_last[c], seats=seats[c].copy(), champion_touches=champ_ring[c].sum(axis=1),
                **drivers,
            )
            won = c[~churned]
            term_end[won] = new_end[~churned]
            decision_week[won] = (new_end[~churned] - WEEK_DAYS - g0) // WEEK_DAYS
            lost = c[churned]
            stop_week[lost] = (old_end[churned] - g0) // WEEK_DAYS
            decision_week[lost] = -1

        # --- expansions: healthy accounts near full seat use buy more seats mid-term ----------------------
        checkpoint = in_contract & (w > start_week) & ((w - start_week) % 13 == 12) & (stop_week > weeks)
        checkpoint &= (term_end - day0) > np.where(monthly, 12, 45)
        util_now = users_last / np.maximum(seats, 1)
        cand = np.flatnonzero(checkpoint & (util_now >= 0.8) & (health > -0.2) & (seats < pool))
        if cand.size:
            go = rng.random(cand.size) < 0.55
            c = cand[go]
            add = np.maximum(1, np.round(seats[c] * rng.uniform(0.1, 0.45, c.size))).astype(np.int64)
            add = np.minimum(add, pool[c] - seats[c])
            c, add = c[add > 0], add[add > 0]
            if c.size:
                when = day0 + rng.integers(0, WEEK_DAYS, c.size)
                deals.add(
                    company=c, type=np.full(c.size, 2, np.int8), stage=np.ones(c.size, np.int8), start=when,
                    end=term_end[c], close=when, arr=np.round(seat_price[c] * add, 2), seats=add,
                )
                deal_serial += c.size
                seats[c] += add

        # --- product usage -------------------------------------------------------------------------------
        active_c = (w > start_week) & (w < stop_week)
        util_frac = _sigmoid(0.9 + 1.2 * z_util)
        engaged_n = np.clip(np.round(util_frac * seats), 1, seats)
        core_rate = np.array([4.0, 5.0, 6.0])[tier] * np.exp(0.75 * z_depth)
        sc = slot_company
        seated = active_c[sc] & (slot_k < seats[sc])
        engaged = seated & (slot_k < engaged_n[sc])
        draw = rng.random(n_slots)
        working = (engaged & (draw < ENGAGED_WEEKLY_ACTIVE)) | (seated & ~engaged & (draw < 0.03))
        # in a week when nobody works in the product, the account's login habit goes on: its admin (first seat)
        # still signs in, reads a dashboard or two, and does no core work
        idle = np.flatnonzero(active_c & (np.bincount(sc, weights=working, minlength=n) == 0))
        admin_logins = rng.poisson(login_rate[idle])
        woken = idle[admin_logins > 0]
        active = working.copy()
        active[slot_off[woken]] = True
        act_ring[:, w % ring8] = active
        a = np.flatnonzero(active)
        a_c = sc[a]
        n_core = np.where(working[a] & engaged[a], rng.poisson(core_rate[a_c]), 0)
        n_first = rng.binomial(n_core, slot_mix[a])
        n_second = n_core - n_first
        core_ring[:, w % ring8] = np.bincount(a_c, weights=n_core, minlength=n)
        # logins: the account's weekly habit, shared out among its users active this week (some take most)
        weight = rng.gamma(0.25, 1.0, a.size) + 1e-9
        logins = rng.poisson(login_rate[a_c] * weight / np.bincount(a_c, weights=weight, minlength=n)[a_c])
        logins[np.searchsorted(a, slot_off[woken])] = admin_logins[admin_logins > 0]
        # non-core features: the account's habitual set, each used by one of its active users in a week
        users_now = np.bincount(a_c, minlength=n)
        has_users = np.flatnonzero(users_now)
        feat = rng.random((has_users.size, len(FEATURE_EVENTS))) < feature_p[has_users]
        f_row, f_idx = np.nonzero(feat)
        f_comp = has_users[f_row]
        first_active = np.searchsorted(a_c, f_comp)  # `a` is sorted, so each company's active slots are contiguous
        f_slot = first_active + rng.integers(0, 1_000_000, f_comp.size) % users_now[f_comp]
        parts_slot = [a[logins > 0], a[n_first > 0], a[n_second > 0], a[f_slot]]
        parts_event = [
            np.zeros(int((logins > 0).sum()), np.int8),
            np.ones(int((n_first > 0).sum()), np.int8),
            np.full(int((n_second > 0).sum()), 2, np.int8),
            (3 + f_idx).astype(np.int8),
        ]
        parts_count = [logins[logins > 0], n_first[n_first > 0], n_second[n_second > 0],
                       1 + rng.poisson(1.0, f_slot.size)]
        slots_w = np.concatenate(parts_slot)
        days_w = day0 + rng.integers(0, WEEK_DAYS, slots_w.size)
        week_order = np.lexsort((slots_w, days_w))  # rows in time order, then by user
        usage.add(
            slot=slots_w[week_order].astype(np.int32),
            day=days_w[week_order].astype(np.int32),
            event=np.concatenate(parts_event)[week_order],
            count=np.concatenate(parts_count)[week_order].astype(np.int32),
        )

        # --- engagements (CRM activity) --------------------------------------------------------------------
        ac = np.flatnonzero(active_c)
        zt = tier[ac]
        ze = z_eb[ac]
        eb_count = np.zeros(n)
        champ_count = np.zeros(n)

        def emit(comp, contact, etype, direction, opened=None, replied=None, kind=None, day0=day0):
            k = comp.size
            if k == 0:
                return
            eng.add(
                company=comp, contact=contact, type=np.full(k, etype, np.int8),
                direction=np.full(k, direction, np.int8) if np.isscalar(direction) else direction,
                day=day0 + rng.integers(0, WEEK_DAYS, k), sec=rng.integers(7 * 3600, 20 * 3600, k),
                opened=np.full(k, -1, np.int8) if opened is None else opened.astype(np.int8),
                replied=np.full(k, -1, np.int8) if replied is None else replied.astype(np.int8),
                kind=np.full(k, -1, np.int8) if kind is None else np.full(k, kind, np.int8),
            )

        def champion_of(comp):
            return champ_first[comp] + rng.integers(0, 1_000_000, comp.size) % n_champ[comp]

        # outbound emails to champions (an onboarding sequence in the first weeks, then the account's cadence):
        # opens are a habit of the company, not a sign of health
        onboarding = (w - start_week[ac]) <= ONBOARDING_WEEKS
        comp = np.repeat(ac, rng.poisson(champ_email_rate[ac] + onboarding))
        emit(comp, champion_of(comp), 0, 1, opened=rng.random(comp.size) < open_p[comp],
             replied=rng.random(comp.size) < 0.12)
        np.add.at(champ_count, comp, 1)
        # outbound emails to the economic buyer: a reply is engagement
        comp = np.repeat(ac, rng.poisson(np.array([0.05, 0.1, 0.18])[zt]))
        rep = rng.random(comp.size) < _sigmoid(-0.5 + 1.5 * z_eb[comp])
        emit(comp, eb_contact[comp], 0, 1, opened=rng.random(comp.size) < open_p[comp] * 0.9, replied=rep)
        np.add.at(eb_count, comp[rep], 1)
        # inbound emails
        comp = np.repeat(ac, rng.poisson(np.array([0.1, 0.25, 0.35])[zt]))
        emit(comp, champion_of(comp), 0, 0)
        np.add.at(champ_count, comp, 1)
        comp = np.repeat(ac, rng.poisson(np.array([0.02, 0.05, 0.09])[zt] * np.exp(0.9 * ze)))
        emit(comp, eb_contact[comp], 0, 0)
        np.add.at(eb_count, comp, 1)
        # champion check-ins and calls, economic-buyer calls
        comp = np.repeat(ac, rng.poisson(np.array([0.02, 0.07, 0.14])[zt]))
        emit(comp, champion_of(comp), 1, 1, kind=2)
        np.add.at(champ_count, comp, 1)
        comp = np.repeat(ac, rng.poisson(np.array([0.04, 0.08, 0.12])[zt]))
        usr = rng.random(comp.size) < 0.4
        who = np.where(usr, user_first[comp] + rng.integers(0, 1_000_000, comp.size) % n_users[comp],
                       champion_of(comp))
        emit(comp, who, 2, (rng.random(comp.size) < 0.7).astype(np.int8))
        np.add.at(champ_count, comp[~usr], 1)
        comp = np.repeat(ac, rng.poisson(np.array([0.01, 0.025, 0.05])[zt] * np.exp(0.9 * ze)))
        emit(comp, eb_contact[comp], 2, 1)
        np.add.at(eb_count, comp, 1)
        # notes (no contact)
        comp = np.repeat(ac, rng.poisson(0.08, ac.size))
        emit(comp, np.full(comp.size, -1), 3, 1)
        # quarterly business reviews (pro / enterprise): the economic buyer attends when engaged
        qbr = ac[(tier[ac] > 0) & ((w - start_week[ac]) % 13 == 7)]
        with_eb = rng.random(qbr.size) < _sigmoid(0.2 + 1.6 * z_eb[qbr])
        emit(qbr, np.where(with_eb, eb_contact[qbr], champion_of(qbr)), 1, 1, kind=0)
        np.add.at(eb_count, qbr[with_eb], 1)
        np.add.at(champ_count, qbr[~with_eb], 1)
        # renewal preparation, about eight weeks before an annual term ends
        prep = ac[~monthly[ac] & ((term_end[ac] - day0) > 49) & ((term_end[ac] - day0) <= 56)]
        prep = prep[(tier[prep] > 0) | (rng.random(prep.size) < 0.5)]
        with_eb = rng.random(prep.size) < _sigmoid(0.3 + 1.6 * z_eb[prep])
        emit(prep, np.where(with_eb, eb_contact[prep], champion_of(prep)), 1, 1, kind=1)
        np.add.at(eb_count, prep[with_eb], 1)
        np.add.at(champ_count, prep[~with_eb], 1)
        eb_ring[:, w % 13] = eb_count
        champ_ring[:, w % 13] = champ_count

        # --- support tickets: volume is a habit; sentiment and escalation follow support negativity ------
        comp = np.repeat(ac, rng.poisson(ticket_rate[ac]))
        k = comp.size
        p_neg = _sigmoid(-1.7 + 1.1 * z_neg[comp])
        u = rng.random(k)
        sentiment = np.where(u < p_neg, 2, np.where(u < p_neg + 0.3 * (1 - p_neg), 0, 1)).astype(np.int8)
        escalated = rng.random(k) < _sigmoid(-3.4 + 1.3 * z_neg[comp] + 1.2 * (sentiment == 2))
        priority = np.where(escalated, 2 + (rng.random(k) < 0.5), rng.choice(3, size=k, p=(0.45, 0.4, 0.15)))
        csat_base = np.array([4.6, 4.0, 2.4])[sentiment]
        csat = np.clip(np.round(csat_base + rng.normal(0, 0.8, k)), 1, 5)
        csat = np.where(rng.random(k) < 0.3, csat, -1)
        close_hours = rng.exponential(np.where(escalated, 120.0, 30.0))
        tcontact = np.where(rng.random(k) < 0.5, champion_of(comp),
                            user_first[comp] + rng.integers(0, 1_000_000, k) % n_users[comp])
        tcontact = np.where(rng.random(k) < 0.1, -1, tcontact)
        tix.add(company=comp, contact=tcontact, day=day0 + rng.integers(0, WEEK_DAYS, k),
                sec=rng.integers(0, 86_400, k), priority=priority.astype(np.int8), sentiment=sentiment,
                escalated=escalated, csat=csat.astype(np.int8), close_hours=close_hours)
        tk_ring[:, w % 18] = np.bincount(comp, minlength=n)
        neg_ring[:, w % 18] = np.bincount(comp, weights=(sentiment == 2) | escalated, minlength=n)

        # --- yearly NPS: many companies never answer; the score is mostly a habit ---------------------------
        due = ac[nps_responder[ac] & ((w - start_week[ac] - nps_offset[ac]) % 52 == 0) & (w > start_week[ac])]
        due = due[rng.random(due.size) < 0.75]
        score = np.clip(np.round(nps_level[due] + rng.normal(0, 1.2, due.size)), 0, 10)
        who = np.where(rng.random(due.size) < 0.8, champion_of(due), eb_contact[due])
        nps.add(company=due, contact=who, day=day0 + rng.integers(0, WEEK_DAYS, due.size),
                sec=rng.integers(0, 86_400, due.size), score=score)

    # --- open renewals: terms ending after the snapshot, up to 120 days ahead ---------------------------------
    current = np.flatnonzero((stop_week > weeks) & (start_week < weeks) & (term_end > t_day) &
                             ((term_end - t_day) <= 120))
    deals.add(
        company=current, type=np.ones(current.size, np.int8), stage=np.zeros(current.size, np.int8),
        start=term_end[current], end=_add_months(term_end[current], term_months[current]),
        close=np.full(current.size, -1), arr=np.round(fee[current] + seat_price[current] * seats[current], 2),
        seats=seats[current].copy(),
    )

    tables, truth_frame = _assemble(
        n=n, rng=rng, tier=tier, employees=employees, created_day=created_day, created_sec=created_sec,
        n_contacts=n_contacts, c_off=c_off, n_eb=n_eb, n_champ=n_champ, n_users=n_users, start_day=start_day,
        eb_change_day=np.where(eb_change_week >= 0, g0 + eb_change_week * WEEK_DAYS, -1),
        slot_company=slot_company, usage=usage.arrays(), eng=eng.arrays(), tix=tix.arrays(), nps=nps.arrays(),
        deals=deals.arrays(), truth=truth.arrays(), t_day=t_day,
    )
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        source="demo",
        created_at=SNAPSHOT_MOMENT,
        core_events=list(CORE_EVENTS),
        extra={
            "login_event": LOGIN_EVENT,
            "demo": {"companies": n, "seed": int(seed), "generator_version": GENERATOR_VERSION},
            "usage_granularity": "one row per user, day and event, with a count",
            "hubspot": {"owner_names": _owner_names(tables["companies"])},
        },
    )
    return DemoPortal(tables=tables, manifest=manifest, truth=truth_frame)


def _assemble(*, n, rng, tier, employees, created_day, created_sec, n_contacts, c_off, n_eb, n_champ, n_users,
              start_day, eb_change_day, slot_company, usage, eng, tix, nps, deals, truth, t_day) -> tuple[dict, pl.DataFrame]:
    """Turn the simulated arrays into canonical polars tables (and the truth frame)."""
    company_ids = _id_series("c", np.arange(1, n + 1), 5)
    tiers = pl.Series(TIERS)

    # companies
    emp = pl.Series(np.where(rng.random(n) < 0.18, -1, employees)).replace(-1, None)
    industry = pl.Series(INDUSTRIES).gather(rng.integers(0, len(INDUSTRIES), n))
    industry = pl.select(pl.when(pl.Series(rng.random(n) < 0.07)).then(None).otherwise(industry)).to_series()
    names = pl.select(pl.concat_str(
        pl.Series(NAME_FIRST).gather(rng.integers(0, len(NAME_FIRST), n)), pl.lit(" "),
        pl.Series(NAME_SECOND).gather(rng.integers(0, len(NAME_SECOND), n)), pl.lit(" "),
        pl.Series(NAME_SUFFIX).gather(rng.integers(0, len(NAME_SUFFIX), n)),
    ).str.strip_chars()).to_series()
    cs_pool = np.array([8, 12, 6])  # CSMs per tier (starter accounts share a pooled team)
    cs_owner = 100 + np.array([0, 8, 20])[tier] + rng.integers(0, 1_000_000, n) % cs_pool[tier]
    cs_ids = _id_series("o", cs_owner, 4)
    cs_ids = pl.select(pl.when(pl.Series(rng.random(n) < 0.05)).then(None).otherwise(cs_ids)).to_series()
    ae_ids = _id_series("o", 200 + rng.integers(0, 10, n), 4)
    companies = pl.DataFrame({
        "company_id": company_ids,
        "name": names,
        "created_at": _days_to_datetime(created_day, created_sec),
        "tier": tiers.gather(tier.astype(np.int64)),
        "employees": emp.cast(pl.Int64),
        "industry": industry,
        "cs_owner_id": cs_ids,
        "ae_owner_id": ae_ids,
    })

    # contacts: economic buyer, champions, users, others per company
    total = int(n_contacts.sum())
    owner = np.repeat(np.arange(n), n_contacts)
    pos = np.arange(total) - c_off[owner]
    after_eb = pos - n_eb[owner]
    role = np.where(after_eb < 0, 0, np.where(after_eb < n_champ[owner], 1,
                                              np.where(after_eb < n_champ[owner] + n_users[owner], 2, 3)))
    roles = ("economic_buyer", "champion", "user", "other")
    all_titles = [t for r in roles for t in JOB_TITLES[r]]
    first_title = np.cumsum([0] + [len(JOB_TITLES[r]) for r in roles])[:-1]
    n_titles = np.array([len(JOB_TITLES[r]) for r in roles])
    title = first_title[role] + rng.integers(0, 1_000_000, total) % n_titles[role]
    titles = pl.select(pl.when(pl.Series(rng.random(total) < 0.12)).then(None).otherwise(
        pl.Series(all_titles).gather(title))).to_series()
    span = np.maximum(start_day[owner] - created_day[owner], 1)
    contact_day = created_day[owner] + rng.integers(0, 1_000_000, total) % span
    new_buyer = (pos == 1) & (n_eb[owner] == 2)  # the replacement economic buyer joins mid-history
    contact_day = np.where(new_buyer, eb_change_day[owner] - 3, contact_day)
    contact_ids = _id_series("k", np.arange(1, total + 1), 6)
    contacts = pl.DataFrame({
        "contact_id": contact_ids,
        "company_id": company_ids.gather(owner),
        "role": pl.Series(roles).gather(role),
        "created_at": _days_to_datetime(contact_day, rng.integers(0, 86_400, total)),
        "job_title": titles,
    })

    def contact_col(idx: np.ndarray) -> pl.Series:
        idx = idx.astype(np.int64)
        s = contact_ids.gather(np.maximum(idx, 0))
        return pl.select(pl.when(pl.Series(idx < 0)).then(None).otherwise(s)).to_series()

    # deals: numbered in order of close date (open renewals last), as a CRM numbers records it creates
    nd = deals["company"].size
    close = deals["close"].astype(np.int64)
    sort_key = np.where(close >= 0, close, t_day + deals["start"].astype(np.int64))
    deal_rank = np.empty(nd, dtype=np.int64)
    deal_rank[np.argsort(sort_key, kind="stable")] = np.arange(nd)
    deal_frame = pl.DataFrame({
        "deal_id": _id_series("d", deal_rank + 1, 7),
        "company_id": company_ids.gather(deals["company"].astype(np.int64)),
        "deal_type": pl.Series(("new", "renewal", "expansion")).gather(deals["type"].astype(np.int64)),
        "stage": pl.Series(("open", "won", "lost")).gather(deals["stage"].astype(np.int64)),
        "term_start": _days_to_datetime(deals["start"]),
        "term_end": _days_to_datetime(deals["end"]),
        "close_date": _days_to_datetime(np.maximum(close, 0)).to_frame().select(
            pl.when(pl.Series(close < 0)).then(None).otherwise(pl.first())).to_series().alias("close_date"),
        "arr": pl.Series(deals["arr"].astype(np.float64)),
        "seats": pl.Series(deals["seats"].astype(np.int64)),
    }).sort("deal_id")

    # engagements: order by time, ids in that order
    ne = eng["company"].size
    e_order = np.lexsort((eng["sec"], eng["day"]))
    e = {k: v[e_order] for k, v in eng.items()}
    contact = e["contact"].astype(np.int64)
    missing = (rng.random(ne) < 0.05) & (e["type"] != 1)  # emails and calls logged without an association
    contact = np.where(missing, -1, contact)

    def tri(values: np.ndarray) -> pl.Series:
        v = values.astype(np.int64)
        return pl.select(pl.when(pl.Series(v < 0)).then(None).otherwise(pl.Series(v == 1))).to_series()

    kind = e["kind"].astype(np.int64)
    engagements = pl.DataFrame({
        "engagement_id": _id_series("e", np.arange(1, ne + 1), 8),
        "company_id": company_ids.gather(e["company"].astype(np.int64)),
        "contact_id": contact_col(contact),
        "type": pl.Series(ENGAGEMENT_TYPES).gather(e["type"].astype(np.int64)),
        "direction": pl.Series(DIRECTIONS).gather(e["direction"].astype(np.int64)),
        "occurred_at": _days_to_datetime(e["day"], e["sec"]),
        "opened": tri(e["opened"]),
        "replied": tri(e["replied"]),
        "meeting_kind": pl.select(pl.when(pl.Series(kind < 0)).then(None).otherwise(
            pl.Series(MEETING_KINDS).gather(np.maximum(kind, 0)))).to_series(),
    })

    # tickets
    nt = tix["company"].size
    t_order = np.lexsort((tix["sec"], tix["day"]))
    t = {k: v[t_order] for k, v in tix.items()}
    created_us = (t["day"].astype(np.int64) * 86_400 + t["sec"].astype(np.int64)) * 1_000_000
    closed_us = created_us + (t["close_hours"] * 3_600_000_000).astype(np.int64) + 60_000_000
    limit_us = t_day * 86_400 * 1_000_000
    closed_ok = closed_us <= limit_us
    csat = t["csat"].astype(np.int64)
    csat = np.where(closed_ok, csat, -1)
    tickets = pl.DataFrame({
        "ticket_id": _id_series("t", np.arange(1, nt + 1), 7),
        "company_id": company_ids.gather(t["company"].astype(np.int64)),
        "contact_id": contact_col(t["contact"]),
        "created_at": pl.Series(created_us).cast(pl.Datetime("us", "UTC")),
        "closed_at": pl.Series(np.where(closed_ok, closed_us, 0)).cast(pl.Datetime("us", "UTC")).to_frame().select(
            pl.when(pl.Series(~closed_ok)).then(None).otherwise(pl.first())).to_series(),
        "priority": pl.Series(PRIORITIES).gather(t["priority"].astype(np.int64)),
        "sentiment": pl.Series(SENTIMENTS).gather(t["sentiment"].astype(np.int64)),
        "escalated": pl.Series(t["escalated"].astype(bool)),
        "csat": pl.Series(csat).replace(-1, None).cast(pl.Int64),
    })

    # surveys: yearly NPS plus the CSAT answers of closed tickets
    has_csat = csat >= 0
    s_company = np.concatenate([nps["company"].astype(np.int64), t["company"][has_csat].astype(np.int64)])
    s_contact = np.concatenate([nps["contact"].astype(np.int64), t["contact"][has_csat].astype(np.int64)])
    s_us = np.concatenate([
        (nps["day"].astype(np.int64) * 86_400 + nps["sec"].astype(np.int64)) * 1_000_000,
        closed_us[has_csat] + 600_000_000,
    ])
    s_us = np.minimum(s_us, limit_us)
    s_kind = np.concatenate([np.zeros(nps["company"].size, np.int64), np.ones(int(has_csat.sum()), np.int64)])
    s_score = np.concatenate([nps["score"].astype(np.float64), csat[has_csat].astype(np.float64)])
    s_order = np.argsort(s_us, kind="stable")
    ns = s_order.size
    s_contact = np.where(rng.random(ns) < 0.05, -1, s_contact[s_order])
    surveys = pl.DataFrame({
        "response_id": _id_series("s", np.arange(1, ns + 1), 7),
        "company_id": company_ids.gather(s_company[s_order]),
        "contact_id": contact_col(s_contact),
        "submitted_at": pl.Series(s_us[s_order]).cast(pl.Datetime("us", "UTC")),
        "kind": pl.Series(("nps", "csat")).gather(s_kind[s_order]),
        "score": pl.Series(s_score[s_order]),
    })

    # usage events (already in time order, week by week); user ids are product-side ids
    slot = usage.pop("slot")
    usage_events = pl.DataFrame({
        "company_id": company_ids.gather(slot_company[slot]),
        "user_id": _id_series("u", np.arange(1, slot_company.size + 1), 7).gather(slot),
        "occurred_at": _days_to_datetime(usage.pop("day")),
        "event": pl.Series(EVENT_NAMES).gather(usage.pop("event")),
        "count": pl.Series(usage.pop("count")).cast(pl.Int64),
    })
    del slot

    tables = {
        "companies": companies,
        "contacts": contacts,
        "deals": deal_frame,
        "engagements": engagements,
        "tickets": tickets,
        "surveys": surveys,
        "usage_events": usage_events,
    }
    tables = {name: frame.select([pl.col(c.name).cast(c.dtype) for c in TABLES[name].columns])
              for name, frame in tables.items()}

    tr = truth
    deal_ids = _id_series("d", deal_rank[tr["deal_serial"].astype(np.int64)] + 1, 7)
    truth_frame = pl.DataFrame({
        "deal_id": deal_ids,
        "company_id": company_ids.gather(tr["company"].astype(np.int64)),
        "tier": tiers.gather(tier[tr["company"].astype(np.int64)].astype(np.int64)),
        "term": pl.Series(np.where(tr["term"].astype(bool), "monthly", "annual")),
        "decided_at": _days_to_datetime(tr["decided_day"]),
        "term_end": _days_to_datetime(tr["term_end"]),
        "p_churn": pl.Series(tr["p"].astype(np.float64)),
        "churned": pl.Series(tr["churned"].astype(bool)),
        **{k: pl.Series(tr[k].astype(np.float64)) for k in DRIVER_NAMES},
        "active_users_28d": pl.Series(tr["active_users"].astype(np.int64)),
        "seats": pl.Series(tr["seats"].astype(np.int64)),
        "champion_touches_91d": pl.Series(tr["champion_touches"].astype(np.int64)),
        "latent_health": pl.Series(tr["health"].astype(np.float64)),
        "economic_buyer_quiet": pl.Series(tr["eb_quiet"].astype(bool)),
    }).sort("term_end", "deal_id")
    return tables, truth_frame


def truth_readme(truth: pl.DataFrame | None = None) -> str:
    """The README written beside the snapshot: how churn was generated, with every coefficient."""
    lines = [
        "# Ground truth of the demo portal",
        "",
        "This folder sits beside the snapshot, never inside it: nothing here is visible to the suite when it",
        "reads the snapshot. `renewals.parquet` holds one row per renewal decision (a `renewal` deal that was won",
        "or lost on or before the snapshot moment) with the true churn probability `p_churn`, the outcome",
        "`churned`, and the driver values the probability was computed from.",
        "",
        "## How churn was decided",
        "",
        "Every company carries a latent health that drifts slowly from week to week (an AR(1) process around a",
        "stable company level). Four value drivers follow that health, each with its own drift: core-workflow",
        "depth, seat utilisation, economic-buyer engagement and support negativity. Some accounts (more often",
        "large ones) go through a spell where the economic buyer goes quiet while the champion stays active;",
        "about half of those spells end when a new economic buyer (a new contact) takes over.",
        "",
        "Each renewal is decided in the week holding the day seven days before the term ends (`decided_at` is",
        "the first day of that week), from what the tables hold for the whole weeks before it:",
        "",
        "| driver | definition |",
        "|---|---|",
        "| core_depth | ln(1 + core events per distinct active user over the last 4 weeks); core events are the"
        " manifest's `core_events` |",
        "| core_depth_trend | core_depth of the last 4 weeks minus core_depth of the 4 weeks before |",
        "| eb_engagement | ln(1 + interactions with the economic buyer over the last 13 weeks: replied outbound"
        " emails, inbound emails, calls, QBR and renewal meetings) |",
        "| support_negative_share | (negative or escalated tickets + w * prior) / (tickets + w) over the last"
        f" 9 weeks, prior {SHARE_PRIOR:g}, w {SHARE_PRIOR_WEIGHT:g} (smoothed, so one ticket does not decide) |",
        "| support_negative_rise | that share minus the same share over the 9 weeks before |",
        "| seat_utilisation | distinct active users over the last 4 weeks / contracted seats; a user is active"
        " in a week with any usage event (an admin who only signs in counts) |",
        "",
        "The prior of the negative share is about the overall share of negative or escalated tickets, so the",
        "number of tickets alone does not move the expected share.",
        "",
        "    logit(p_churn) = intercept[tier, term] + sum_k coef[tier, k] * (driver_k - center_k)",
        "    churned ~ Bernoulli(p_churn)",
        "",
        "| driver | center | " + " | ".join(TIERS) + " |",
        "|---|---|" + "---|" * len(TIERS),
    ]
    for k in DRIVER_NAMES:
        lines.append(f"| {k} | {DRIVER_CENTERS[k]:g} | "
                     + " | ".join(f"{GROUND_TRUTH_COEFFICIENTS[t][k]:+.2f}" for t in TIERS) + " |")
    lines.append("| intercept, annual term | | " + " | ".join(f"{GROUND_TRUTH_INTERCEPTS[t]['annual']:+.2f}"
                                                       for t in TIERS) + " |")
    lines.append("| intercept, monthly term | | " + " | ".join(f"{GROUND_TRUTH_INTERCEPTS[t]['monthly']:+.2f}"
                                                        for t in TIERS) + " |")
    lines += [
        "",
        "Starter accounts churn mostly through shallow core use and idle seats; enterprise accounts mostly",
        "through a disengaged economic buyer and negative or escalated support. Monthly terms decide every",
        "month with a lower per-decision churn rate: a few percent a month, so over a year month-to-month",
        "plans lose more accounts than annual terms lose at their renewal, as is usual.",
        "",
        "## What carries little or no information",
        "",
        "Email opens, login counts, ticket volume, feature breadth and the yearly NPS come from habits drawn",
        "once per account, independently of health, seat use, the number of active users and (nearly) of",
        "size, so they carry little or no information about churn. They are there to be found weak:",
        "",
        "- Logins: each account signs in at its own weekly rate (a wide log-normal spread, the same for every",
        "  tier, drifting slowly over the months), shared out among whichever of its users are active that",
        "  week. In a week when nobody works in the product, the account's admin (its first seat) still signs",
        "  in at that rate and does no core work, so login counts look healthy while no value is delivered.",
        "- Feature breadth: each account relies on its own set of the non-core features and uses each of them",
        "  in a week with its own chance; rarely one outside the set. Only the two core events (the value",
        "  drivers) follow health, so a breadth count that includes them keeps a faint trace of core use.",
        "- Email opens: each account opens a fixed share of the emails sent to it (champion or economic",
        "  buyer); replies from the economic buyer, not opens, follow engagement. New customers' champions get",
        f"  an onboarding email about weekly for the first {ONBOARDING_WEEKS} weeks, then the account's cadence.",
        "- Ticket volume: each account files tickets at its own rate, only mildly higher for larger tiers;",
        "  the sentiment and escalation of a ticket, not the number of tickets, follow support negativity.",
        "- NPS: a yearly survey many accounts never answer; the score is the account's own level plus noise,",
        "  unrelated to health.",
        "",
        "## Other facts",
        "",
        "- Healthy accounts using 80% or more of their seats get won `expansion` deals mid-term.",
        "- A lost renewal's `close_date` is the churn date (the end of the last term); the company has no",
        "  product usage from that week on. Renewals whose term starts after the snapshot are `open`.",
        "- ARR is annualised for monthly terms too.",
        "- Usage rows are one row per user, day and event with a `count`.",
        "- Missing on purpose: many companies never answer NPS, most tickets have no CSAT, some companies",
        "  have no employee count or industry, some emails and calls are logged without a contact.",
        "",
        "## Columns of renewals.parquet",
        "",
        "deal_id, company_id, tier, term (annual / monthly), decided_at, term_end, p_churn, churned, the six",
        "drivers above, active_users_28d, seats, champion_touches_91d (interactions with champions over the",
        "13 weeks), latent_health (the hidden health at the decision), economic_buyer_quiet (a quiet spell",
        "was running).",
    ]
    if truth is not None and truth.height:
        summary = truth.group_by("tier", "term").agg(
            pl.len().alias("decisions"), pl.col("churned").mean().alias("churn_rate"),
            pl.col("p_churn").mean().alias("mean_p"),
        ).sort("tier", "term")
        lines += ["", "## This portal", "", "| tier | term | decisions | churn rate | mean p_churn |",
                  "|---|---|---|---|---|"]
        for row in summary.iter_rows(named=True):
            lines.append(f"| {row['tier']} | {row['term']} | {row['decisions']} | {row['churn_rate']:.3f} |"
                         f" {row['mean_p']:.3f} |")
    return "\n".join(lines) + "\n"


def truth_folder(out: str | Path) -> Path:
    """Where the ground truth of the snapshot `out` is written: `<out>.truth/`."""
    out = Path(out)
    return out.with_name(out.name + ".truth")


def write_demo(out: str | Path, companies: int = 3000, seed: int = 7, fmt: str = "parquet") -> Path:
    """Generate the demo portal and write it as a snapshot at `out`, its ground truth in `<out>.truth/`."""
    return _write_portal(out, companies, seed, fmt)[0]


def _write_portal(out: str | Path, companies: int, seed: int, fmt: str) -> tuple[Path, DemoPortal]:
    out = Path(out)
    if fmt not in ("parquet", "csv"):
        raise InputError(f"unknown snapshot format {fmt!r}: use parquet or csv")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists: a snapshot is never overwritten; choose a new folder")
    portal = generate_demo(companies=companies, seed=seed)
    write_snapshot(portal.tables, portal.manifest, out, fmt=fmt)
    truth_dir = truth_folder(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{truth_dir.name}.", suffix=".tmp", dir=truth_dir.parent))
    try:
        portal.truth.write_parquet(staging / "renewals.parquet")
        (staging / "README.md").write_text(truth_readme(portal.truth), encoding="utf-8")
        if truth_dir.exists():  # the stale truth of a snapshot that no longer exists
            shutil.rmtree(truth_dir)
        os.replace(staging, truth_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out, portal


def cli_demo_data(args) -> int:
    """`hsutils demo-data --out DIR [--companies N] [--seed S] [--format parquet|csv]`."""
    out, portal = _write_portal(args.out, args.companies, args.seed, getattr(args, "format", "parquet"))
    rows = ", ".join(f"{name} {frame.height:,}" for name, frame in portal.tables.items())
    truth = portal.truth
    annual = truth.filter(pl.col("term") == "annual")
    rate = f"{annual['churned'].mean():.1%}" if annual.height else "n/a"
    print(f"demo portal: {counted(args.companies, 'company')} written to {out} ({rows})")
    print(f"ground truth: {counted(truth.height, 'renewal decision')} (annual churn rate {rate}) in {truth_folder(out)}")
    return 0
