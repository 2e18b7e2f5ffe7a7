"""A straightforward pandas implementation of the panel, the way an analyst would first write it.

It loops over the as-of dates and, for each one, filters every table to the rows dated at or before it and
groups by company. It follows the same definitions as `hsutils.panel.build_panel` (see hsutils.signals) and
is the reference both for correctness (a test compares the two on a small portal) and for speed (`make bench`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

TABLES = ("companies", "contacts", "deals", "engagements", "tickets", "surveys", "usage_events")
DAY = pd.Timedelta(days=1)


def read_tables(folder: str | Path) -> tuple[dict[str, pd.DataFrame], dict]:
    """Read a parquet snapshot folder with pandas: the tables and the manifest."""
    folder = Path(folder)
    tables = {t: pd.read_parquet(folder / f"{t}.parquet") for t in TABLES}
    for frame in tables.values():  # dictionary (Categorical) columns as plain text, as an analyst would have them
        for column in frame.select_dtypes("category").columns:
            frame[column] = frame[column].astype(object)
    manifest = json.loads((folder / "manifest.json").read_text())
    return tables, manifest


def _days(delta: pd.Series) -> pd.Series:
    return delta / DAY


def panel_pandas(tables: dict[str, pd.DataFrame], manifest: dict, as_of_dates=None, horizon_days: int = 90) -> pd.DataFrame:
    """The panel computed with pandas, one as-of date at a time."""
    companies, contacts, deals = tables["companies"], tables["contacts"], tables["deals"]
    engagements, tickets, surveys, usage = tables["engagements"], tables["tickets"], tables["surveys"], tables["usage_events"]
    core_events = list(manifest["core_events"])
    login_event = manifest.get("login_event") or "login"
    created_at = pd.Timestamp(manifest["created_at"]).tz_convert("UTC")

    terms = deals[deals.deal_type.isin(["new", "renewal"]) & (deals.stage == "won") & deals.close_date.notna()].copy()
    terms["effective_start"] = terms[["term_start", "close_date"]].max(axis=1)
    tenure_start = terms.groupby("company_id").effective_start.min()
    expansions = deals[(deals.deal_type == "expansion") & (deals.stage == "won") & deals.close_date.notna()].copy()
    expansions["effective_start"] = expansions[["term_start", "close_date"]].max(axis=1)
    lost = deals[(deals.deal_type == "renewal") & (deals.stage == "lost") & deals.close_date.notna()]

    if as_of_dates is None:
        last = created_at.normalize()
        first = terms.loc[terms.term_end > terms.effective_start, "effective_start"].min()
        weeks = int((last - first) // pd.Timedelta(weeks=1))
        as_of_dates = [last - pd.Timedelta(weeks=w) for w in range(weeks, -1, -1)]

    buyers = contacts[contacts.role == "economic_buyer"][["contact_id", "created_at"]].rename(columns={"created_at": "contact_created"})
    eb = engagements.merge(buyers, on="contact_id")
    eb = eb[eb.contact_created <= eb.occurred_at].copy()
    is_email = eb.type == "email"
    eb["reply"] = is_email & (eb.replied.fillna(False).astype(bool) | (eb.direction == "inbound"))
    eb["points"] = (eb.reply.astype(float) + (eb.type == "meeting") + ((eb.type == "meeting") & eb.meeting_kind.isin(["qbr", "renewal"]))
                    + (eb.type == "call"))
    eb["touch"] = eb.reply | eb.type.isin(["meeting", "call"])
    emails = engagements[(engagements.type == "email") & (engagements.direction == "outbound")]
    tickets = tickets.assign(negative=(tickets.sentiment == "negative") | tickets.escalated.fillna(False).astype(bool))
    nps = surveys[surveys.kind == "nps"].sort_values(["submitted_at", "response_id"])

    rows = []
    for as_of in as_of_dates:
        as_of = pd.Timestamp(as_of)
        # contract term in force and known at as-of
        live = terms[(terms.effective_start <= as_of) & (terms.term_end > as_of)]
        live = live.sort_values(["company_id", "effective_start", "term_end", "deal_id"]).groupby("company_id").tail(1)
        gone = lost[lost.close_date <= as_of].groupby("company_id").close_date.max()
        live = live.assign(lost_close=gone.reindex(live.company_id).array)
        live = live[live.lost_close.isna() | (live.lost_close < live.term_start)]
        if live.empty:
            continue
        frame = pd.DataFrame({
            "company_id": live.company_id.values, "as_of": as_of, "term_deal_id": live.deal_id.values,
            "term_start": live.term_start.array, "term_end": live.term_end.array,
            "arr": live.arr.values, "contracted_seats": live.seats.values.astype(float),
        }).set_index("company_id")
        exp = expansions[(expansions.effective_start <= as_of) & (expansions.term_end > as_of)].groupby("company_id")[["arr", "seats"]].sum()
        frame["arr"] += exp.arr.reindex(frame.index).fillna(0.0)
        frame["contracted_seats"] += exp.seats.reindex(frame.index).fillna(0.0)

        # usage
        recent = usage[(usage.occurred_at > as_of - 28 * DAY) & (usage.occurred_at <= as_of)]
        active = recent.groupby("company_id").user_id.nunique().reindex(frame.index).fillna(0.0)
        core = recent[recent.event.isin(core_events)].groupby("company_id")["count"].sum().reindex(frame.index).fillna(0.0)
        frame["active_seats"] = active
        frame["core_depth"] = np.where(active > 0, core / active.where(active > 0, 1), 0.0)
        weekly = []
        for week in range(8):  # week 0 = the oldest of the eight
            hi = as_of - (7 - week) * 7 * DAY
            part = usage[(usage.occurred_at > hi - 7 * DAY) & (usage.occurred_at <= hi) & usage.event.isin(core_events)]
            weekly.append(part.groupby("company_id")["count"].sum().reindex(frame.index).fillna(0.0))
        counts = pd.concat(weekly, axis=1).to_numpy()
        x = np.arange(8) - 3.5
        slope = counts @ x / (x**2).sum()
        mean = counts.mean(axis=1)
        trend = np.where(mean > 0, slope / np.where(mean > 0, mean, 1), 0.0)
        tenure = frame.index.map(tenure_start)
        frame["core_depth_trend"] = np.where((as_of - tenure) >= pd.Timedelta(weeks=8), trend, np.nan)
        frame["seat_utilisation"] = np.where(frame.contracted_seats > 0, frame.active_seats / frame.contracted_seats.where(frame.contracted_seats > 0, 1), np.nan)
        frame["days_to_renewal"] = _days(frame.term_end - as_of)
        frame["logins_28d"] = recent[recent.event == login_event].groupby("company_id")["count"].sum().reindex(frame.index).fillna(0.0)
        frame["feature_breadth_28d"] = recent[(recent.event != login_event) & ~recent.event.isin(core_events)].groupby("company_id").event.nunique().reindex(frame.index).fillna(0.0)

        # economic buyer
        eb_seen = eb[eb.occurred_at <= as_of]
        eb_90 = eb_seen[eb_seen.occurred_at > as_of - 90 * DAY]
        frame["eb_engagement"] = eb_90.groupby("company_id").points.sum().reindex(frame.index).fillna(0.0)
        last_touch = eb_seen[eb_seen.touch].groupby("company_id").occurred_at.max().reindex(frame.index)
        frame["eb_days_since_touch"] = _days(as_of - last_touch).clip(upper=365).fillna(365.0)

        # support
        shares = []
        for lo_days, hi_days in ((0, 60), (60, 120)):
            part = tickets[(tickets.created_at > as_of - hi_days * DAY) & (tickets.created_at <= as_of - lo_days * DAY)]
            shares.append(part.groupby("company_id").negative.mean().reindex(frame.index).fillna(0.0))
        now, before = shares
        frame["support_negative_share"] = now
        frame["support_negative_trend"] = now - before
        t90 = tickets[(tickets.created_at > as_of - 90 * DAY) & (tickets.created_at <= as_of)]
        frame["ticket_volume_90d"] = t90.groupby("company_id").size().reindex(frame.index).fillna(0.0)

        # activity
        e90 = emails[(emails.occurred_at > as_of - 90 * DAY) & (emails.occurred_at <= as_of)]
        frame["email_open_rate"] = e90.opened.fillna(False).astype(float).groupby(e90.company_id).mean().reindex(frame.index)
        frame["latest_nps"] = nps[nps.submitted_at <= as_of].groupby("company_id").score.last().reindex(frame.index)
        rows.append(frame.reset_index())

    panel = pd.concat(rows, ignore_index=True)

    # segments
    rank = panel.groupby("as_of").arr.rank(method="min", ascending=False)
    cut = np.ceil(panel.groupby("as_of").arr.transform("size") * 0.2)
    panel["arr_segment"] = np.where(rank <= cut, "high_touch", "scaled")
    comp = companies.set_index("company_id")
    panel["tier"] = panel.company_id.map(comp.tier)
    emp = panel.company_id.map(comp.employees)
    panel["size_bucket"] = np.select(
        [emp.isna() | (emp <= 0), emp < 50, emp < 200, emp < 1000], ["unknown", "1-49", "50-199", "200-999"], "1000+"
    )

    # outcomes: another renewal deal whose term_start is nearest the current term's end (within 45 days); of equally
    # near ones a decided deal before an open one, then the latest closed, then the highest deal_id
    renewals = deals[deals.deal_type == "renewal"][["company_id", "deal_id", "term_start", "stage", "close_date"]]
    renewals = renewals.rename(columns={"deal_id": "renewal_id", "term_start": "renewal_start"})
    term_ends = panel[["term_deal_id", "company_id", "term_end"]].drop_duplicates()
    matched = term_ends.merge(renewals, on="company_id")
    matched["distance"] = (matched.renewal_start - matched.term_end).abs()
    matched["open"] = ~matched.stage.isin(["won", "lost"])
    matched = matched[(matched.renewal_id != matched.term_deal_id) & (matched.distance <= pd.Timedelta(days=45))]
    matched = matched.sort_values(["distance", "open", "close_date", "renewal_id"], ascending=[True, True, False, False],
                                  na_position="last").drop_duplicates("term_deal_id").set_index("term_deal_id")
    stage = panel.term_deal_id.map(matched.stage)
    close = panel.term_deal_id.map(matched.close_date)
    horizon = pd.Timedelta(days=horizon_days)
    in_horizon = (panel.term_end > panel.as_of) & (panel.term_end <= panel.as_of + horizon)
    panel["outcome_churned"] = np.where(in_horizon & (stage == "lost"), 1.0, np.where(in_horizon & (stage == "won"), 0.0, np.nan))
    churn_date = close.fillna(panel.term_end)
    panel["outcome_days_to_churn"] = np.where(panel.outcome_churned == 1, _days(churn_date - panel.as_of), np.nan)
    # the first won expansion closing strictly after as-of
    closes = expansions[["company_id", "close_date"]].sort_values("close_date")
    closes = closes.assign(close_date=closes.close_date - pd.Timedelta(microseconds=1))  # strictly after as-of
    panel = pd.merge_asof(panel.sort_values("as_of"), closes.rename(columns={"close_date": "next_expansion"}),
                          left_on="as_of", right_on="next_expansion", by="company_id", direction="forward")
    next_close = panel.next_expansion + pd.Timedelta(microseconds=1)
    hit = next_close.notna() & (next_close <= panel.as_of + horizon)
    panel["outcome_expanded"] = np.where(hit, 1.0, np.where(panel.as_of + horizon <= created_at, 0.0, np.nan))
    panel = panel.drop(columns="next_expansion")
    return panel.sort_values(["as_of", "company_id"]).reset_index(drop=True)


def run(folder: str | Path, horizon_days: int = 90) -> int:
    """Read a parquet snapshot and build the pandas panel; returns its row count (for the benchmark)."""
    tables, manifest = read_tables(folder)
    return len(panel_pandas(tables, manifest, horizon_days=horizon_days))


if __name__ == "__main__":  # pragma: no cover
    import sys

    started = pd.Timestamp.now()
    print(run(sys.argv[1]), "rows in", pd.Timestamp.now() - started)
