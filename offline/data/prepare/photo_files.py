"""Photo files of a prepared dataset: placed in its folder, and checked that they decode.

Every preparation checks its photos before it writes the catalog: a photo that is missing, is not an
image or is cut short leaves its item out (counted by reason), because feature extraction would
otherwise stop on it, or an item would be ranked from a feature of nothing.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

MISSING = "photo file missing"
NOT_AN_IMAGE = "photo is not an image Pillow can read"
TRUNCATED = "photo is truncated or corrupt"
# Decoding is I/O and C code that releases the GIL: threads check the sample's 24,717 photos in seconds.
CHECK_WORKERS = 8


def link_or_copy(src: str, dest: str) -> None:
    """Hard-link `src` to `dest` (a copy across file systems); a `dest` of the same size is left alone."""
    if os.path.exists(dest) and os.stat(dest).st_size == os.stat(src).st_size:
        return
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + ".part"
    if os.path.exists(tmp):
        os.unlink(tmp)
    try:
        os.link(src, tmp)  # no bytes copied: the sample's 24,717 photos are 217 MB
    except OSError:  # another file system, or links not allowed here
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def photo_problem(path: str) -> str | None:
    """Why the photo at `path` cannot be used (MISSING, NOT_AN_IMAGE, TRUNCATED), or None when it decodes
    whole. The pixels are decoded, not only the header: a download cut short has a valid header."""
    if not os.path.isfile(path):
        return MISSING
    try:
        with Image.open(path) as im:
            im.draft("RGB", (64, 64))  # JPEG decodes at 1/8 scale, still reading every byte
            im.load()
    except UnidentifiedImageError:
        return NOT_AN_IMAGE
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return TRUNCATED
    return None


def check_photos(paths: list[str], progress: bool = True) -> list[str | None]:
    """`photo_problem` of each path, in order."""
    with ThreadPoolExecutor(CHECK_WORKERS) as pool:
        return list(
            tqdm(
                pool.map(photo_problem, paths),
                total=len(paths),
                desc="check photos",
                unit=" img",
                disable=not progress,
                mininterval=1.0,
            )
        )
