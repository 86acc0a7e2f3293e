"""`python -m offline synth`: a synthetic fashion catalog with planted, location-specific preferences.

Every user likes 1-3 (part, attribute) pairs such as ("collar", "red") or ("sleeves", "stripes"), and
mostly interacts with items whose *that part* has *that attribute*. The same attribute on another part
does not count, so only a model that looks at the right image region can explain the interactions:
the ground truth of where a user looks is known by construction (`ground_truth.csv`, `garments.json`).

Deterministic from the config: rerunning with the same arguments rewrites identical files.
Each stage draws from its own child seed, so e.g. changing the review rate leaves the catalog alone.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from offline.data import garments
from offline.data.dataset import GARMENTS_FILE, GROUND_TRUTH_FILE, Interactions, write_catalog, write_interactions
from offline.data.options import option

USERS_FILE = "users.csv"
CONFIG_FILE = "synth_config.json"
IMAGES_DIR = "images"
SHARD_SIZE = 1000  # images per sub-folder

KIND_NAMES = tuple(garments.KINDS)
COLOR_NAMES = tuple(garments.COLORS)
# Attribute ids: colours first, then patterns; a preference is (part index, attribute id).
ATTRIBUTES = COLOR_NAMES + garments.PATTERNS
N_PARTS, N_COLORS = len(garments.PARTS), len(COLOR_NAMES)
PREFERRED_PATTERNS = ("stripes", "dots", "checks")  # "solid" is the default look, not a taste
SOURCE_PREFERENCE, SOURCE_POPULAR, SOURCE_NOISE = 0, 1, 2


@dataclass(frozen=True)
class SynthConfig:
    seed: int = option(0, "random seed; everything is a function of the config")
    users: int = option(1000, "number of users")
    items: int = option(5000, "number of items (one image each)")
    width: int = option(192, "image width in pixels")
    height: int = option(256, "image height in pixels")
    mean_interactions: float = option(20.0, "Poisson mean of interactions per user")
    min_interactions: int = option(5, "fewest interactions per user")
    p_pref: float = option(0.7, "probability an interaction follows one of the user's preferences")
    p_pop: float = option(0.2, "probability an interaction is drawn by item popularity (rest: uniform)")
    review_mention: float = option(0.7, "probability a preference-driven review names the liked part")
    popularity_exponent: float = option(0.8, "Zipf exponent of latent item popularity")
    preference_skew: float = option(0.8, "Zipf exponent of how common each (part, attribute) taste is")
    pattern_preference_share: float = option(0.25, "share of tastes that are patterns, not colours")
    body_preference_weight: float = option(0.2, "weight of 'body' tastes relative to a small part")
    max_preferences: int = option(3, "each user likes 1..this many (part, attribute) pairs")
    solid_share: float = option(0.55, "probability a part is solid (other patterns share the rest)")
    shift: float = option(0.04, "largest per-item translation, as a fraction of width/height")
    scale_min: float = option(0.9, "smallest per-item garment scale")
    scale_max: float = option(1.05, "largest per-item garment scale")
    start_timestamp: int = option(1577836800, "first possible interaction time (unix seconds)")
    period_days: int = option(730, "interactions are spread over this many days")
    jpeg_quality: int = option(90, "JPEG quality of the images")

    def validate(self) -> None:
        problems = []
        for name in ("users", "items", "min_interactions", "max_preferences", "period_days"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("p_pref", "p_pop", "review_mention", "pattern_preference_share", "solid_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name}={getattr(self, name)} must be in [0, 1]")
        if self.p_pref + self.p_pop > 1.0:
            problems.append(f"p_pref + p_pop = {self.p_pref + self.p_pop} must be <= 1")
        if self.width < 32 or self.height < 32:
            problems.append(f"image size {self.width}x{self.height} must be at least 32x32")
        if not 0.5 <= self.scale_min <= self.scale_max <= 1.1:
            problems.append(f"need 0.5 <= scale_min ({self.scale_min}) <= scale_max ({self.scale_max}) <= 1.1")
        if not 0.0 <= self.shift <= 0.1:
            problems.append(f"shift={self.shift} must be in [0, 0.1] so garments stay in the frame")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality={self.jpeg_quality} must be in [1, 100]")
        if self.mean_interactions <= 0 or self.body_preference_weight < 0:
            problems.append("mean_interactions must be > 0 and body_preference_weight >= 0")
        if problems:
            raise ValueError("invalid synth config: " + "; ".join(problems))


@dataclass(frozen=True)
class Items:
    kind: np.ndarray  # [I] index into KIND_NAMES
    tx: np.ndarray  # [I] int pixels
    ty: np.ndarray  # [I] int pixels
    scale_permille: np.ndarray  # [I] int; scale = permille / 1000 exactly as written in catalog.csv
    color: np.ndarray  # [I, P] index into COLOR_NAMES
    pattern: np.ndarray  # [I, P] index into garments.PATTERNS
    popularity: np.ndarray  # [I] float, sums to 1
    background: np.ndarray  # [I, 2, 3] uint8 top and bottom backdrop colours

    def __len__(self) -> int:
        return len(self.kind)

    def has(self, item: np.ndarray, part: np.ndarray, attribute: np.ndarray) -> np.ndarray:
        """bool [n]: does item[k]'s part[k] carry attribute[k] (a colour or a pattern id)?"""
        is_color = attribute < N_COLORS
        return np.where(is_color, self.color[item, part] == attribute, self.pattern[item, part] == attribute - N_COLORS)


@dataclass(frozen=True)
class Users:
    pref_part: np.ndarray  # [U, M] part index, -1 = no preference in this slot
    pref_attr: np.ndarray  # [U, M] attribute id, -1 likewise
    count: np.ndarray  # [U] number of preferences (slots 0..count-1 are used)

    def __len__(self) -> int:
        return len(self.count)


@dataclass(frozen=True)
class Sampled:
    """Interactions as index arrays, sorted by user then time."""

    user: np.ndarray  # [n] user index
    item: np.ndarray  # [n] item index
    timestamp: np.ndarray  # [n] int64 unix seconds
    source: np.ndarray  # [n] SOURCE_*
    pref_slot: np.ndarray  # [n] which user preference drove it (-1 when source is not preference)


# ----------------------------------------------------------------------------------------- items


def sample_items(cfg: SynthConfig, rng: np.random.Generator) -> Items:
    n = cfg.items
    pattern_p = np.array([cfg.solid_share] + [(1 - cfg.solid_share) / 3] * 3)
    scale_lo, scale_hi = round(cfg.scale_min * 1000), round(cfg.scale_max * 1000)
    max_tx, max_ty = round(cfg.shift * cfg.width), round(cfg.shift * cfg.height)
    rank = rng.permutation(n) + 1  # latent popularity rank, unrelated to item id or look
    popularity = rank.astype(np.float64) ** -cfg.popularity_exponent
    top = rng.integers(236, 252, size=(n, 1, 3))
    darken = rng.integers(6, 20, size=(n, 1, 1))
    return Items(
        kind=rng.integers(0, len(KIND_NAMES), n),
        tx=rng.integers(-max_tx, max_tx + 1, n),
        ty=rng.integers(-max_ty, max_ty + 1, n),
        scale_permille=rng.integers(scale_lo, scale_hi + 1, n),
        color=rng.integers(0, N_COLORS, (n, N_PARTS)),
        pattern=rng.choice(len(garments.PATTERNS), size=(n, N_PARTS), p=pattern_p),
        popularity=popularity / popularity.sum(),
        background=np.concatenate([top, top - darken], axis=1).astype(np.uint8),
    )


def catalog_columns(items: Items) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """item ids, image paths and attribute columns (numpy string arrays keep 200k rows small)."""
    numbers = range(1, len(items) + 1)
    item_ids = [f"i{k:07d}" for k in numbers]
    images = [image_path(k) for k in numbers]
    columns: dict[str, np.ndarray] = {
        "kind": np.array(KIND_NAMES)[items.kind],
        "tx": items.tx.astype(str),
        "ty": items.ty.astype(str),
        "scale": np.array([f"{s / 1000:.3f}" for s in items.scale_permille.tolist()]),
    }
    for p, part in enumerate(garments.PARTS):
        columns[f"{part}_color"] = np.array(COLOR_NAMES)[items.color[:, p]]
        columns[f"{part}_pattern"] = np.array(garments.PATTERNS)[items.pattern[:, p]]
    return item_ids, images, columns


def image_path(number: int) -> str:
    """Relative path of item number `number` (1-based), sharded so no folder holds > SHARD_SIZE files."""
    return f"{IMAGES_DIR}/{number // SHARD_SIZE:03d}/item_{number:07d}.jpg"


# ----------------------------------------------------------------------------------------- users


def preference_vocabulary(cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every possible taste as (part, attribute) with its base weight: small parts, mostly colours."""
    attrs = [ATTRIBUTES.index(a) for a in COLOR_NAMES + PREFERRED_PATTERNS]
    attr_w = [(1 - cfg.pattern_preference_share) / N_COLORS] * N_COLORS + [
        cfg.pattern_preference_share / len(PREFERRED_PATTERNS)
    ] * len(PREFERRED_PATTERNS)
    part_w = [cfg.body_preference_weight if part == "body" else 1.0 for part in garments.PARTS]
    parts = np.repeat(np.arange(N_PARTS), len(attrs))
    attributes = np.tile(attrs, N_PARTS)
    weights = np.repeat(part_w, len(attrs)) * np.tile(attr_w, N_PARTS)
    return parts, attributes, weights


def sample_users(cfg: SynthConfig, rng: np.random.Generator) -> Users:
    parts, attributes, weights = preference_vocabulary(cfg)
    # Skew: a random Zipf ranking on top of the base weights makes a few tastes common.
    rank = rng.permutation(len(weights)) + 1
    logw = np.log(np.maximum(weights * rank**-cfg.preference_skew, 1e-300))
    m = min(cfg.max_preferences, int((weights > 0).sum()))
    # Gumbel top-k = weighted sampling without replacement, for all users at once.
    keys = logw[None, :] + rng.gumbel(size=(cfg.users, len(weights)))  # [U, V]
    chosen = np.argsort(-keys, axis=1, kind="stable")[:, :m]  # [U, m]
    count = rng.integers(1, m + 1, cfg.users)
    used = np.arange(m)[None, :] < count[:, None]
    return Users(np.where(used, parts[chosen], -1), np.where(used, attributes[chosen], -1), count)


def preference_strings(users: Users) -> list[str]:
    return [
        ";".join(f"{garments.PARTS[p]}:{ATTRIBUTES[a]}" for p, a in zip(ps, as_) if p >= 0)
        for ps, as_ in zip(users.pref_part.tolist(), users.pref_attr.tolist())
    ]


# ---------------------------------------------------------------------------------- interactions


class _Pools:
    """Per-(part, attribute) item lists with popularity CDFs, built once; sampling is then a searchsorted."""

    def __init__(self, items: Items):
        self.n_items = len(items)
        self.all_cdf = np.cumsum(items.popularity)
        self.members: dict[int, np.ndarray] = {}
        self.cdf: dict[int, np.ndarray] = {}
        for p in range(N_PARTS):
            for a in range(len(ATTRIBUTES)):
                idx = np.flatnonzero(
                    items.has(np.arange(self.n_items), np.full(self.n_items, p), np.full(self.n_items, a))
                )
                self.members[self.key(p, a)] = idx
                self.cdf[self.key(p, a)] = np.cumsum(items.popularity[idx])

    @staticmethod
    def key(part, attribute):  # works on ints and on index arrays alike
        return part * len(ATTRIBUTES) + attribute

    def size(self, keys: np.ndarray) -> np.ndarray:
        """[n]: number of items in each row's pool."""
        return np.array([len(self.members[k]) for k in range(N_PARTS * len(ATTRIBUTES))])[keys]

    def popular(self, rng: np.random.Generator, n: int) -> np.ndarray:
        u = rng.random(n) * self.all_cdf[-1]
        return np.minimum(np.searchsorted(self.all_cdf, u, side="right"), self.n_items - 1)

    def matching(self, rng: np.random.Generator, keys: np.ndarray) -> np.ndarray:
        """One popularity-weighted item per row from the pool keys[row] (pools must be non-empty)."""
        out = np.empty(len(keys), np.int64)
        for k in np.unique(keys).tolist():  # loop over <= 60 pools, not over rows
            rows = np.flatnonzero(keys == k)
            cdf = self.cdf[k]
            pick = np.searchsorted(cdf, rng.random(len(rows)) * cdf[-1], side="right")
            out[rows] = self.members[k][np.minimum(pick, len(cdf) - 1)]
        return out


def _draw(rng: np.random.Generator, pools: _Pools, source: np.ndarray, pool_key: np.ndarray) -> np.ndarray:
    item = rng.integers(0, pools.n_items, len(source))  # SOURCE_NOISE
    pop = source == SOURCE_POPULAR
    item[pop] = pools.popular(rng, int(pop.sum()))
    pref = source == SOURCE_PREFERENCE
    item[pref] = pools.matching(rng, pool_key[pref])
    return item


def _later_duplicates(user: np.ndarray, item: np.ndarray, n_items: int) -> np.ndarray:
    """bool [n]: rows repeating an earlier row's (user, item) pair."""
    key = user.astype(np.int64) * n_items + item
    order = np.argsort(key, kind="stable")
    dup = np.zeros(len(key), bool)
    dup[order[1:]] = key[order[1:]] == key[order[:-1]]
    return dup


def sample_interactions(cfg: SynthConfig, rng: np.random.Generator, items: Items, users: Users) -> Sampled:
    n_items = len(items)
    pools = _Pools(items)
    cap = max(1, n_items // 2)  # leave room to draw distinct items in tiny catalogs
    counts = np.clip(rng.poisson(cfg.mean_interactions, len(users)), min(cfg.min_interactions, cap), cap)
    user = np.repeat(np.arange(len(users)), counts)  # [n]
    r = rng.random(len(user))
    source = np.where(
        r < cfg.p_pref, SOURCE_PREFERENCE, np.where(r < cfg.p_pref + cfg.p_pop, SOURCE_POPULAR, SOURCE_NOISE)
    )
    slot = (rng.random(len(user)) * users.count[user]).astype(np.int64)  # which taste drives a row
    pool_key = pools.key(users.pref_part[user, slot], users.pref_attr[user, slot])
    # A taste nobody in this catalog satisfies falls back to popularity.
    source[(source == SOURCE_PREFERENCE) & (pools.size(pool_key) == 0)] = SOURCE_POPULAR

    item = _draw(rng, pools, source, pool_key)
    todo = np.flatnonzero(_later_duplicates(user, item, n_items))
    for attempt in range(40):  # redraw only the repeated rows; few remain after a round or two
        if not len(todo):
            break
        if attempt == 20:  # a user exhausted a small pool: give the remaining rows to uniform noise
            source[todo] = SOURCE_NOISE
        item[todo] = _draw(rng, pools, source[todo], pool_key[todo])
        todo = np.flatnonzero(_later_duplicates(user, item, n_items))
    keep = ~_later_duplicates(user, item, n_items)

    period = cfg.period_days * 86400
    timestamp = cfg.start_timestamp + rng.integers(0, period, len(user), dtype=np.int64)
    pref_slot = np.where(source == SOURCE_PREFERENCE, slot, -1)
    order = np.lexsort((item[keep], timestamp[keep], user[keep]))
    return Sampled(*(a[keep][order] for a in (user, item, timestamp, source, pref_slot)))


def liked_parts_present(items: Items, users: Users, sampled: Sampled) -> np.ndarray:
    """bool [n, P]: which of the user's liked parts carry the liked attribute on the item."""
    present = np.zeros((len(sampled.user), N_PARTS), bool)
    rows = np.arange(len(sampled.user))
    for m in range(users.pref_part.shape[1]):
        part = users.pref_part[sampled.user, m]
        attr = users.pref_attr[sampled.user, m]
        valid = part >= 0
        match = valid & items.has(sampled.item, np.maximum(part, 0), np.maximum(attr, 0))
        present[rows[match], part[match]] = True
    return present


# ---------------------------------------------------------------------------------------- reviews

MENTION_TEMPLATES = (
    "love the {attr} {part}",
    "{that} {attr} {part} {is} great",
    "the {attr} {part} {is} what sold me",
    "bought it for the {attr} {part}",
    "really like the {attr} {part}",
    "{attr} {part}, exactly my style",
)
REMARK_TEMPLATES = ("the {part} {is} {attr}", "the {part} {is} {attr} in real life too")
GENERIC_PHRASES = (
    "nice fit",
    "good quality",
    "fast delivery",
    "true to size",
    "comfortable and well made",
    "ok for the price",
    "would buy again",
    "fabric feels nice",
    "runs a bit small",
    "washes well",
)
PATTERN_WORDS = {"solid": "plain", "stripes": "striped", "dots": "polka-dot", "checks": "checked"}


def attribute_word(attribute: int) -> str:
    """How a review says an attribute: colours as is, patterns as adjectives ('striped')."""
    name = ATTRIBUTES[attribute]
    return PATTERN_WORDS.get(name, name)


def _phrase(template: str, part: int, attribute: int) -> str:
    plural = garments.PARTS[part].endswith("s")
    return template.format(
        part=garments.PARTS[part],
        attr=attribute_word(attribute),
        that="those" if plural else "that",
        **{"is": "are" if plural else "is"},
    )


def make_reviews(
    cfg: SynthConfig, rng: np.random.Generator, items: Items, users: Users, sampled: Sampled
) -> np.ndarray:
    """object [n]: preference rows often name the liked part; other text is generic or a true remark."""
    n = len(sampled.user)
    from_pref = sampled.source == SOURCE_PREFERENCE
    slot = np.maximum(sampled.pref_slot, 0)
    liked_part = users.pref_part[sampled.user, slot]
    liked_attr = users.pref_attr[sampled.user, slot]
    mention = from_pref & (rng.random(n) < cfg.review_mention)
    remark = ~mention & (rng.random(n) < 0.5)
    # Remarks on a preference row talk about some *other* part, so they never give the taste away.
    other = (liked_part + 1 + rng.integers(0, N_PARTS - 1, n)) % N_PARTS
    remark_part = np.where(from_pref, other, rng.integers(0, N_PARTS, n))
    remark_attr = np.where(
        rng.random(n) < 0.5, items.color[sampled.item, remark_part], N_COLORS + items.pattern[sampled.item, remark_part]
    )
    template = rng.integers(0, 1 << 30, n)
    generic = rng.integers(0, len(GENERIC_PHRASES), n)
    suffix = rng.random(n) < 0.3
    reviews = np.empty(n, dtype=object)
    rows = zip(
        mention.tolist(),
        remark.tolist(),
        template.tolist(),
        generic.tolist(),
        suffix.tolist(),
        liked_part.tolist(),
        liked_attr.tolist(),
        remark_part.tolist(),
        remark_attr.tolist(),
    )
    for k, (men, rem, tpl, gen, suf, lp, la, rp, ra) in enumerate(rows):  # formatting only: all
        if men:  # choices were drawn above
            text = _phrase(MENTION_TEMPLATES[tpl % len(MENTION_TEMPLATES)], lp, la)
            reviews[k] = f"{text}, {GENERIC_PHRASES[gen]}" if suf else text
        elif rem:
            reviews[k] = _phrase(REMARK_TEMPLATES[tpl % len(REMARK_TEMPLATES)], rp, ra)
        else:
            reviews[k] = GENERIC_PHRASES[gen]
    return reviews


# ----------------------------------------------------------------------------------------- images


def _render_rows(task: tuple[str, tuple[int, int], int, list[tuple]]) -> tuple[int, int]:
    """Worker: draw and save one shard of images; returns (count, bytes written)."""
    folder, size, quality, rows = task
    written = 0
    for rel, kind, tx, ty, scale, colors, patterns, background in rows:
        image = garments.render_garment(
            garments.KINDS[kind],
            tx,
            ty,
            scale,
            size,
            dict(zip(garments.PARTS, colors)),
            dict(zip(garments.PARTS, patterns)),
            background,
        )
        path = Path(folder) / rel
        if written == 0:  # all rows of a task share one shard folder
            path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, "JPEG", quality=quality)
        written += path.stat().st_size
    return len(rows), written


def _render_tasks(cfg: SynthConfig, items: Items, folder: Path) -> Iterator[tuple]:
    """One task per image shard folder, built lazily so memory does not grow with the catalog."""
    for shard in range(len(items) // SHARD_SIZE + 1):
        numbers = range(max(1, shard * SHARD_SIZE), min(len(items) + 1, (shard + 1) * SHARD_SIZE))
        rows = [
            (
                image_path(k),
                KIND_NAMES[items.kind[k - 1]],
                int(items.tx[k - 1]),
                int(items.ty[k - 1]),
                int(items.scale_permille[k - 1]) / 1000,
                [COLOR_NAMES[c] for c in items.color[k - 1]],
                [garments.PATTERNS[p] for p in items.pattern[k - 1]],
                tuple(tuple(int(v) for v in rgb) for rgb in items.background[k - 1]),
            )
            for k in numbers
        ]
        if rows:
            yield str(folder), (cfg.width, cfg.height), cfg.jpeg_quality, rows


def render_images(cfg: SynthConfig, items: Items, folder: Path, workers: int) -> int:
    """Render every item image under folder/images; returns total bytes written."""
    total = 0
    with tqdm(total=len(items), desc="images", unit="img") as bar:
        if workers <= 1:
            for task in _render_tasks(cfg, items, folder):
                count, written = _render_rows(task)
                total += written
                bar.update(count)
            return total
        with ProcessPoolExecutor(max_workers=workers) as pool:
            pending: set[Future] = set()
            for task in _render_tasks(cfg, items, folder):
                pending.add(pool.submit(_render_rows, task))
                if len(pending) >= 2 * workers:  # bounded queue: tasks hold item rows
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        count, written = f.result()
                        total += written
                        bar.update(count)
            for f in pending:
                count, written = f.result()
                total += written
                bar.update(count)
    return total


# ------------------------------------------------------------------------------------------ write


def _write_ground_truth(folder: Path, user_ids: np.ndarray, item_ids: np.ndarray, present: np.ndarray) -> int:
    # Bit pattern -> ";"-joined part names, in PARTS order, for all 2^P combinations.
    names = [";".join(p for b, p in enumerate(garments.PARTS) if code >> b & 1) for code in range(1 << N_PARTS)]
    codes = present.astype(np.int64) @ (1 << np.arange(N_PARTS))
    rows = np.flatnonzero(codes)
    with open(folder / GROUND_TRUTH_FILE, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "parts"])
        w.writerows(zip(user_ids[rows], item_ids[rows], (names[c] for c in codes[rows].tolist())))
    return len(rows)


def _write_users(folder: Path, user_ids: list[str], users: Users) -> None:
    with open(folder / USERS_FILE, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "preferences"])
        w.writerows(zip(user_ids, preference_strings(users)))


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Summary:
    users: int
    items: int
    interactions: int
    from_preferences: int
    ground_truth_pairs: int
    image_bytes: int
    seconds_sampling: float
    seconds_images: float


def generate(cfg: SynthConfig, out: Path | str, workers: int = 1, images: bool = True) -> Summary:
    """Write a complete synthetic dataset folder (see offline.data.dataset for the format)."""
    cfg.validate()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    seeds = np.random.SeedSequence(cfg.seed).spawn(4)
    item_rng, user_rng, interaction_rng, review_rng = (np.random.default_rng(s) for s in seeds)
    items = sample_items(cfg, item_rng)
    users = sample_users(cfg, user_rng)
    sampled = sample_interactions(cfg, interaction_rng, items, users)
    reviews = make_reviews(cfg, review_rng, items, users, sampled)

    item_ids, image_paths, columns = catalog_columns(items)
    user_ids = [f"u{k:05d}" for k in range(1, len(users) + 1)]
    user_col = np.array(user_ids, dtype=object)[sampled.user]
    item_col = np.array(item_ids, dtype=object)[sampled.item]
    write_catalog(folder, item_ids, image_paths, columns)  # type: ignore[arg-type]  # arrays index like lists
    write_interactions(folder, Interactions(user_col, item_col, sampled.timestamp, reviews))
    n_truth = _write_ground_truth(folder, user_col, item_col, liked_parts_present(items, users, sampled))
    _write_users(folder, user_ids, users)
    _write_json(folder / GARMENTS_FILE, garments.garments_spec((cfg.width, cfg.height)))
    _write_json(folder / CONFIG_FILE, dataclasses.asdict(cfg))
    t1 = time.perf_counter()
    image_bytes = render_images(cfg, items, folder, workers) if images else 0
    return Summary(
        len(users),
        len(items),
        len(sampled.user),
        int((sampled.source == SOURCE_PREFERENCE).sum()),
        n_truth,
        image_bytes,
        t1 - t0,
        time.perf_counter() - t1,
    )


# -------------------------------------------------------------------------------------------- CLI
