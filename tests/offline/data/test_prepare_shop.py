"""Your own shop's files (offline.data.prepare.shop): every bad row and photo is counted under its reason,
printed and in prepare.json, and left out; a missing file or column stops with one line naming it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from offline.commands.prepare import main
from offline.data.dataset import load_catalog, load_interactions
from offline.data.prepare.shop import parse_timestamp, photo_name
from tests.offline.shop_files import write_tiny_shop


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("shop")
    shop = write_tiny_shop(root / "source")
    assert main(["shop", "--source", str(root / "source"), "--out", str(root / "out"), "--no-progress"]) == 0
    report = json.loads((root / "out" / "prepare.json").read_text())
    return {"shop": shop, "out": root / "out", "report": report}


def test_timestamps_are_unix_seconds_or_iso_dates() -> None:
    assert parse_timestamp("1551398400") == 1551398400
    assert parse_timestamp("1551398400.7") == 1551398400
    assert parse_timestamp("2019-03-01") == 1551398400  # a date: 00:00 UTC
    assert parse_timestamp("2019-03-01T01:00:00+01:00") == 1551398400
    assert parse_timestamp("2019-03-01 00:00:00Z") == 1551398400
    for bad in ("yesterday", "2019-02-30", "nan", ""):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_good_rows_are_kept_in_order_with_their_attributes(prepared: dict) -> None:
    shop, out = prepared["shop"], prepared["out"]
    catalog, data = load_catalog(out), load_interactions(out)
    assert catalog.item_ids == shop.items  # file order, ids as text (leading zeros, a space and a slash)
    assert catalog.attributes["title"][:2] == ["Soft top 0", "Soft top 1"]  # the first row of a duplicate id
    assert set(catalog.attributes) == {"title", "category", "colour"}
    assert all(catalog.image_path(i).is_file() and catalog.images[i].startswith("images/") for i in range(len(catalog)))
    assert catalog.images[-1] == photo_name("sku 59/a", ".jpg") and "/" not in catalog.images[-1][10:]
    assert set(data.item_ids.tolist()) <= set(shop.items)
    assert len(data) == 24 * 14
    assert data.timestamps.min() >= datetime(2019, 1, 7, tzinfo=UTC).timestamp()
    assert sum(1 for r in data.reviews if r) == 24 * 4  # reviews on every 4th of 14 rows: 0, 4, 8, 12


def test_each_bad_row_and_photo_is_counted_under_its_reason(prepared: dict) -> None:
    shop, report = prepared["shop"], prepared["report"]
    sections = report["sections"]
    catalog = sections["catalog.csv"]["skipped"]
    assert catalog["duplicate item_id (the first row is kept)"] == 1
    assert catalog["photo file missing"] == 1
    assert catalog["empty image"] == 1
    assert catalog["short or overlong CSV row"] == 1
    photos = sections["photos"]["skipped"]
    assert photos == {"photo is not an image Pillow can read": 1, "photo is truncated or corrupt": 1}
    assert sections["photos: interactions"]["skipped"] == {"interaction with an item left out": 3}
    interactions = sections["interactions.csv"]["skipped"]
    for reason, count in shop.bad_interactions.items():
        assert interactions[reason] == count, reason
    assert interactions["short or overlong CSV row"] == 1
    kept = load_interactions(prepared["out"])
    assert sections["interactions.csv"]["kept"] == len(kept) + 3  # the 3 left out with their item's photo
    assert report["output"]["catalog items"] == len(shop.items)
    assert not set(shop.broken_items) & set(load_catalog(prepared["out"]).item_ids)


def test_the_summary_prints_every_reason(prepared: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "again"
    write_tiny_shop(source)
    assert main(["shop", "--source", str(source), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for reason in [*prepared["shop"].bad_interactions, *prepared["shop"].broken_items.values()]:
        assert reason in printed, reason


@pytest.mark.parametrize(
    ("file", "header", "column"),
    [("interactions.csv", "user_id,item_id,time", "timestamp"), ("catalog.csv", "item_id,photo", "image")],
)
def test_a_missing_column_stops_with_the_file_and_column_named(
    tmp_path: Path, capsys: pytest.CaptureFixture, file: str, header: str, column: str
) -> None:
    source = tmp_path / "source"
    write_tiny_shop(source)
    (source / file).write_text(header + "\n1,2,3\n")
    assert main(["shop", "--source", str(source), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and file in error and repr(column) in error
    notes = json.loads((tmp_path / "out" / "prepare.json").read_text())["notes"]
    assert any(file in note and column in note for note in notes)


def test_a_missing_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "source"
    write_tiny_shop(source)
    (source / "interactions.csv").unlink()
    assert main(["shop", "--source", str(source), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "interactions.csv: no such file" in capsys.readouterr().err
