"""Every shipped experiment runs at its baseline's size and matches its baseline summary.

A baseline is ``reports/baselines/<experiment>.json`` (see :mod:`simtopo.baselines`): the
summary at full size or at the experiment's ``ci:`` size. Changing one is a deliberate commit:
``simtopo check reports/baselines/ --update``, then review the diff.
"""

from __future__ import annotations

import pytest

from simtopo.analysis.baselines import check, read_baseline
from simtopo.analysis.regress import compare_summaries, read_golden

from .conftest import ROOT

EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))
BASELINES = ROOT / "reports" / "baselines"


def test_the_issue_lists_are_shipped():
    names = {p.stem for p in EXPERIMENTS}
    assert {"ultra8", "standard-gptj", "ultra-card-llama2-7b", "mdp-examples",
            "std8-pipeline", "load-llama-405b", "load-ultra8", "serving-ultra8",
            "trn2-llama-405b"} <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_matches_its_baseline(path):
    baseline_file = BASELINES / f"{path.stem}.json"
    assert baseline_file.is_file(), (f"no baseline for {path.name}: simtopo check "
                                     f"reports/baselines --add {path.relative_to(ROOT)}")
    baseline = read_baseline(baseline_file)
    assert baseline.experiment == path.resolve()
    result = check(baseline)
    assert result.passed, "\n".join(str(d) for d in result.differences[:20])


def test_the_committed_ultra8_report_is_current():
    """reports/ultra8/ is what `simtopo run experiments/ultra8.yaml` writes (the ultra8
    baseline is at full size, so its summary is the report's)."""
    baseline = read_baseline(BASELINES / "ultra8.json")
    assert not baseline.header.reduced
    report = ROOT / "reports" / "ultra8"
    assert compare_summaries(baseline.summary, read_golden(report / "summary.json")) == []
    names = {p.name for p in report.iterdir()}
    assert {"summary.json", "report.md", "trace.json", "comparison.png"} <= names
