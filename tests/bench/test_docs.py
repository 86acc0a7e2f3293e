"""docs/benchmarks.md is written from the results files: sections between markers, nothing else touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import docs

DOC = """# Benchmarks

Prose that is the doc's own.

<!-- results:quality -->
old quality figures
<!-- /results:quality -->

<!-- results:serve -->
old serving figures
<!-- /results:serve -->
"""


def results_tree(root: Path) -> None:
    (root / "bench" / "results").mkdir(parents=True)
    (root / "bench" / "results" / "quality.md").write_text(
        "# Model quality\n\n| a |\n\n![Recall@K](quality_recall.png)\n"
    )
    provenance = {"commit": "abc1234567", "finished": "2026-12-02 17:00 UTC"}
    (root / "bench" / "results" / "quality.json").write_text(json.dumps({"provenance": provenance}))


def test_update_rewrites_only_the_sections_with_results(tmp_path: Path) -> None:
    results_tree(tmp_path)
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC)
    assert docs.update(docs=doc, root=tmp_path, readme=None) == ["quality"]
    text = doc.read_text()
    assert "old quality figures" not in text and "old serving figures" in text  # serve has no results here
    assert "Prose that is the doc's own." in text
    assert "commit `abc1234567`, finished 2026-12-02 17:00 UTC" in text
    assert "### Model quality" in text  # its heading sits below the doc's section heading
    assert "](../bench/results/quality_recall.png)" in text  # the plot link still points at the plot
    assert docs.update(docs=doc, root=tmp_path, readme=None) == ["quality"] and doc.read_text() == text  # idempotent


def test_a_missing_marker_is_an_error_that_names_it(tmp_path: Path) -> None:
    results_tree(tmp_path)
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    with pytest.raises(ValueError, match="results:quality"):
        docs.update(["quality"], docs=doc, root=tmp_path, readme=None)


def test_the_real_doc_has_a_block_for_every_section() -> None:
    text = docs.DOCS.read_text(encoding="utf-8")
    for name in docs.SECTIONS:
        assert f"<!-- results:{name} -->" in text and f"<!-- /results:{name} -->" in text, name


def test_only_the_default_results_folder_updates_the_doc(tmp_path: Path) -> None:
    assert docs.is_default_results(docs.RESULTS) and not docs.is_default_results(tmp_path)


def test_provenance_names_a_commit() -> None:
    stamp = docs.provenance()
    assert stamp["commit"] and stamp["finished"].endswith("UTC")


def test_unknown_section_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert docs.main(["nope"]) == 2
    assert "nope" in capsys.readouterr().err


def report(low: float, high: float) -> dict:
    def model(recall: float) -> dict:
        return {"recall@50": recall, "recall@50_low": recall - 0.01, "recall@50_high": recall + 0.01}

    return {
        "test_users": 435,
        "weeks": 16,
        "num_items": 24717,
        "models": {
            "vecf": model(0.03),
            "vecf_no_att": model(0.05),
            "repurchase": model(0.025),
            "popularity": model(0.02),
        },
        "paired": {"vecf - repurchase": {"recall@50": {"difference": 0.005, "low": low, "high": high}}},
        "explanations": {"vecf": {"deletion_top5_over_random": 4.12, "js_between_customers": 0.0341}},
        "provenance": {"commit": "abc1234567"},
    }


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [(-0.001, 0.01, "spans 0"), (0.001, 0.01, "lies above 0"), (-0.01, -0.001, "lies below 0")],
)
def test_the_headline_names_the_best_baseline_and_reads_its_interval(low: float, high: float, verdict: str) -> None:
    text = docs.quality_headline(report(low, high))
    assert "best baseline's (repurchase) 0.0250" in text  # a VECF variant is not a baseline, however good
    assert f"+0.0050 [{low:+.4f}, {high:+.4f}]" in text and verdict in text
    assert "commit `abc1234567`" in text and "4.1 times" in text and "0.034" in text


def test_the_readme_has_the_headline_block() -> None:
    text = docs.README.read_text(encoding="utf-8")
    assert "<!-- results:headline -->" in text and "<!-- /results:headline -->" in text
