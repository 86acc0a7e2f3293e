"""The export's two-stage default (`offline.serving.candidates`): the fewest candidates that keep the
recall target, measured on the model's own users, and written into serving.json."""

from __future__ import annotations

import json

import pytest

from model.contract import ASSETS_EXTRA, SERVING_META_FILE
from offline.serving import candidates as chooser


def test_the_fewest_candidates_that_keep_the_target(tiny_work, monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    module = tf.saved_model.load(str(tiny_work / "export" / "1"))
    meta = json.loads((tiny_work / "export" / "1" / ASSETS_EXTRA / SERVING_META_FILE).read_text())
    users = (tiny_work / "runs" / "vecf" / "users.txt").read_text().splitlines()
    monkeypatch.setattr(chooser, "K", 10)
    monkeypatch.setattr(chooser, "LADDER", (5, 10, 20, 40, 80, 160))
    chosen, tried = chooser.choose_candidates(module, users, meta["new_item_every"])
    assert [t["candidates"] for t in tried][:1] == [10]  # below k counts as k; the catalog's 100 or more is exact
    assert all(t["candidates"] < 100 for t in tried)
    recalls = [t["recall@10"] for t in tried]
    assert all(0 <= r <= 1 for r in recalls)
    if chosen:  # the first count at the target, and none before it
        assert chosen == tried[-1]["candidates"] and recalls[-1] >= chooser.RECALL_TARGET
        assert all(r < chooser.RECALL_TARGET for r in recalls[:-1])
    else:  # none reached it: exact ranking
        assert len(tried) == 4 and all(r < chooser.RECALL_TARGET for r in recalls)
    # a target every count meets picks the first; one none meets, exact ranking
    monkeypatch.setattr(chooser, "RECALL_TARGET", 0.0)
    assert chooser.choose_candidates(module, users, meta["new_item_every"])[0] == 10
    monkeypatch.setattr(chooser, "RECALL_TARGET", 1.01)
    assert chooser.choose_candidates(module, users, meta["new_item_every"])[0] == 0


def test_the_export_writes_its_figure_into_serving_json(tiny_work) -> None:
    meta = json.loads((tiny_work / "export" / "1" / ASSETS_EXTRA / SERVING_META_FILE).read_text())
    assert meta["candidates"] == 0 or meta["candidates"] in chooser.LADDER
