"""Amazon 2018 and 2014 ingestion (offline.data.prepare.amazon): the real AMAZON_FASHION 5-core sample, and
tiny hand-written fixtures in the exact upstream formats (tests/fixtures/amazon2014, amazon2018)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from offline.commands.prepare import main
from offline.data.dataset import load_catalog, load_interactions
from offline.data.prepare import write_prepared
from offline.data.prepare.amazon import prepare_amazon2014, prepare_amazon2018
from offline.data.prepare.records import TRUNCATED, BadRecord, parse_literal
from tests.shared_data import shared_data

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures"
DUPLICATE = "copy of a kept review (same reviewer, time and text): variant duplicate"


def as_rows(folder: Path) -> list[tuple[str, str, int, str]]:
    data = load_interactions(folder)
    return list(zip(data.user_ids.tolist(), data.item_ids.tolist(), data.timestamps.tolist(), data.reviews.tolist()))


# --- the real AMAZON_FASHION 5-core ---------------------------------------------------------------


def test_amazon2018_real_sample(tmp_path: Path) -> None:
    source = shared_data("amazon_fashion_2018_5core")
    raw = [json.loads(line) for line in (source / "AMAZON_FASHION_5.jsonl").read_text().splitlines() if line.strip()]
    # The rule, computed here independently: one interaction per (reviewer, time, whitespace-collapsed text),
    # the first record in file order.
    first: dict[tuple, dict] = {}
    for r in raw:
        first.setdefault((r["reviewerID"], r["unixReviewTime"], " ".join(r.get("reviewText", "").split())), r)
    assert len(raw) == 3176 and len(first) == 447

    prepared = prepare_amazon2018(source, tmp_path, progress=False)
    write_prepared(prepared, tmp_path)
    catalog, rows = load_catalog(tmp_path), as_rows(tmp_path)
    assert len(catalog) == 31 and catalog.item_ids == sorted({r["asin"] for r in raw})
    assert len({u for u, *_ in rows}) == 406
    assert len(rows) == len(first)
    assert rows == [
        (r["reviewerID"], r["asin"], r["unixReviewTime"], " ".join(r.get("reviewText", "").split()))
        for r in first.values()
    ]
    report = prepared.report
    assert report.section("AMAZON_FASHION_5.jsonl").kept == 3176
    assert report.section("de-duplication").skipped == {DUPLICATE: 3176 - 447}
    # Side files: titles from product_details.json, URLs from item_image_urls.csv; no photo can be on disk.
    titles = dict(zip(catalog.item_ids, catalog.attributes["title"]))
    assert titles["B000K2PJ4K"] == "Calvin Klein Boys' Assorted Boxer Briefs (Pack of 2)"
    assert all(url.startswith("https://") for url in catalog.attributes["image_url"])
    assert catalog.images == [""] * 31
    assert report.output["catalog items without a photo"] == 31
    assert json.loads((tmp_path / "prepare.json").read_text())["output"]["interactions"] == 447


# --- Amazon 2018 fixture: variant copies, JSON meta (one Python-literal line), subsets -------------


def test_amazon2018_fixture_keeps_first_variant_and_reads_meta(tmp_path: Path) -> None:
    prepared = prepare_amazon2018(FIXTURES / "amazon2018", tmp_path / "out", progress=False)
    assert prepared.item_ids == ["P1a", "P1b", "P1c", "P2"]  # variants that only got copies stay in the catalog
    rows = list(zip(prepared.interactions.user_ids, prepared.interactions.item_ids, prepared.interactions.reviews))
    assert rows == [
        ("U1", "P1b", "Love these boots"),
        ("U1", "P2", "Warm coat"),
        ("U2", "P1a", ""),
        ("U2", "P2", "Nice coat"),
    ]
    report = prepared.report
    assert report.section("Clothing_Shoes_and_Jewelry_5.json").skipped == {"not a JSON object": 1}
    assert report.section("de-duplication").skipped == {DUPLICATE: 3}
    meta = report.section("meta_Clothing_Shoes_and_Jewelry.json")
    assert (meta.read, meta.kept) == (5, 4)
    assert meta.skipped == {"item without a review in the 5-core (not needed)": 1}
    attrs = prepared.attributes
    assert attrs["image_url"] == [
        "https://images-na.ssl-images-amazon.com/images/I/P1a.jpg",  # high-res first
        "https://images-na.ssl-images-amazon.com/images/I/P1b._SS40_.jpg",
        "",
        "https://images-na.ssl-images-amazon.com/images/I/P2.jpg",
    ]
    assert attrs["title"][2] == "Red Boots (narrow)"  # the Python-literal meta line
    assert attrs["categories"][3] == "Clothing, Shoes & Jewelry > Men > Clothing > Coats"


def test_amazon2018_subset(tmp_path: Path) -> None:
    women = prepare_amazon2018(FIXTURES / "amazon2018", tmp_path, subset="women", progress=False)
    assert women.item_ids == ["P1a", "P1b", "P1c"]
    assert list(women.interactions.item_ids) == ["P1b", "P1a"]
    men = prepare_amazon2018(FIXTURES / "amazon2018", tmp_path, subset="men", progress=False)
    assert men.item_ids == ["P2"] and list(men.interactions.user_ids) == ["U1", "U2"]


# --- Amazon 2014 fixture: gzip, Python-literal meta with a malformed line and a truncated stream ---


@pytest.fixture
def amazon2014(tmp_path: Path) -> Path:
    """The fixture files as upstream ships them: gzipped, the meta file's last gzip member cut short."""
    source = tmp_path / "raw"
    source.mkdir()
    fixtures = FIXTURES / "amazon2014"
    reviews = (fixtures / "reviews_Clothing_Shoes_and_Jewelry_5.json").read_bytes()
    (source / "reviews_Clothing_Shoes_and_Jewelry_5.json.gz").write_bytes(gzip.compress(reviews))
    tail = gzip.compress((fixtures / "meta_truncated_tail.json").read_bytes())
    meta = gzip.compress((fixtures / "meta_Clothing_Shoes_and_Jewelry.json").read_bytes()) + tail[: len(tail) // 2]
    (source / "meta_Clothing_Shoes_and_Jewelry.json.gz").write_bytes(meta)
    return source


def test_amazon2014_counts_and_skip_reasons(amazon2014: Path, tmp_path: Path) -> None:
    prepared = prepare_amazon2014(amazon2014, tmp_path / "out", progress=False)
    report = prepared.report
    reviews = report.section("reviews_Clothing_Shoes_and_Jewelry_5.json.gz")
    assert (reviews.read, reviews.kept) == (12, 9)
    assert reviews.skipped == {"malformed JSON": 1, "missing reviewerID": 1, "bad unixReviewTime": 1}
    assert report.section("de-duplication").skipped == {DUPLICATE: 1}
    meta = report.section("meta_Clothing_Shoes_and_Jewelry.json.gz")
    assert meta.kept == 4  # M1, M2, W1, W2
    assert meta.skipped == {
        "item without a review in the 5-core (not needed)": 1,
        "malformed Python literal": 1,
        TRUNCATED: 1,
    }
    assert prepared.item_ids == ["M1", "M2", "T1", "W1", "W2", "Z9"]
    assert len(prepared.interactions) == 8
    # Review text: HTML entities decoded, whitespace and newlines collapsed.
    assert 'Bought for my wife, she says "lovely". Fits well.' in prepared.interactions.reviews.tolist()
    attrs = dict(zip(prepared.item_ids, zip(prepared.attributes["title"], prepared.attributes["image_url"])))
    assert attrs["M1"] == ("Oxford Shirt", "http://ecx.images-amazon.com/images/I/M1.jpg")
    assert attrs["Z9"] == ("", "") and attrs["T1"] == ("", "")  # their metadata was unreadable


@pytest.mark.parametrize(
    "subset, items, pairs",
    [
        ("men", ["M1", "M2"], [("U1", "M1"), ("U2", "M2"), ("U2", "M1")]),
        ("women", ["W1", "W2"], [("U1", "W1"), ("U2", "W2"), ("U3", "W1")]),
    ],
)
def test_amazon2014_subsets(
    amazon2014: Path, tmp_path: Path, subset: str, items: list[str], pairs: list[tuple[str, str]]
) -> None:
    out = tmp_path / subset
    assert (
        main(["amazon2014", "--source", str(amazon2014), "--out", str(out), "--subset", subset, "--no-progress"]) == 0
    )
    assert load_catalog(out).item_ids == items
    assert [(u, i) for u, i, _, _ in as_rows(out)] == pairs
    sections = json.loads((out / "prepare.json").read_text())["sections"]
    assert sections[f"--subset {subset}: items"]["skipped"]["item without metadata"] == 2  # T1, Z9


def test_amazon2014_subset_needs_meta(amazon2014: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (amazon2014 / "meta_Clothing_Shoes_and_Jewelry.json.gz").unlink()
    assert main(["amazon2014", "--source", str(amazon2014), "--out", str(tmp_path / "o"), "--subset", "men"]) == 2
    assert "--subset men needs the metadata file" in capsys.readouterr().err


def test_missing_review_file_names_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["amazon2018", "--source", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no <Category>_5.json review file" in err and "dataset.sh" in err


def test_several_categories_need_category(tmp_path: Path) -> None:
    for name in ("A_5.json", "B_5.json"):
        shutil.copy(FIXTURES / "amazon2018" / "Clothing_Shoes_and_Jewelry_5.json", tmp_path / name)
    with pytest.raises(ValueError, match="pick one with --category"):
        prepare_amazon2018(tmp_path, tmp_path / "o", progress=False)
    assert len(prepare_amazon2018(tmp_path, tmp_path / "o", category="B", progress=False).interactions) == 4


def test_literal_parser_never_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(BadRecord, match="malformed Python literal"):
        parse_literal(f"__import__('pathlib').Path({str(marker)!r}).touch()")
    with pytest.raises(BadRecord, match="not a dict literal"):
        parse_literal("['a', 'list']")
    assert not marker.exists()
    assert parse_literal("{'asin': 'A', 'price': 1.5, 'categories': [['x', 'y']]}")["categories"] == [["x", "y"]]


def test_odd_review_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    lines = [
        b'{"reviewerID": "U1", "asin": "A", "unixReviewTime": 10, "reviewText": "fine"}',
        b'{"reviewerID": "U1", "asin": "B", "unixReviewTime": "20"}',  # digits as text: fine, no review
        b'{"reviewerID": "U1", "asin": "C", "unixReviewTime": NaN}',
        b'{"reviewerID": "U1", "asin": "C", "unixReviewTime": -5}',
        b'{"reviewerID": "U1", "asin": "C", "unixReviewTime": true}',
        b'{"reviewerID": "U1", "asin": "C"}',
        b'{"reviewerID": 7, "asin": "C", "unixReviewTime": 30}',
        b'{"reviewerID": "U1", "asin": "C", "unixReviewTime": 30, "reviewText": "caf\xe9"}',  # latin-1 byte
        b"",
        b"   ",
        b'"just a string"',
    ]
    path = tmp_path / "X_5.json.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    prepared = prepare_amazon2018(tmp_path, tmp_path / "out", progress=False)
    section = prepared.report.section("X_5.json.gz")
    assert (section.read, section.kept) == (9, 2)  # blank lines are not records
    assert section.skipped == {
        "bad unixReviewTime": 3,
        "missing unixReviewTime": 1,
        "missing reviewerID": 1,
        "not UTF-8": 1,
        "not a JSON object": 1,
    }
    assert list(prepared.interactions.timestamps) == [10, 20]
    assert list(prepared.interactions.reviews) == ["fine", ""]
