"""`python -m offline plant`: planted, location-specific preferences on real product photos.

The synthetic shop (`offline.data.synth`) knows where every user looks, but its cartoon garments are far
from real photos; real shops have real photos but no truth of where anyone looks. This command joins
the two: it paints small, distinctive marks (a magenta patch, stripes, dots, checks) onto real garment
photos at places found from each photo's own foreground mask (collar, chest, hem, cuff), then plants
customers who each like one (mark, place) pair. Their purchases mostly carry that mark at that place;
the same mark at another place is a distractor that does not count, so only a model that looks at the
right place of the photo can explain them, and where it should look is known pixel by pixel.

It writes the synthetic shop's dataset format (`offline.data.dataset`), so `offline pipeline --dataset
synthetic --source OUT` scores the explanations unchanged; the marks' pixels are stored as per-item
label maps that `offline.data.ground_truth.GarmentMasks` reads (`garments.json` names their column).
Deterministic from the seed and the photos.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from offline.data.dataset import (
    CATALOG_FILE,
    GARMENTS_FILE,
    GROUND_TRUTH_FILE,
    Interactions,
    load_catalog,
    write_catalog,
    write_interactions,
)
from offline.data.ground_truth import LABEL_MAPS_KEY
from offline.data.options import option
from offline.data.photos import foreground_mask
from offline.data.synth import GENERIC_PHRASES, MENTION_TEMPLATES

# Order matters: earlier places are found first and later ones must keep clear of them.
PLACES = ("collar", "chest", "hem", "cuff")
MARKS = ("patch", "stripes", "dots", "checks")
MARK_WORDS = {"patch": "magenta", "stripes": "striped", "dots": "polka-dot", "checks": "checked"}
# Saturated colours that few garments wear, so a mark stands out from the photo it is painted on.
MAGENTA, CYAN, WHITE = (220, 0, 160), (0, 190, 230), (250, 250, 250)
YELLOW, BLUE, ORANGE = (250, 215, 0), (20, 60, 200), (245, 120, 0)
MASK_COLUMN = "mask"
USERS_FILE = "users.csv"
CONFIG_FILE = "plant_config.json"
SHARD_SIZE = 1000  # files per sub-folder
COMPONENT_SHARE = 0.85  # the largest foreground blob must be this much of it: one garment, cleanly cut
# A garment is framed with a margin: a "garment" that runs along the frame is a shaded backdrop.
FRAME_INSET, FRAME_SHARE = 4, 0.1
# Closing fills notches (white stripes at a striped shirt's side read as backdrop); a mask that closing
# changes by more than this share was not a garment outline but the backdrop's shading.
CLOSING_STEPS, RAGGED_SHARE = 4, 0.03

Placement = tuple[str, str, int, int]  # (place, mark, left, top); every mark is a side x side square


@dataclass(frozen=True)
class PlantConfig:
    seed: int = option(0, "random seed; everything is a function of the config and the photos")
    items: int = option(3000, "photos to sample from the catalog and paint")
    users: int = option(1000, "number of planted customers")
    mean_interactions: float = option(20.0, "Poisson mean of interactions per user")
    min_interactions: int = option(5, "fewest interactions per user")
    p_pref: float = option(0.7, "probability a purchase carries the user's mark at the user's place")
    p_pop: float = option(0.2, "probability a purchase is drawn by item popularity (rest: uniform)")
    popularity_exponent: float = option(0.8, "Zipf exponent of latent item popularity")
    unmarked: float = option(0.2, "share of items left without any mark")
    max_marks: int = option(2, "a marked item carries 1..this many marks, each a different mark and place")
    mark_size: float = option(0.12, "mark side as a fraction of the photo's longer side (~ a 7x7 grid cell)")
    min_coverage: float = option(0.8, "least share of a mark's square that must lie on the garment")
    min_foreground: float = option(0.1, "skip photos whose garment covers less of the frame than this")
    max_foreground: float = option(0.85, "skip photos whose garment covers more (the mask failed)")
    review_mention: float = option(0.7, "probability a preference-driven review names the liked mark and place")
    start_timestamp: int = option(1577836800, "first possible interaction time (unix seconds)")
    period_days: int = option(730, "interactions are spread over this many days")
    jpeg_quality: int = option(92, "JPEG quality of the painted photos")

    def validate(self) -> None:
        problems = [
            f"{n}={getattr(self, n)} must be >= 1"
            for n in ("items", "users", "min_interactions", "max_marks", "period_days")
            if getattr(self, n) < 1
        ]
        problems += [
            f"{n}={getattr(self, n)} must be in [0, 1]"
            for n in (
                "p_pref",
                "p_pop",
                "unmarked",
                "min_coverage",
                "review_mention",
                "min_foreground",
                "max_foreground",
            )
            if not 0.0 <= getattr(self, n) <= 1.0
        ]
        if self.p_pref + self.p_pop > 1.0:
            problems.append(f"p_pref + p_pop = {self.p_pref + self.p_pop} must be <= 1")
        if self.max_marks > len(PLACES):
            problems.append(f"max_marks={self.max_marks} must be <= {len(PLACES)} (one mark per place)")
        if not 0.02 <= self.mark_size <= 0.3:
            problems.append(f"mark_size={self.mark_size} must be in [0.02, 0.3]")
        if self.mean_interactions <= 0 or not 1 <= self.jpeg_quality <= 100:
            problems.append("mean_interactions must be > 0 and jpeg_quality in [1, 100]")
        if problems:
            raise ValueError("invalid plant config: " + "; ".join(problems))


# ----------------------------------------------------------------------------------------- photos


def source_photos(folder: Path | str) -> list[tuple[str, Path]]:
    """(item id, photo path) of every catalog row with a photo: the internal format (item_id,image)
    or a raw H&M sample (article_id,image), paths relative to the folder either way."""
    folder = Path(folder)
    with open(folder / CATALOG_FILE, newline="", encoding="utf-8") as f:
        columns = next(csv.reader(f), [])
    if "item_id" in columns:
        catalog = load_catalog(folder)
        rows = zip(catalog.item_ids, catalog.images)
    elif {"article_id", "image"} <= set(columns):
        with open(folder / CATALOG_FILE, newline="", encoding="utf-8") as f:
            rows = [(r["article_id"].strip(), r["image"]) for r in csv.DictReader(f)]  # type: ignore[assignment]
    else:
        raise ValueError(f"{folder / CATALOG_FILE}: need item_id,image (internal) or article_id,image (H&M)")
    return [(item, folder / image) for item, image in rows if image]


def garment_mask(photo: np.ndarray, cfg: PlantConfig) -> np.ndarray | None:
    """bool [H, W]: the garment (the largest foreground blob), or None where the photo's mask is not
    one clean garment (white on white, several pieces): marks there could land on the backdrop."""
    mask = foreground_mask(photo)  # works on the photo's own pixels; nothing is padded or resized
    share = mask.mean()
    if not cfg.min_foreground <= share <= cfg.max_foreground:
        return None
    labels, count = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    if sizes.max() < COMPONENT_SHARE * mask.sum():
        return None
    garment = labels == 1 + int(np.argmax(sizes))
    closed = ndimage.binary_fill_holes(ndimage.binary_closing(garment, iterations=CLOSING_STEPS)) | garment
    if (closed & ~garment).sum() > RAGGED_SHARE * garment.sum() or _frame_share(closed) > FRAME_SHARE:
        return None
    return closed


def _frame_share(mask: np.ndarray) -> float:
    """Share of a ring FRAME_INSET pixels inside the photo's edge that the mask covers (the edge itself
    is no use: the foreground mask's opening clears it)."""
    k = FRAME_INSET
    inner = mask[k:-k, k:-k]
    ring = np.concatenate([inner[0], inner[-1], inner[1:-1, 0], inner[1:-1, -1]])
    return float(ring.mean())


# ----------------------------------------------------------------------------------------- places


def _band_centre(mask: np.ndarray, top: float, bottom: float) -> float:
    """Mean column of the garment's pixels in rows [top, bottom): the garment's middle at that height."""
    lo, hi = max(0, int(top)), max(int(top) + 1, int(bottom))
    xs = np.nonzero(mask[lo:hi])[1]
    return float(xs.mean()) if len(xs) else mask.shape[1] / 2


def place_targets(mask: np.ndarray, side: int) -> dict[str, tuple[float, float, float, float]]:
    """place -> (centre x, centre y, search half-width, search half-height) from the garment's outline.

    collar: top middle; chest: a third down the middle; hem: bottom, anywhere along it (trousers'
    middle is the gap between the legs); cuff: the garment's leftmost reach between top and bottom
    (a sleeve end on tops, the outer side of a leg on trousers)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    gh, gw, half = y1 - y0, x1 - x0, side / 2
    chest_y = y0 + 0.3 * gh
    middle = np.arange(int(y0 + 0.1 * gh), max(int(y1 - 0.1 * gh), int(y0 + 0.1 * gh) + 1))
    left = np.where(mask[middle].any(1), mask[middle].argmax(1), mask.shape[1])  # first garment column
    reach = float(left.min())
    cuff_y = float(middle[left <= reach + 2].mean())
    return {
        "collar": (_band_centre(mask, y0, y0 + side), y0 + 0.02 * gh + half, half, 0.1 * gh),
        "chest": (_band_centre(mask, chest_y - half, chest_y + half), chest_y, half, half),
        "hem": (_band_centre(mask, y1 - side, y1), y1 - 0.02 * gh - half, gw / 2, 0.1 * gh),
        "cuff": (reach + 0.02 * gw + half, cuff_y, side, side),
    }


def find_place(
    table: np.ndarray,
    target: tuple[float, float, float, float],
    side: int,
    taken: Sequence[tuple[int, int]],
    min_coverage: float,
) -> tuple[int, int] | None:
    """Top-left corner of the side x side square nearest the target, within its search window, that
    lies at least `min_coverage` on the garment and keeps a gap to the squares already `taken`."""
    cx, cy, wx, wy = target
    height, width = table.shape[0] - 1 - side, table.shape[1] - 1 - side  # last valid corner
    xs = np.arange(max(0, int(cx - side / 2 - wx)), min(width, int(cx - side / 2 + wx)) + 1)
    ys = np.arange(max(0, int(cy - side / 2 - wy)), min(height, int(cy - side / 2 + wy)) + 1)
    if not len(xs) or not len(ys):
        return None
    x, y = np.meshgrid(xs, ys)
    covered = table[y + side, x + side] - table[y, x + side] - table[y + side, x] + table[y, x]
    ok = covered >= min_coverage * side * side
    gap = side + side // 4  # a quarter side apart, so two marks do not read as one
    for tx, ty in taken:
        ok &= (np.abs(x - tx) >= gap) | (np.abs(y - ty) >= gap)
    if not ok.any():
        return None
    distance = np.where(ok, (x + side / 2 - cx) ** 2 + (y + side / 2 - cy) ** 2, np.inf)
    k = np.unravel_index(np.argmin(distance), distance.shape)
    return int(x[k]), int(y[k])


def find_places(mask: np.ndarray, side: int, min_coverage: float) -> dict[str, tuple[int, int]]:
    """place -> top-left corner of its mark square, for every place the garment has room for."""
    table = np.pad(mask.astype(np.int32), ((1, 0), (1, 0))).cumsum(0).cumsum(1)  # summed-area table
    found: dict[str, tuple[int, int]] = {}
    for place, target in place_targets(mask, side).items():
        corner = find_place(table, target, side, list(found.values()), min_coverage)
        if corner is not None:
            found[place] = corner
    return found


# ------------------------------------------------------------------------------------------ marks


@lru_cache(maxsize=64)
def mark_pattern(mark: str, side: int) -> np.ndarray:
    """uint8 [side, side, 3]: the mark's look; the whole square is the mark (grounds included)."""
    y, x = np.mgrid[0:side, 0:side]
    period = max(4, side // 4)
    if mark == "patch":
        first = np.ones((side, side), bool)
        colours = (MAGENTA, MAGENTA)
    elif mark == "stripes":
        first, colours = (y % period) < period / 2, (CYAN, WHITE)
    elif mark == "dots":
        dot = max(6, side // 3)
        dy, dx = y % dot - dot / 2 + 0.5, x % dot - dot / 2 + 0.5
        first, colours = dx * dx + dy * dy <= (0.3 * dot) ** 2, (YELLOW, BLUE)
    elif mark == "checks":
        cell = max(3, side // 4)
        first, colours = (x // cell + y // cell) % 2 == 0, (ORANGE, WHITE)
    else:
        raise ValueError(f"unknown mark {mark!r}; expected one of {list(MARKS)}")
    out = np.where(first[..., None], np.array(colours[0], np.uint8), np.array(colours[1], np.uint8))
    out.setflags(write=False)
    return out


def mark_side(shape: tuple[int, ...], mark_size: float) -> int:
    return max(8, round(mark_size * max(shape[0], shape[1])))


def paint(
    photo: np.ndarray, mask: np.ndarray, placements: Sequence[Placement], side: int
) -> tuple[np.ndarray, np.ndarray]:
    """-> (painted photo, uint8 label map: 1 + PLACES index where that place's mark is, 0 elsewhere).
    Only garment pixels are painted, so a mark never spills onto the backdrop."""
    painted, labels = photo.copy(), np.zeros(mask.shape, np.uint8)
    for place, mark, left, top in placements:
        window = (slice(top, top + side), slice(left, left + side))
        on = mask[window]
        painted[window][on] = mark_pattern(mark, side)[on]
        labels[window][on] = PLACES.index(place) + 1
    return painted, labels


def choose_marks(rng: np.random.Generator, places: dict[str, tuple[int, int]], cfg: PlantConfig) -> list[Placement]:
    """Which marks go where: distinct places and distinct marks, so one item never shows the same
    mark twice (its truth would then be ambiguous)."""
    wanted = 0 if rng.random() < cfg.unmarked else int(rng.integers(1, cfg.max_marks + 1))
    names = [p for p in PLACES if p in places]
    n = min(wanted, len(names))
    chosen = sorted(rng.choice(len(names), n, replace=False).tolist())
    marks = rng.choice(len(MARKS), n, replace=False).tolist()
    return [(names[c], MARKS[m], *places[names[c]]) for c, m in zip(chosen, marks)]


@dataclass(frozen=True)
class PlantedPhoto:
    painted: np.ndarray  # uint8 [H, W, 3]
    labels: np.ndarray  # uint8 [H, W]
    placements: list[Placement]


def plant_photo(photo: np.ndarray, rng: np.random.Generator, cfg: PlantConfig) -> PlantedPhoto | None:
    """Paint one photo, or None where its garment cannot be told from the backdrop."""
    mask = garment_mask(photo, cfg)
    if mask is None:
        return None
    side = mark_side(photo.shape, cfg.mark_size)
    placements = choose_marks(rng, find_places(mask, side, cfg.min_coverage), cfg)
    return PlantedPhoto(*paint(photo, mask, placements, side), placements)


# ---------------------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class PlantedItems:
    item_ids: list[str]
    sources: list[str]  # the original photo each painted one came from
    marks: np.ndarray  # [I, len(PLACES)] index into MARKS, -1 = no mark at that place

    def __len__(self) -> int:
        return len(self.item_ids)


def _files(number: int) -> tuple[str, str]:
    """Relative photo and label-map paths of item number `number` (0-based), sharded by SHARD_SIZE."""
    stem = f"{number // SHARD_SIZE:03d}/item_{number + 1:07d}"
    return f"images/{stem}.jpg", f"masks/{stem}.png"


def _save(planted: PlantedPhoto, folder: Path, number: int, quality: int) -> None:
    image, labels = (folder / p for p in _files(number))
    image.parent.mkdir(parents=True, exist_ok=True)
    labels.parent.mkdir(parents=True, exist_ok=True)
    # Unmarked photos are re-encoded too, so JPEG artefacts never tell marked items apart.
    # No chroma subsampling: it would smear a small mark's colours into the garment's.
    Image.fromarray(planted.painted).save(image, "JPEG", quality=quality, subsampling=0)
    Image.fromarray(planted.labels, "L").save(labels, "PNG")


def _load_photo(path: Path) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError:  # a missing or broken photo is skipped like one without a clean garment
        return None


def paint_catalog(
    cfg: PlantConfig, photos: list[tuple[str, Path]], folder: Path, progress: bool = True
) -> tuple[PlantedItems, int]:
    """Sample photos in a seeded order and paint them until cfg.items are kept -> (items, skipped)."""
    order = np.random.default_rng([cfg.seed, 0]).permutation(len(photos))
    ids, sources, marks, skipped = [], [], [], 0
    with tqdm(total=min(cfg.items, len(photos)), desc="paint", unit="img", disable=not progress) as bar:
        for row in order.tolist():
            if len(ids) == cfg.items:
                break
            photo = _load_photo(photos[row][1])
            # Each photo draws from its own seed: what it gets does not depend on which were skipped.
            planted = None if photo is None else plant_photo(photo, np.random.default_rng([cfg.seed, 1, row]), cfg)
            if planted is None:
                skipped += 1
                continue
            _save(planted, folder, len(ids), cfg.jpeg_quality)
            ids.append(photos[row][0])
            sources.append(str(photos[row][1].resolve()))  # the cwd of this run means nothing later
            at = dict((p, MARKS.index(m)) for p, m, _, _ in planted.placements)
            marks.append([at.get(p, -1) for p in PLACES])
            bar.update(1)
    return PlantedItems(ids, sources, np.array(marks, np.int64).reshape(-1, len(PLACES))), skipped


# ------------------------------------------------------------------------------------------ users


def sample_tastes(rng: np.random.Generator, items: PlantedItems, users: int) -> np.ndarray:
    """[U, 2] (place index, mark index): each user likes one pair that some item carries."""
    pairs = [(p, m) for p in range(len(PLACES)) for m in range(len(MARKS)) if (items.marks[:, p] == m).any()]
    if not pairs:
        raise ValueError("no item carries a mark: nothing to plant (lower --unmarked or use more photos)")
    return np.array(pairs, np.int64)[rng.integers(0, len(pairs), users)]


def _pick(rng: np.random.Generator, weights: np.ndarray, count: int, taken: np.ndarray) -> np.ndarray:
    """Up to `count` distinct items not yet `taken`, drawn by `weights`; marks them taken."""
    w = np.where(taken, 0.0, weights)
    count = min(count, int((w > 0).sum()))
    if count == 0:
        return np.zeros(0, np.int64)
    chosen = rng.choice(len(w), count, replace=False, p=w / w.sum())
    taken[chosen] = True
    return chosen


@dataclass(frozen=True)
class Sampled:
    user: np.ndarray  # [n] user index, sorted by user then time
    item: np.ndarray  # [n] item index
    timestamp: np.ndarray  # [n] int64
    from_pref: np.ndarray  # [n] bool: drawn for the user's taste


def sample_interactions(cfg: PlantConfig, rng: np.random.Generator, items: PlantedItems, tastes: np.ndarray) -> Sampled:
    n_items = len(items)
    rank = rng.permutation(n_items) + 1  # latent popularity, unrelated to the photo or its marks
    popularity = rank.astype(np.float64) ** -cfg.popularity_exponent
    cap = max(1, n_items // 2)
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    for place, mark in tastes.tolist():
        n = int(np.clip(rng.poisson(cfg.mean_interactions), min(cfg.min_interactions, cap), cap))
        r = rng.random(n)
        n_pref, n_pop = int((r < cfg.p_pref).sum()), int(((r >= cfg.p_pref) & (r < cfg.p_pref + cfg.p_pop)).sum())
        taken = np.zeros(n_items, bool)
        liked = np.where(items.marks[:, place] == mark, popularity, 0.0)  # this mark at this place only
        n_noise = n - n_pref - n_pop
        pref = _pick(rng, liked, n_pref, taken)
        n_pop += n_pref - len(pref)  # a taste fewer items carry than the user buys: popularity fills in
        picked = [pref, _pick(rng, popularity, n_pop, taken), _pick(rng, np.ones(n_items), n_noise, taken)]
        rows.append((np.concatenate(picked), np.arange(sum(map(len, picked))) < len(picked[0])))
    user = np.repeat(np.arange(len(tastes)), [len(i) for i, _ in rows])
    item = np.concatenate([i for i, _ in rows])
    from_pref = np.concatenate([f for _, f in rows])
    timestamp = cfg.start_timestamp + rng.integers(0, cfg.period_days * 86400, len(user), dtype=np.int64)
    order = np.lexsort((item, timestamp, user))
    return Sampled(user[order], item[order], timestamp[order], from_pref[order])


def carries_taste(items: PlantedItems, tastes: np.ndarray, sampled: Sampled) -> np.ndarray:
    """bool [n]: the item carries the user's mark at the user's place (the same mark elsewhere: no)."""
    place, mark = tastes[sampled.user, 0], tastes[sampled.user, 1]
    return items.marks[sampled.item, place] == mark


def make_reviews(cfg: PlantConfig, rng: np.random.Generator, tastes: np.ndarray, sampled: Sampled) -> np.ndarray:
    """object [n]: taste-driven purchases often name the liked mark and place, as the synthetic shop's do."""
    n = len(sampled.user)
    mention = sampled.from_pref & (rng.random(n) < cfg.review_mention)
    template, generic = rng.integers(0, len(MENTION_TEMPLATES), n), rng.integers(0, len(GENERIC_PHRASES), n)
    reviews = np.empty(n, dtype=object)
    for k, (men, tpl, gen, u) in enumerate(
        zip(mention.tolist(), template.tolist(), generic.tolist(), sampled.user.tolist())
    ):
        place, mark = PLACES[tastes[u, 0]], MARKS[tastes[u, 1]]
        reviews[k] = (
            MENTION_TEMPLATES[tpl].format(part=place, attr=MARK_WORDS[mark], that="that", **{"is": "is"})
            if men
            else GENERIC_PHRASES[gen]
        )
    return reviews


# ------------------------------------------------------------------------------------------ write


def _catalog_columns(items: PlantedItems) -> tuple[list[str], dict[str, list[str]]]:
    files = [_files(k) for k in range(len(items))]
    columns = {MASK_COLUMN: [m for _, m in files], "source": items.sources}
    for p, place in enumerate(PLACES):
        columns[f"{place}_mark"] = [MARKS[m] if m >= 0 else "" for m in items.marks[:, p].tolist()]
    return [i for i, _ in files], columns


def _write_truth(folder: Path, user_ids: np.ndarray, item_ids: np.ndarray, places: np.ndarray) -> int:
    with open(folder / GROUND_TRUTH_FILE, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "parts"])
        w.writerows(zip(user_ids, item_ids, places))
    return len(places)


def _write_users(folder: Path, user_ids: list[str], tastes: np.ndarray) -> None:
    with open(folder / USERS_FILE, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "preferences"])
        w.writerows((u, f"{PLACES[p]}:{MARKS[m]}") for u, (p, m) in zip(user_ids, tastes.tolist()))


def garments_spec() -> dict:
    """garments.json of a planted dataset: the places as parts, and where their label maps are."""
    return {
        "parts": list(PLACES),
        LABEL_MAPS_KEY: MASK_COLUMN,
        "label_values": "PNG, the photo's size: 1 + index in parts where that part's mark was painted, 0 elsewhere",
        "marks": {m: MARK_WORDS[m] for m in MARKS},
    }


@dataclass(frozen=True)
class Summary:
    items: int
    skipped: int
    marked: int
    users: int
    interactions: int
    from_preferences: int
    ground_truth_pairs: int
    seconds: float


def generate(cfg: PlantConfig, photos: Path | str, out: Path | str, progress: bool = True) -> Summary:
    """Write a complete planted dataset folder from the catalog folder `photos`."""
    cfg.validate()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    items, skipped = paint_catalog(cfg, source_photos(photos), folder, progress)
    user_rng, interaction_rng, review_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([cfg.seed, 2]).spawn(3)
    )
    tastes = sample_tastes(user_rng, items, cfg.users)
    sampled = sample_interactions(cfg, interaction_rng, items, tastes)
    user_ids = [f"u{k:05d}" for k in range(1, cfg.users + 1)]
    user_col = np.array(user_ids, dtype=object)[sampled.user]
    item_col = np.array(items.item_ids, dtype=object)[sampled.item]
    images, columns = _catalog_columns(items)
    write_catalog(folder, items.item_ids, images, columns)
    write_interactions(
        folder, Interactions(user_col, item_col, sampled.timestamp, make_reviews(cfg, review_rng, tastes, sampled))
    )
    hit = carries_taste(items, tastes, sampled)
    n_truth = _write_truth(folder, user_col[hit], item_col[hit], np.array(PLACES)[tastes[sampled.user[hit], 0]])
    _write_users(folder, user_ids, tastes)
    (folder / GARMENTS_FILE).write_text(json.dumps(garments_spec(), indent=2) + "\n", encoding="utf-8")
    (folder / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n", encoding="utf-8")
    return Summary(
        len(items),
        skipped,
        int((items.marks >= 0).any(1).sum()),
        cfg.users,
        len(sampled.user),
        int(sampled.from_pref.sum()),
        n_truth,
        time.perf_counter() - t0,
    )


# -------------------------------------------------------------------------------------------- CLI
