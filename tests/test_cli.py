"""The command line as DESIGN.md documents it: every documented form parses with its documented names and
defaults, and the forms other test files do not run are run here."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request

import polars as pl
import pytest
import yaml

from hsutils.cli import build_parser, main
from hsutils.errors import counted

# DESIGN.md, "Public interface": each documented form and the values its options take by default
DOCUMENTED = [
    (["demo-data", "--out", "D"], {"out": "D", "companies": 3000, "seed": 7}),
    (["demo-data", "--out", "D", "--companies", "300", "--seed", "3"], {"companies": 300, "seed": 3}),
    (["validate", "D"], {"dir": "D"}),
    (["panel", "D", "--out", "p.parquet"], {"dir": "D", "out": "p.parquet", "horizon_days": 90}),
    (["panel", "D", "--out", "p.csv", "--horizon-days", "60"], {"horizon_days": 60}),
    (["fit", "D", "--out", "m.yml"], {"dir": "D", "out": "m.yml", "horizon_days": 90, "cutoff": None}),
    (["fit", "D", "--out", "m.yml", "--horizon-days", "60", "--cutoff", "2026-01-01"],
     {"horizon_days": 60, "cutoff": "2026-01-01"}),
    (["score", "D", "--model", "m.yml", "--out", "s.parquet"], {"model": "m.yml", "out": "s.parquet", "as_of": None}),
    (["score", "D", "--model", "m.yml", "--out", "s.csv", "--as-of", "2026-09-01"], {"as_of": "2026-09-01"}),
    (["report", "D", "--period", "2026Q4"], {"dir": "D", "period": "2026Q4", "out": "reports"}),
    (["report", "D", "--period", "2026Q4", "--out", "r/"], {"out": "r/"}),
    (["pull", "--out", "D"], {"out": "D", "host": "https://api.hubapi.com"}),
    (["pull", "--out", "D", "--host", "http://127.0.0.1:9"], {"host": "http://127.0.0.1:9"}),
    (["push", "--model", "m.yml", "--scores", "s.parquet"],
     {"model": "m.yml", "scores": "s.parquet", "apply": False, "host": "https://api.hubapi.com"}),
    (["push", "--model", "m.yml", "--scores", "s.parquet", "--apply", "--host", "http://127.0.0.1:9"],
     {"apply": True, "host": "http://127.0.0.1:9"}),
    (["sandbox"], {"port": 8765, "snapshot": None}),
    (["sandbox", "--port", "9000", "--snapshot", "D"], {"port": 9000, "snapshot": "D"}),
]


@pytest.mark.parametrize(("argv", "expected"), DOCUMENTED, ids=[" ".join(argv) for argv, _ in DOCUMENTED])
def test_every_documented_form_parses_with_its_documented_defaults(argv, expected):
    args = build_parser().parse_args(argv)
    assert args.command == argv[0]
    assert {key: getattr(args, key) for key in expected} == expected


@pytest.mark.parametrize("argv", [["panel", "D"], ["fit", "D"], ["score", "D", "--out", "s.csv"],
                                  ["report", "D"], ["pull"], ["push", "--model", "m.yml"]])
def test_a_documented_required_option_left_out_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and "required" in capsys.readouterr().err


def test_fit_with_cutoff_and_horizon_then_score_and_evaluate_it(small_demo, tmp_path, capsys):
    """`fit DIR --out MODEL.yml --horizon-days 60 --cutoff DATE` trains before the cutoff on the given horizon;
    `score` writes one row per company with the documented columns; a signal named twice counts once."""
    model = tmp_path / "model.yml"
    assert main(["fit", str(small_demo), "--out", str(model), "--horizon-days", "60", "--cutoff", "2026-03-01",
                 "--signals", "core_depth,seat_utilisation,core_depth"]) == 0
    content = yaml.safe_load(model.read_text())
    assert content["training"]["cutoff"] == "2026-03-01T00:00:00Z" and content["training"]["horizon_days"] == 60
    assert content["training"]["to"] <= "2026-01-01"  # outcome windows closed by the cutoff: as-of + 60 days
    assert content["columns"] == ["core_depth", "seat_utilisation"]
    scores = tmp_path / "scores.csv"
    assert main(["score", str(small_demo), "--model", str(model), "--out", str(scores)]) == 0
    table = pl.read_csv(scores)
    assert table.columns[:5] == ["company_id", "as_of", "health_score", "band", "churn_probability"]
    assert {"points_core_depth", "points_seat_utilisation"} <= set(table.columns)
    assert table["company_id"].n_unique() == table.height and table["health_score"].is_between(0, 100).all()
    assert main(["evaluate", str(small_demo), "--model", str(model), "--out", str(tmp_path / "m.json"),
                 "--horizon-days", "60"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_python_dash_m_runs_the_command_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "hsutils", "validate", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("hsutils validate: error: ")


def test_sandbox_serves_a_snapshot_on_the_port_given_until_interrupted(small_demo):
    """`hsutils sandbox --port P --snapshot DIR` serves the snapshot's companies on loopback (token 'sandbox'
    without HUBSPOT_ACCESS_TOKEN) and stops cleanly on Ctrl-C."""
    env = {k: v for k, v in os.environ.items() if k != "HUBSPOT_ACCESS_TOKEN"}
    server = subprocess.Popen([sys.executable, "-m", "hsutils", "sandbox", "--port", "0", "--snapshot",
                               str(small_demo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = server.stdout.readline()
        assert line.startswith("HubSpot stand-in on http://127.0.0.1:") and "bearer token 'sandbox'" in line, line
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        request = urllib.request.Request(f"{url}/crm/v3/objects/companies?limit=2",
                                         headers={"Authorization": "Bearer sandbox"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200 and b'"results"' in answer.read()
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
        assert "stand-in stopped" in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_fit_on_a_portal_without_surveys_says_each_warning_once(small_demo, tmp_path):
    """A portal without NPS surveys (an empty surveys table): `hsutils fit` warns that latest_nps has nothing to
    read and that it earns no points, each once, though the fitted score and the 40/30/30 preset both lose it."""
    snapshot = tmp_path / "no surveys"
    shutil.copytree(small_demo, snapshot)
    surveys = snapshot / "surveys.parquet"
    pl.read_parquet(surveys).clear().write_parquet(surveys)
    done = subprocess.run([sys.executable, "-m", "hsutils", "fit", str(snapshot), "--out", str(tmp_path / "m.yml")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if line.strip()]
    assert warned and all(line.startswith("hsutils fit: warning: ") for line in warned), done.stderr
    assert len(warned) == len(set(warned)), done.stderr
    assert len([line for line in warned if re.search(r"latest_nps .*no values.* no points", line)]) == 1, done.stderr
    assert any("table surveys has no rows" in line for line in warned), done.stderr


@pytest.mark.parametrize(("count", "noun", "plural", "words"), [
    (1, "company", None, "1 company"), (0, "company", None, "0 companies"), (1204, "company", None, "1,204 companies"),
    (1, "row", None, "1 row"), (2, "row", None, "2 rows"), (3, "day", None, "3 days"),
    (2, "property value", None, "2 property values"), (2, "analysis", "analyses", "2 analyses"),
])
def test_counts_in_messages_name_one_in_the_singular(count, noun, plural, words):
    assert counted(count, noun, plural) == words
