"""Explanation metrics on hand-made maps and a linear toy model whose answers are known."""

from pathlib import Path

import numpy as np
import pytest

from offline.data.photos import foreground_mask
from offline.evaluation import explanations as ex

R = 9  # a 3x3 grid


class LinearModel:
    """score(u, i, regions) = sum_l importance[u, l] * regions[l, 0]; its map is the importance itself."""

    def __init__(self, importance: np.ndarray):
        self.importance = importance / importance.sum(1, keepdims=True)  # [U, R]

    def attention(self, users, items):
        return self.importance[users]

    def item_regions(self, items):
        return np.ones((len(items), R, 2), dtype=np.float32)

    def score_regions(self, users, items, regions):
        return (self.importance[users] * regions[..., 0]).sum(1)


def one_hot(cells, r=R):
    out = np.zeros((len(cells), r))
    out[np.arange(len(cells)), cells] = 1.0
    return out


def test_concentration_of_uniform_and_one_hot_maps():
    uniform = np.full((2, 49), 1 / 49)
    assert ex.normalised_entropy(uniform) == pytest.approx([1.0, 1.0])
    assert ex.top_mass(uniform) == pytest.approx([5 / 49] * 2)
    peaked = one_hot([3, 7], 49)
    assert ex.normalised_entropy(peaked) == pytest.approx([0.0, 0.0], abs=1e-9)
    assert ex.top_mass(peaked) == pytest.approx([1.0, 1.0])
    half = np.zeros((1, 4))
    half[0, :2] = 0.5
    assert ex.normalised_entropy(half) == pytest.approx([0.5])  # log 2 / log 4


def test_js_divergence_is_zero_for_equal_maps_and_one_for_disjoint():
    a, b = one_hot([0, 1]), one_hot([4, 1])
    assert ex.js_divergence(a, b) == pytest.approx([1.0, 0.0], abs=1e-6)
    half = np.array([[0.5, 0.5, 0.0]])  # against [1, 0, 0], by the definition: mean KL to the midpoint
    m = np.array([0.75, 0.25, 0.0])
    kl = lambda p: sum(x * np.log2(x / y) for x, y in zip(p, m) if x > 0)  # noqa: E731
    expected = 0.5 * kl([1.0, 0.0, 0.0]) + 0.5 * kl([0.5, 0.5, 0.0])
    assert ex.js_divergence(half, one_hot([0], 3)) == pytest.approx([expected])


def test_win_rate_counts_ties_as_half():
    assert ex.win_rate(np.array([2.0, 1.0, 1.0, 0.0]), np.array([1.0, 1.0, 2.0, 0.0])) == pytest.approx(0.5)
    assert ex.win_rate(np.array([3.0, 2.0]), np.array([1.0, 1.0])) == 1.0


def test_normalised_area_of_a_linear_curve_and_a_flat_one():
    assert ex.normalised_area(np.array([[4.0, 3.0, 2.0]])) == pytest.approx([0.5])
    assert ex.normalised_area(np.array([[4.0, 2.0, 2.0]])) == pytest.approx([0.25])  # [1, 0, 0]
    assert ex.normalised_area(np.array([[2.0, 4.0, 4.0]]), insertion=True) == pytest.approx([0.75])  # [0, 1, 1]
    assert np.isnan(ex.normalised_area(np.array([[1.0, 1.0, 1.0]]))[0])  # no information


def test_top_cells_break_ties_at_random_but_keep_the_order_of_distinct_weights():
    rng = np.random.default_rng(0)
    maps = np.array([[0.1, 0.5, 0.4]])
    assert ex.top_cells(maps, 3, rng).tolist() == [[1, 2, 0]]
    firsts = {int(ex.top_cells(np.full((1, 4), 0.25), 1, rng)[0, 0]) for _ in range(40)}
    assert len(firsts) > 1


def test_masked_deletes_or_keeps_the_first_cells_of_the_order():
    regions = np.ones((1, 4, 1))
    order = np.array([[2, 0, 1, 3]])
    assert ex.masked(regions, order, 2, insertion=False)[0, :, 0].tolist() == [0, 1, 0, 1]
    assert ex.masked(regions, order, 2, insertion=True)[0, :, 0].tolist() == [1, 0, 1, 0]


def personal_sample():
    """Two customers who each care about a different 5 cells of the same items."""
    importance = np.full((2, R), 0.01)
    importance[0, :5] = 1.0
    importance[1, 4:] = 1.0
    users = np.array([0, 1] * 10)
    sample = ex.PairSample(users, np.arange(20) % 3, 1 - users)
    return LinearModel(importance), sample


def test_a_faithful_personal_map_scores_as_such():
    model, sample = personal_sample()
    maps, others = model.attention(sample.users, sample.items), model.attention(sample.others, sample.items)
    row = ex.map_metrics(model, sample, maps, others, shares=None)
    assert row["own_deletion_win_rate"] == 1.0  # the other customer's top 5 overlap only in cell 4
    assert row["js_between_customers"] > 0.5
    assert row["deletion_top5_over_random"] > 1.5  # 5 of the 5 important cells against ~2.8 at random
    assert row["deletion_area"] < row["deletion_area_random"]
    assert row["insertion_area"] > row["insertion_area_random"]


def test_a_user_independent_map_has_no_personalisation_and_an_anti_map_is_unfaithful():
    model, sample = personal_sample()
    anti = 1.0 - model.attention(sample.users, sample.items)  # points at what the score ignores
    anti /= anti.sum(1, keepdims=True)
    row = ex.map_metrics(model, sample, anti, None, shares=None)
    assert row["js_between_customers"] == 0.0 and "own_deletion_win_rate" not in row
    assert row["deletion_top5_over_random"] < 1.0
    assert row["deletion_area"] > row["deletion_area_random"]


def test_garment_ratio_and_centre_prior():
    shares = np.tile(np.array([1.0, 0.0] * 2), (3, 1))  # half of a 2x2 grid is garment
    on_garment = np.tile(np.array([0.5, 0.0, 0.5, 0.0]), (3, 1))
    assert ex.garment_ratio(on_garment, shares) == pytest.approx(2.0)
    assert ex.garment_ratio(np.full((3, 4), 0.25), shares) == pytest.approx(1.0)
    prior = ex.centre_prior(7, 7)
    assert prior.sum() == pytest.approx(1.0) and int(prior.argmax()) == 24
    assert prior[24] > prior[0]


def photo(size=70, hole=False):
    """Light-grey background, a dark garment over the left 5 of 7 columns and rows 1-5."""
    square = np.full((size, size, 3), 230, dtype=np.uint8)
    square[10:60, 0:50] = (40, 40, 120)
    if hole:
        square[30:40, 20:30] = 230  # a print the colour of the background, inside the garment
    return square


def test_foreground_mask_finds_the_garment_and_fills_its_holes():
    mask = foreground_mask(photo(hole=True))
    truth = np.zeros((70, 70), bool)
    truth[10:60, 0:50] = True
    assert (mask == truth).mean() > 0.99
    shares = ex.cell_shares(mask, 7, 7).reshape(7, 7)
    assert shares[0].max() == 0 and shares[3, :5].min() == 1.0 and shares[3, 5:].max() == 0.0


def test_paint_covers_only_the_given_cells_in_the_background_colour():
    square = photo()
    painted = ex.paint(square, [21], 7, 7)  # row 3, column 0
    assert (painted[30:40, 0:10] == 230).all()
    assert (painted[40:50, 0:10] == square[40:50, 0:10]).all()


def test_sample_pairs_takes_the_top_items_and_another_customer():
    scores = np.array([[0.1, 0.9, 0.5], [0.8, 0.1, 0.2], [0.0, 0.2, 0.9]])
    sample = ex.sample_pairs(lambda users: scores[users], np.array([0, 1, 2]), k=2)
    assert sample.items.tolist() == [1, 2, 0, 2, 2, 1]
    assert (sample.others != sample.users).all()
    with pytest.raises(ValueError, match="at least 2 customers"):
        ex.sample_pairs(lambda users: scores[users], np.array([0]), k=2)


def test_most_active():
    assert ex.most_active(np.array([2, 2, 0, 1, 1, 1, 3]), 2).tolist() == [1, 2]


class DarknessPhotos(ex.Photos):
    """Photos whose 'backbone' reads each cell's darkness: a painted cell reads 0."""

    def __init__(self):
        super().__init__(lambda i: Path(f"{i}.jpg"), Path("."), {"input_size": 70})

    def square(self, item):
        return photo()

    def features(self, squares):
        values = np.array(
            [
                [
                    (255 - s[r * 10 : (r + 1) * 10, c * 10 : (c + 1) * 10].astype(float)).mean() / 255
                    for r in range(7)
                    for c in range(7)
                ]
                for s in squares
            ]
        )
        return np.stack([values, values], axis=-1)


class GarmentModel:
    """Scores the darkness of the garment's cells in rows 1-3; its map says so."""

    def __init__(self):
        weights = np.zeros(49)
        for r in (1, 2, 3):
            weights[r * 7 : r * 7 + 5] = 1.0
        self.weights = weights / weights.sum()

    def attention(self, users, items):
        return np.tile(self.weights, (len(users), 1))

    def item_regions(self, items):
        return DarknessPhotos().features(np.stack([photo()] * len(items)))

    def score_regions(self, users, items, regions):
        return (regions[..., 0] * self.weights).sum(1)


def test_image_metrics_repaint_the_photo_and_score_it_again():
    model, photos = GarmentModel(), DarknessPhotos()
    users = items = np.arange(4)
    row = ex.image_metrics(model, photos, users, items, model.attention(users, items), 7, 7)
    assert row["image_deletion_top5_over_random"] > 2.0
    assert row["image_deletion_area"] < row["image_deletion_area_random"]


def test_explanation_report_has_every_row_and_renders():
    model = GarmentModel()
    sample = ex.PairSample(np.arange(6) % 3, np.arange(6) % 2, (np.arange(6) + 1) % 3)
    report = ex.explanation_report({"vecf": model}, sample, (7, 7), photos=DarknessPhotos(), image_pairs=3)
    assert set(report) == {"vecf", "item_mean", "centre_prior", "garment_area_share"}
    assert report["vecf"]["garment_ratio"] > 1.3  # all of its mass is on garment cells
    assert report["vecf"]["js_between_customers"] == pytest.approx(0.0, abs=1e-6)  # one map for everyone
    assert report["centre_prior"]["garment_ratio"] < report["vecf"]["garment_ratio"]
    text = ex.explanation_markdown(report)
    assert "| vecf |" in text and "garment_ratio" in text


class NewItemsUniform(GarmentModel):
    """GarmentModel's map for item 0; a uniform map for item 1, the new one."""

    def attention(self, users, items):
        maps = super().attention(users, items)
        maps[np.asarray(items) == 1] = 1 / 49
        return maps


def test_explanation_report_measures_new_and_bought_items_apart() -> None:
    sample = ex.PairSample(np.arange(6) % 3, np.arange(6) % 2, (np.arange(6) + 1) % 3)
    new = np.array([False, True])
    report = ex.explanation_report(
        {"vecf": NewItemsUniform()}, sample, (7, 7), photos=DarknessPhotos(), image_pairs=6, new=new
    )
    fresh, bought = report["vecf (new items)"], report["vecf (bought items)"]
    assert fresh["pairs"] == bought["pairs"] == 3
    assert fresh["normalised_entropy"] == pytest.approx(1.0)
    assert bought["normalised_entropy"] < 0.8 and bought["top5_mass"] > fresh["top5_mass"]
    assert report["vecf"]["normalised_entropy"] == pytest.approx(
        (fresh["normalised_entropy"] + bought["normalised_entropy"]) / 2
    )
    assert "image_deletion_top5_over_random" in fresh and bought["garment_ratio"] > fresh["garment_ratio"]
    # no split where the sample holds fewer than 2 pairs of either kind: it would repeat the model's row
    only_bought = ex.explanation_report({"vecf": NewItemsUniform()}, sample, (7, 7), new=np.array([False, False]))
    assert set(only_bought) == {"vecf", "item_mean", "centre_prior"}
    assert "| vecf (new items) |" in ex.explanation_markdown(report)
