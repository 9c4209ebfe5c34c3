"""docs/errors.md is what the code says today, and every example raises its own class."""

from __future__ import annotations

from simtopo.analysis.error_catalog import EXAMPLES, markdown, messages

from .conftest import ROOT


def test_every_example_raises_its_class_with_a_one_line_message():
    found = messages()  # raises if an example raises nothing or another class
    assert len(found) == len(EXAMPLES)
    for _, situation, message in found:
        assert "\n" not in message and message, situation
    situations = {s for _, s, _ in found}
    # the semantic checks the reliability issue names, each with its own message
    assert {"a model that does not fit", "a plan naming devices the topology lacks",
            "P2P declared where a switch forbids it (ACS on)", "a pipeline with an empty stage",
            "a tensor-parallel size that does not divide the heads"} <= situations
    assert len({m for _, _, m in found}) == len(found)


def test_docs_errors_is_current():
    assert (ROOT / "docs" / "errors.md").read_text() == markdown(), \
        "regenerate: simtopo errors -o docs/errors.md"
