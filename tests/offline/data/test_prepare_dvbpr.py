"""DVBPR ingestion (offline.data.prepare.dvbpr) on tiny .npy files built like the authors' (a pickled object
array [user_train, user_validation, user_test, Item, usernum, itemnum] with bytes keys and photo bytes),
and the loader's refusal to run code from a pickle."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from offline.commands.prepare import main
from offline.data.dataset import load_catalog, load_interactions
from offline.data.prepare.dvbpr import load_npy, prepare_dvbpr
from offline.data.prepare.records import PrepareError


def photo(color: tuple[int, int, int], fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 12), color).save(buf, fmt)
    return buf.getvalue()


RED, BLUE, GREEN = photo((200, 0, 0)), photo((0, 0, 200), "PNG"), photo((0, 200, 0))


def save_like_numpy1(path: Path, parts: list) -> None:
    """An .npy whose pickle names numpy.core.multiarray, as files written by numpy 1.x (the authors')
    do: protocol 2, the header written by numpy itself."""
    array = np.empty(len(parts), dtype=object)
    array[:] = parts
    data = pickle.dumps(array, protocol=2)
    assert b"numpy._core.multiarray\n" in data
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(array))
        f.write(data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))


def dvbpr_parts(times: bool = False) -> list:
    def entry(product: int, reviewer: bytes | None = None, t: int | None = None) -> dict:
        e = {b"productid": np.int64(product) if product == 1 else product}
        if reviewer:
            e[b"reviewerID"] = reviewer
        if times:
            e[b"unixReviewTime"] = t
        return e

    items = {
        0: {b"imgs": RED, b"asin": b"B00A", b"categories": [[b"Clothing", b"Women"]], b"c": 2},
        1: {b"imgs": BLUE, b"asin": b"B00B", b"title": b"Blue   dress"},
        2: {b"imgs": b"<html>not a photo</html>", b"asin": b"B00C"},
        3: {b"imgs": GREEN, b"asin": b"B00A"},  # the same product under a second index
    }
    train = {0: [entry(0, b"A1", 100), entry(1, b"A1", 200)], 1: [entry(2, None, 150), entry(9, None, 160)]}
    validation = {0: [entry(3, b"A1", 300)], 1: [entry(1, None, 250)]}
    test = {0: [entry(2, b"A1", 400)], 1: [entry(0, None, 350)]}
    return [train, validation, test, items, 2, 4]


def test_dvbpr_catalog_photos_and_interactions(tmp_path: Path) -> None:
    npy = tmp_path / "AmazonFashion6ImgPartitioned.npy"
    save_like_numpy1(npy, dvbpr_parts())
    out = tmp_path / "out"
    assert main(["dvbpr", "--source", str(tmp_path), "--out", str(out), "--no-progress"]) == 0

    catalog = load_catalog(out)
    assert catalog.item_ids == ["B00A", "B00B", "B00C"]
    assert catalog.images == ["images/B00A.jpg", "images/B00B.png", ""]
    assert (out / "images" / "B00A.jpg").read_bytes() == RED  # written as they are, no re-encoding
    with Image.open(out / "images" / "B00B.png") as im:
        assert im.size == (8, 12)
    assert catalog.attributes == {
        "title": ["", "Blue dress", ""],
        "categories": ["Clothing > Women", "", ""],
        "category_index": ["2", "", ""],
    }

    data = load_interactions(out)
    rows = list(zip(data.user_ids.tolist(), data.item_ids.tolist(), data.timestamps.tolist()))
    # train, then validation, then test; no review times: position in the user's own list
    assert rows == [
        ("A1", "B00A", 0),
        ("A1", "B00B", 1),
        ("1", "B00C", 0),
        ("A1", "B00A", 2),
        ("1", "B00B", 1),
        ("A1", "B00C", 3),
        ("1", "B00A", 2),
    ]
    report = (out / "prepare.json").read_text()
    assert "productid not in Item" in report and "duplicate asin (mapped to the first)" in report
    assert "missing or unreadable image bytes" in report and "position in the user's" in report


def test_dvbpr_uses_review_times_when_every_entry_has_one(tmp_path: Path) -> None:
    save_like_numpy1(tmp_path / "AmazonMenWithImgPartitioned.npy", dvbpr_parts(times=True))
    prepared = prepare_dvbpr(tmp_path, tmp_path / "out", progress=False)
    assert prepared.interactions.timestamps.tolist() == [100, 200, 150, 300, 250, 400, 350]
    assert prepared.report.notes == ["timestamps: the entries' unixReviewTime"]


def test_loader_reads_what_np_load_reads(tmp_path: Path) -> None:
    npy = tmp_path / "x.npy"
    save_like_numpy1(npy, dvbpr_parts())
    ours = load_npy(npy)
    theirs = list(np.load(npy, allow_pickle=True, encoding="bytes"))  # trusted: we just wrote it
    assert ours[:4] == theirs[:4] and ours[4:] == [2, 4]


def test_variant_choice(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    save_like_numpy1(tmp_path / "AmazonMenWithImgPartitioned.npy", dvbpr_parts())
    save_like_numpy1(tmp_path / "AmazonWomenWithImgPartitioned.npy", dvbpr_parts(times=True))
    assert main(["dvbpr", "--source", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "pick one with --variant" in capsys.readouterr().err
    prepared = prepare_dvbpr(tmp_path, tmp_path / "o", variant="women", progress=False)
    assert prepared.report.source.endswith("AmazonWomenWithImgPartitioned.npy")


class Payload:
    """What a malicious file would hold: unpickling it would call os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def test_loader_refuses_code_in_the_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    npy = tmp_path / "AmazonFashion6ImgPartitioned.npy"
    array = np.empty(6, dtype=object)
    array[:] = [{}, {}, {}, {0: Payload(marker)}, 1, 1]
    np.save(npy, array, allow_pickle=True)
    with pytest.raises(PrepareError, match=r"refusing to load (posix|os|nt)\.system"):
        load_npy(npy)
    assert not marker.exists()


def test_loader_rejects_non_dvbpr_files(tmp_path: Path) -> None:
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros(3))
    with pytest.raises(PrepareError, match="not DVBPR's pickled lists"):
        load_npy(plain)
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(PrepareError, match="is not an .npy file"):
        load_npy(tmp_path / "junk.npy")
    whole = tmp_path / "whole.npy"
    save_like_numpy1(whole, dvbpr_parts())
    cut = tmp_path / "cut.npy"
    cut.write_bytes(whole.read_bytes()[:-200])
    with pytest.raises(PrepareError, match="truncated download"):
        load_npy(cut)
