"""docs/benchmarks.md from the benchmarks' own Markdown: each benchmark, when it writes bench/results,
rewrites its section of the doc, so the figures there are the last run's and nobody copies them by hand.

    python -m bench.docs [SECTION ...]      rewrite those sections (default: every one with a result)
    python -m bench.docs --stamp demo       first record this commit as the one demo/work was built at

A section sits between `<!-- results:NAME -->` and `<!-- /results:NAME -->` in docs/benchmarks.md; the
prose outside the markers (what each benchmark measures) is the doc's own. A section whose results file
is absent (a benchmark not run on this machine) keeps what the last run wrote. Standard library only:
`make demo-build` calls it from the demo's lean install.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
README = REPO / "README.md"


@dataclass(frozen=True)
class Section:
    command: str  # what writes the results file
    markdown: str  # the results file, relative to the repository
    provenance: str  # the JSON beside it that holds `provenance()`, relative to the repository


SECTIONS = {
    "demo": Section("make demo-build", "demo/work/metrics.md", "demo/work/provenance.json"),
    "quality": Section("make bench-quality", "bench/results/quality.md", "bench/results/quality.json"),
    "features": Section("make bench-features", "bench/results/features.md", "bench/results/features.json"),
    "train_tensorflow": Section(
        "make bench-train", "bench/results/train_tensorflow.md", "bench/results/train_tensorflow.json"
    ),
    "train_jax": Section(
        "KERAS_BACKEND=jax make bench-train", "bench/results/train_jax.md", "bench/results/train_jax.json"
    ),
    "serve": Section("make bench-serve", "bench/results/serve.md", "bench/results/serve.json"),
}


def provenance() -> dict[str, str]:
    """The commit a benchmark ran at (with `-dirty` for uncommitted changes to anything but the docs this
    module writes) and when it finished: every
    results JSON carries it, and the doc prints it above the figures."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "--short=10", "HEAD") or "unknown"
    # The files this module writes do not count: one benchmark's section must not mark the next one dirty.
    written = [f":(exclude){path.relative_to(REPO).as_posix()}" for path in (DOCS, README)]
    if git("status", "--porcelain", "--untracked-files=no", "--", ".", *written):
        commit += "-dirty"
    return {"commit": commit, "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def is_default_results(out: Path) -> bool:
    """A benchmark updates the doc only when it wrote to bench/results (not a test's or a scratch folder)."""
    return out.resolve() == RESULTS.resolve()


def section_body(name: str, root: Path = REPO) -> str | None:
    """The Markdown between the markers of `name`, or None when its results file is absent."""
    section = SECTIONS[name]
    path = root / section.markdown
    if not path.exists():
        return None
    meta_path = root / section.provenance
    meta = json.loads(meta_path.read_text(encoding="utf-8")).get("provenance", {}) if meta_path.exists() else {}
    stamp = f"commit `{meta.get('commit', 'unknown')}`, finished {meta.get('finished', 'at an unrecorded time')}"
    # The results file's own headings sit one level below the doc's section heading.
    text = re.sub(r"^(#+) ", r"\1## ", path.read_text(encoding="utf-8").strip(), flags=re.M)
    # Relative links in the results file (the recall plot) point next to it, not next to the doc.
    folder = Path(section.markdown).parent.as_posix()
    text = re.sub(r"\]\((?!https?:|/|#)([^)]+)\)", rf"](../{folder}/\1)", text)
    return f"_Written by `{section.command}` ({stamp}) from `{section.markdown}`._\n\n{text}\n"


def replace_section(doc: str, name: str, body: str) -> str:
    """`doc` with the text between `name`'s markers replaced by `body`."""
    start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), flags=re.S)
    if not pattern.search(doc):
        raise ValueError(f"the doc has no {start} ... {end} block for the {name} results")
    return pattern.sub(lambda _: f"{start}\n{body}{end}", doc, count=1)


def quality_headline(report: dict) -> str:
    """The README's summary of a bench-quality report: VECF against the best baseline on the same
    customers, with the paired interval and what it says, and two figures of the heatmaps."""
    models, paired = report["models"], report["paired"]
    baselines = {name: m for name, m in models.items() if not name.startswith("vecf")}
    best = max(baselines, key=lambda name: baselines[name]["recall@50"])
    diff = paired[f"vecf - {best}"]["recall@50"]
    if diff["low"] > 0:
        verdict = "its interval lies above 0"
    elif diff["high"] < 0:
        verdict = "its interval lies below 0"
    else:
        verdict = "its interval spans 0, so the two are not told apart at this size"
    vecf = models["vecf"]
    lines = [
        f"From `make bench-quality` (commit `{report.get('provenance', {}).get('commit', 'unknown')}`) on "
        f"{report['test_users']} H&M customers (test: the last {report['weeks']} weeks, all "
        f"{report['num_items']:,} articles ranked, settings chosen on the weeks before): VECF's Recall@50 is "
        f"{vecf['recall@50']:.4f} [{vecf['recall@50_low']:.4f}, {vecf['recall@50_high']:.4f}], the best "
        f"baseline's ({best}) {baselines[best]['recall@50']:.4f}. VECF minus {best} on the same customers: "
        f"{diff['difference']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}] (95% paired bootstrap); {verdict}."
    ]
    maps = report.get("explanations", {}).get("vecf")
    if maps:
        lines.append(
            f"Its heatmaps: deleting a map's top 5 cells lowers the score "
            f"{maps['deletion_top5_over_random']:.1f} times as much as deleting 5 random cells; the "
            f"Jensen-Shannon divergence between two customers' maps of one item is "
            f"{maps['js_between_customers']:.3f} (0: the same map for everyone)."
        )
    return " ".join(lines) + "\n"


def update(
    names: list[str] | None = None, docs: Path = DOCS, root: Path = REPO, readme: Path | None = README
) -> list[str]:
    """Rewrite the sections `names` (default: all) that have a results file, and the README's headline
    when the quality section is among them; -> the names rewritten."""
    doc = docs.read_text(encoding="utf-8")
    written = []
    for name in names or list(SECTIONS):
        body = section_body(name, root)
        if body is not None:
            doc = replace_section(doc, name, body)
            written.append(name)
    docs.write_text(doc, encoding="utf-8")
    if "quality" in written and readme is not None:
        report = json.loads((root / SECTIONS["quality"].provenance).read_text(encoding="utf-8"))
        readme.write_text(replace_section(readme.read_text(encoding="utf-8"), "headline", quality_headline(report)))
    return written


def stamp(name: str, root: Path = REPO) -> None:
    """Record `provenance()` for a section whose results come from a command that cannot record it (the
    demo's pipeline run, which knows nothing of the benchmarks)."""
    path = root / SECTIONS[name].provenance
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"provenance": provenance()}, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    stamped = "--stamp" in names
    names = [n for n in names if n != "--stamp"]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        print(f"bench.docs: unknown section(s) {unknown}; choose from {sorted(SECTIONS)}", file=sys.stderr)
        return 2
    if stamped:
        for name in names:
            stamp(name)
    written = update(names or None)
    print(f"bench.docs: rewrote {', '.join(written) or 'nothing (no results files)'} in {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
