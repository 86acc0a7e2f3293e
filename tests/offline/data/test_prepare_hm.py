"""H&M ingestion (offline.data.prepare.hm) on the real sample in ../shared/data/hm, and on a tiny folder in the
Kaggle original layout (no catalog.csv, transactions_train.csv, photos at images/0NN/ARTICLE.jpg)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from offline.commands.prepare import main
from offline.data.dataset import load_catalog, load_interactions
from offline.data.prepare import write_prepared
from offline.data.prepare.hm import prepare_hm
from tests.shared_data import shared_data


def test_hm_real_sample(tmp_path: Path) -> None:
    source = shared_data("hm")
    out = tmp_path / "hm"
    prepared = prepare_hm(source, out, progress=False)
    write_prepared(prepared, out)
    catalog, data = load_catalog(out), load_interactions(out)

    with open(source / "catalog.csv", newline="") as f:
        assert catalog.item_ids == [row["article_id"] for row in csv.DictReader(f)]  # same order, as text
    assert len(catalog) == 24_717
    assert catalog.item_ids[0] == "0108775015"
    assert all(len(i) == 10 and i.startswith("0") for i in catalog.item_ids)  # leading zeros kept
    assert len(data) == 26_328
    assert len(set(data.user_ids.tolist())) == 1_273
    assert set(data.item_ids.tolist()) <= set(catalog.item_ids)
    assert len(set(catalog.item_ids) - set(data.item_ids.tolist())) == 10_269  # never bought: cold start
    assert data.timestamps[0] == 1537401600  # 2018-09-20 00:00 UTC
    assert set(data.reviews.tolist()) == {""}

    # Photos: relative to the out folder, inside it, and really there.
    assert all(image.startswith("images/") and ".." not in image for image in catalog.images)
    assert all(catalog.image_path(i).is_file() for i in range(len(catalog)))

    # Attributes from articles.csv for the 9,312 articles it has; empty for the rest.
    attrs = {c: dict(zip(catalog.item_ids, v)) for c, v in catalog.attributes.items()}
    assert sum(1 for v in attrs["product_type"].values() if v) == 9_312
    assert prepared.report.output["catalog items with attributes"] == 9_312
    assert attrs["product_type"]["0111565001"] == "Underwear Tights"
    assert attrs["colour"]["0111565001"] == "Black"
    assert attrs["pattern"]["0111565001"] == "Solid"
    assert attrs["index_group"]["0111565001"] == "Ladieswear"
    assert attrs["description"]["0111565001"].startswith("Semi shiny nylon stockings with a wide, reinforced trim")
    with open(source / "articles.csv", newline="") as f:
        described = {row["article_id"] for row in csv.DictReader(f)}
    bare = next(i for i in catalog.item_ids if i not in described)
    assert all(attrs[c][bare] == "" for c in attrs)

    # Idempotent: a second run over the same folder writes the same files.
    before = {name: (out / name).read_bytes() for name in ("catalog.csv", "interactions.csv")}
    write_prepared(prepare_hm(source, out, progress=False), out)
    assert before == {name: (out / name).read_bytes() for name in ("catalog.csv", "interactions.csv")}


def test_hm_absolute_image_paths_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = shared_data("hm")
    out = tmp_path / "abs"
    assert main(["hm", "--source", str(source), "--out", str(out), "--images", "absolute", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "transactions.csv: read 26,328, kept 26,328, skipped 0" in printed
    assert "catalog items: 24,717" in printed
    catalog = load_catalog(out)
    assert Path(catalog.images[0]).is_absolute() and catalog.image_path(0).is_file()
    assert not (out / "images").exists()


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def test_hm_kaggle_layout(tmp_path: Path) -> None:
    source, out = tmp_path / "kaggle", tmp_path / "out"
    for article in ("0108775015", "0200000001"):  # 0300000001 has no photo
        folder = source / "images" / article[:3]
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 6), (200, 10, 10)).save(folder / f"{article}.jpg")
    write_csv(
        source / "articles.csv",
        ["article_id", "prod_name", "product_type_name", "colour_group_name", "detail_desc"],
        [
            ["0108775015", "Strap top", "Vest top", "Black", "Jersey top  with\n narrow straps."],
            ["0200000001", "Jeans", "Trousers", "Blue", ""],
            ["0300000001", "Cap", "Cap/peaked", "White", "A cap."],
        ],
    )
    write_csv(
        source / "transactions_train.csv",
        ["t_dat", "customer_id", "article_id", "price", "sales_channel_id"],
        [
            ["2020-09-20", "c1", "0108775015", "0.01", "2"],
            ["2020-09-21", "c1", "108775015", "0.01", "2"],  # zeros dropped by some tool: padded back
            ["2020-09-21", "c2", "0999999999", "0.01", "1"],  # not in the catalog
            ["20/09/2020", "c2", "0200000001", "0.01", "1"],  # not a date
            ["2020-09-22", "c2", "0300000001", "0.01", "1"],
        ],
    )
    prepared = prepare_hm(source, out, progress=False)
    assert prepared.item_ids == ["0108775015", "0200000001", "0300000001"]
    assert prepared.images == ["images/010/0108775015.jpg", "images/020/0200000001.jpg", ""]
    assert (out / prepared.images[0]).is_file()
    assert prepared.attributes["description"][0] == "Jersey top with narrow straps."
    assert list(prepared.interactions.item_ids) == ["0108775015", "0108775015", "0300000001"]
    assert list(prepared.interactions.timestamps) == [1600560000, 1600646400, 1600732800]
    skipped = prepared.report.section("transactions_train.csv").skipped
    assert skipped == {"article not in the catalog": 1, "t_dat is not a YYYY-MM-DD date": 1}

    since = prepare_hm(source, out, since="2020-09-21", progress=False)
    assert len(since.interactions) == 2
    assert since.report.section("transactions_train.csv").skipped["before --since"] == 1

    dropped = prepared.drop_items_without_image()
    assert dropped.item_ids == ["0108775015", "0200000001"] and len(dropped.interactions) == 2
