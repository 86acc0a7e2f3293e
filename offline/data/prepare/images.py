"""Fetch item photos from their URLs into a dataset's images/ folder, resumably.

A thread pool downloads with a timeout per request and bounded retries with exponential backoff on
the failures that can pass (connection errors, timeouts, 408/425/429/5xx). Every outcome goes into
images/manifest.csv (item_id,url,status,path,detail), rewritten as the run goes, so a run that stops
half-way loses nothing. A later run fetches only what is missing:
  ok      the photo is at `path` (relative to the dataset folder): kept, unless its URL changed
  gone    the server answered 404/410: not asked again (delete the manifest line to retry)
  failed  anything else (retries spent, not an image, too large): tried again next run
A response must decode as an image (Pillow), so an HTML error page never lands in the catalog.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

IMAGES_DIR = "images"
MANIFEST_FILE = "manifest.csv"
MANIFEST_COLUMNS = ("item_id", "url", "status", "path", "detail")
OK, GONE, FAILED = "ok", "gone", "failed"
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
GONE_STATUS = frozenset({404, 410})
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class FetchConfig:
    concurrency: int = 8
    retries: int = 3  # extra attempts after the first, for failures that can pass
    timeout_s: float = 20.0
    backoff_s: float = 1.0  # wait before retry k (k = 0, 1, ...) is backoff_s * 2**k
    max_bytes: int = 20 * 2**20
    save_every: int = 100  # rewrite the manifest after this many results
    user_agent: str = "vecf-fashion-prepare/0.1 (+research; resumable image fetch)"


@dataclass(frozen=True)
class ImageRecord:
    item_id: str
    url: str
    status: str  # OK, GONE or FAILED
    path: str  # relative to the dataset folder; "" unless OK
    detail: str  # why it is not OK ("HTTP 404", "timeout", ...), "" when OK


@dataclass(frozen=True)
class FetchSummary:
    records: dict[str, ImageRecord]  # item_id -> outcome, for every item asked about
    fetched: int  # asked for by this run
    downloaded: int  # of those, now ok
    reused: int  # already in the manifest (ok or gone) and not asked again

    def count(self, status: str) -> int:
        return sum(1 for r in self.records.values() if r.status == status)


def image_name(item_id: str, url: str) -> str:
    """File name for an item's photo: the id itself when it is a plain token (Amazon asins are),
    else a hash of it, so an id can never name a path outside images/."""
    stem = item_id if _SAFE_ID.fullmatch(item_id) else "id-" + hashlib.sha1(item_id.encode()).hexdigest()[:20]
    suffix = Path(urlparse(url).path).suffix.lower()
    return stem + (suffix if suffix in IMAGE_SUFFIXES else ".jpg")


def read_manifest(dataset: Path) -> dict[str, ImageRecord]:
    path = dataset / IMAGES_DIR / MANIFEST_FILE
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {r["item_id"]: ImageRecord(*(r.get(c) or "" for c in MANIFEST_COLUMNS)) for r in csv.DictReader(f)}


def write_manifest(dataset: Path, records: dict[str, ImageRecord]) -> Path:
    path = dataset / IMAGES_DIR / MANIFEST_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(MANIFEST_COLUMNS)
        w.writerows((r.item_id, r.url, r.status, r.path, r.detail) for r in records.values())
    os.replace(tmp, path)  # a reader never sees half a manifest
    return path


def local_photos(dataset: Path) -> dict[str, str]:
    """item_id -> photo path relative to the dataset folder, for manifest rows whose file is there."""
    return {
        item: r.path
        for item, r in read_manifest(dataset).items()
        if r.status == OK and r.path and (dataset / r.path).is_file()
    }


def _download(client: httpx.Client, url: str, max_bytes: int) -> tuple[int, bytes]:
    with client.stream("GET", url) as response:
        if response.status_code != 200:
            return response.status_code, b""
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise ValueError(f"larger than {max_bytes:,} bytes")
            chunks.append(chunk)
        return 200, b"".join(chunks)


def fetch_one(
    client: httpx.Client,
    item_id: str,
    url: str,
    dataset: Path,
    config: FetchConfig,
    sleep: Callable[[float], None] = time.sleep,
) -> ImageRecord:
    relative = f"{IMAGES_DIR}/{image_name(item_id, url)}"
    detail = ""
    for attempt in range(config.retries + 1):
        if attempt:
            sleep(config.backoff_s * 2 ** (attempt - 1))
        try:
            status, body = _download(client, url, config.max_bytes)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:  # retrying cannot help
            return ImageRecord(item_id, url, FAILED, "", f"invalid URL: {e}"[:200])
        except httpx.HTTPError as e:  # connection refused/reset, timeouts, broken responses: may pass
            detail = f"{type(e).__name__}: {e}"[:200]
            continue
        except ValueError as e:
            return ImageRecord(item_id, url, FAILED, "", str(e))
        if status in GONE_STATUS:
            return ImageRecord(item_id, url, GONE, "", f"HTTP {status}")
        if status in RETRY_STATUS:
            detail = f"HTTP {status}"
            continue
        if status != 200:
            return ImageRecord(item_id, url, FAILED, "", f"HTTP {status}")
        try:
            with Image.open(io.BytesIO(body)) as im:
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            return ImageRecord(item_id, url, FAILED, "", "not an image")
        path = dataset / relative
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(body)
        os.replace(tmp, path)
        return ImageRecord(item_id, url, OK, relative, "")
    return ImageRecord(item_id, url, FAILED, "", f"gave up after {config.retries + 1} attempts: {detail}")


def _todo(urls: dict[str, str], done: dict[str, ImageRecord], dataset: Path) -> Iterator[tuple[str, str]]:
    for item, url in urls.items():
        old = done.get(item)
        if (
            old is not None
            and old.url == url
            and (old.status == GONE or (old.status == OK and (dataset / old.path).is_file()))
        ):
            continue
        yield item, url


def fetch_images(
    urls: dict[str, str],
    dataset: Path,
    config: FetchConfig = FetchConfig(),
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchSummary:
    """Fetch item_id -> url into dataset/images/; -> the outcome for every item in `urls`."""
    (dataset / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(dataset)
    todo = list(_todo(urls, manifest, dataset))
    headers = {"User-Agent": config.user_agent}
    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)
    with (
        httpx.Client(timeout=config.timeout_s, follow_redirects=True, headers=headers, limits=limits) as client,
        ThreadPoolExecutor(max_workers=config.concurrency) as pool,
        tqdm(total=len(todo), desc="images", unit=" img", disable=not progress or not todo) as bar,
    ):
        futures = [pool.submit(fetch_one, client, item, url, dataset, config, sleep) for item, url in todo]
        downloaded = 0
        for n, future in enumerate(as_completed(futures), 1):
            record = future.result()
            downloaded += record.status == OK
            manifest[record.item_id] = record  # only this thread writes the manifest
            bar.update()
            if n % config.save_every == 0:
                write_manifest(dataset, manifest)
    write_manifest(dataset, manifest)
    return FetchSummary(
        {item: manifest[item] for item in urls}, fetched=len(todo), downloaded=downloaded, reused=len(urls) - len(todo)
    )
