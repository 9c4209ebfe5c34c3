"""Every shipped experiment runs at its CI size and matches its golden summary.

A golden file is ``tests/golden/<experiment>.json``: the summary at the CI size (the file's
``ci:`` block, if any). Changing one is a deliberate commit: rerun with
``SIMTOPO_UPDATE_GOLDEN=1 python -m pytest tests/test_experiments.py`` and review the diff.
"""

from __future__ import annotations

import os

import pytest

from simtopo.regress import compare_summaries, read_golden, write_golden
from simtopo.runner import run

from .conftest import ROOT

EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))
GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("SIMTOPO_UPDATE_GOLDEN") == "1"


def test_the_issue_lists_are_shipped():
    names = {p.stem for p in EXPERIMENTS}
    assert {"ultra8", "standard-gptj", "ultra-card-llama2-7b", "mdp-examples",
            "std8-pipeline"} <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_matches_its_golden_summary(path):
    summary = run(path, reduced=True).summary()
    golden = GOLDEN / f"{path.stem}.json"
    if UPDATE:
        write_golden(summary, golden)
    assert golden.is_file(), f"no golden summary for {path.name}: see this module's docstring"
    differences = compare_summaries(read_golden(golden), summary)
    assert not differences, "\n".join(str(d) for d in differences[:20])


def test_the_committed_ultra8_report_is_current():
    """reports/ultra8/ is what `simtopo run experiments/ultra8.yaml` writes (ultra8 runs at
    full size in CI, so its golden summary is the report's)."""
    report = ROOT / "reports" / "ultra8"
    assert compare_summaries(read_golden(GOLDEN / "ultra8.json"),
                             read_golden(report / "summary.json")) == []
    names = {p.name for p in report.iterdir()}
    assert {"summary.json", "report.md", "trace.json", "comparison.png"} <= names
