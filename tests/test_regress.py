"""The golden-summary comparison: what counts as a difference, and how it reads."""

from __future__ import annotations

import pytest

from simtopo.analysis.regress import Difference, compare_summaries

GOLDEN = {
    "simtopo_version": "0.1.0",
    "variants": [
        {"name": "a", "metrics": {"ttft_s": 0.5, "tpot_mean_s": 0.1, "step_bubble_s": 0.0},
         "links": [{"link": "x->y", "bytes": 100.0}]},
        {"name": "b", "metrics": {"ttft_s": 1.0}, "connection": "host"},
    ],
}


def changed(**edits):
    out = {"simtopo_version": GOLDEN["simtopo_version"],
           "variants": [dict(v, metrics=dict(v["metrics"])) for v in GOLDEN["variants"]]}
    for key, value in edits.items():
        out["variants"][0]["metrics"][key] = value
    return out


def test_identical_summaries_have_no_differences():
    assert compare_summaries(GOLDEN, changed()) == []


def test_version_is_ignored():
    other = changed()
    other["simtopo_version"] = "9.9"
    assert compare_summaries(GOLDEN, other) == []


def test_relative_tolerance_per_metric():
    # 0.1 -> 0.1005 is +0.5%: beyond the default, within a 1% tolerance for that metric
    (diff,) = compare_summaries(GOLDEN, changed(tpot_mean_s=0.1005))
    assert diff.path == "variants[a].metrics.tpot_mean_s"
    assert diff.relative == pytest.approx(0.0005 / 0.1)  # relative to the baseline
    assert str(diff) == ("variants[a].metrics.tpot_mean_s: 0.1 -> 0.1005 (+0.5%, "
                         "tolerance 0.0001%)")
    assert compare_summaries(GOLDEN, changed(tpot_mean_s=0.1005), {"tpot_mean_s": 0.01}) == []
    assert compare_summaries(GOLDEN, changed(tpot_mean_s=0.1005), default=0.01) == []


def test_noise_around_zero_is_not_a_difference():
    assert compare_summaries(GOLDEN, changed(step_bubble_s=3e-15)) == []
    (diff,) = compare_summaries(GOLDEN, changed(step_bubble_s=1e-6))
    assert diff.path == "variants[a].metrics.step_bubble_s"


def test_missing_and_extra_keys_and_strings_are_exact():
    other = changed(new_metric=1.0)
    del other["variants"][0]["metrics"]["ttft_s"]
    other["variants"][1]["connection"] = "p2p"
    found = {d.path: str(d) for d in compare_summaries(GOLDEN, other)}
    assert found == {
        "variants[a].metrics.new_metric": "variants[a].metrics.new_metric: expected nothing, "
                                          "got 1.0",
        "variants[a].metrics.ttft_s": "variants[a].metrics.ttft_s: expected 0.5, got nothing",
        "variants[b].connection": 'variants[b].connection: expected "host", got "p2p"',
    }


def test_list_lengths_are_compared():
    other = changed()
    other["variants"][0]["links"] = []
    (diff,) = compare_summaries(GOLDEN, other)
    assert (diff.path, diff.expected, diff.actual) == ("variants[a].links (length)", 1, 0)


def test_named_items_pair_by_name_wherever_they_moved():
    # a variant inserted before the others, one reordered: each compared with its namesake
    other = changed()
    other["variants"] = [{"name": "new", "metrics": {}}, other["variants"][1],
                         other["variants"][0]]
    (diff,) = compare_summaries(GOLDEN, other)
    assert (diff.path, str(diff)) == ("variants[new]", 'variants[new]: expected nothing, got '
                                      '{"metrics": {}, "name": "new"}')
    other["variants"] = other["variants"][1:2]
    (diff,) = compare_summaries(GOLDEN, other)
    assert diff.path == "variants[a]" and diff.variant == "a"
    assert Difference("servings[x].metrics.ttft_p99_s", 1.0, 2.0, 0.0).variant == "x"


def test_a_difference_knows_its_variant_key_and_which_way_is_better():
    from simtopo.analysis.regress import Difference, better_when

    slower = Difference("variants[tp16-host].metrics.ttft_s", 1.0, 1.05, 1e-6)
    assert (slower.variant, slower.key, slower.verdict) == ("tp16-host", "ttft_s", "worse")
    faster = Difference("variants[a].metrics.tokens_per_s", 10.0, 11.0, 1e-6)
    assert faster.verdict == "better"
    busier = Difference("variants[a].links[sw0->rc0].utilization", 0.5, 0.4, 1e-6)
    assert (busier.key, busier.verdict) == ("utilization", "down")
    assert Difference("comparisons[0].ttft_s_speedup", 5.0, 4.0, 1e-6).verdict == "worse"
    assert Difference("experiment", "a", "b").verdict == "changed"
    assert [better_when(k) for k in ("e2e_s", "inferences_per_s", "bytes")] == \
        ["lower", "higher", None]


def test_absolute_floor_per_unit_and_dotted_tolerances():
    # the case: a communication time of 2.8e-14 s becoming 1.1e-12 s is +3829% but
    # below the 1 ns floor for times, so it is noise, whatever the relative tolerance
    base = {"variants": [{"name": "a", "metrics": {"ttft_s": 1.0},
                          "socs": [{"soc": "s0", "comm_s": 2.8e-14, "bytes": 10.0}]}]}
    noisy = {"variants": [{"name": "a", "metrics": {"ttft_s": 1.0},
                           "socs": [{"soc": "s0", "comm_s": 1.1e-12, "bytes": 10.0}]}]}
    assert compare_summaries(base, noisy) == []
    # 2 ns is above the floor
    noisy["variants"][0]["socs"][0]["comm_s"] = 2e-9
    (diff,) = compare_summaries(base, noisy)
    assert diff.relative == pytest.approx((2e-9 - 2.8e-14) / 2.8e-14)
    # a dotted key matches the tail of the path; the longest match wins over the last key
    assert compare_summaries(base, noisy, {"socs.comm_s": 1e6}) == []
    assert compare_summaries(base, noisy, {"comm_s": 1e6, "socs.comm_s": 0.0}) != []
    # a byte count of 10 -> 10.9 moves by less than one byte: noise; 12 is a difference
    noisy["variants"][0]["socs"][0].update(comm_s=2.8e-14, bytes=10.9)
    assert compare_summaries(base, noisy) == []
    noisy["variants"][0]["socs"][0]["bytes"] = 12.0
    (diff,) = compare_summaries(base, noisy)
    assert diff.path == "variants[a].socs[s0].bytes"
