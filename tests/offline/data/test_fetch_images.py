"""Image fetching (offline.data.prepare.images) against a local HTTP server on a free loopback port: photos,
a 404, a URL that fails once then works, an HTML page posing as a photo; the manifest, and a re-run
that fetches nothing new."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from offline.commands.prepare import main
from offline.data.dataset import load_catalog
from offline.data.prepare.images import FetchConfig, fetch_images, image_name, read_manifest


def jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (10, 15), color).save(buf, "JPEG")
    return buf.getvalue()


PHOTOS = {"/a.jpg": jpeg((255, 0, 0)), "/b.jpg": jpeg((0, 255, 0)), "/flaky.jpg": jpeg((0, 0, 255))}


class PhotoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), PhotoHandler)  # port 0: a free port
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class PhotoHandler(BaseHTTPRequestHandler):
    server: PhotoServer

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.hits[self.path] += 1
            hits = self.server.hits[self.path]
        if self.path == "/flaky.jpg" and hits == 1:
            self.send_error(503, "try again")
        elif self.path == "/page.jpg":
            self._send(b"<html>sign in to see this photo</html>", "text/html")
        elif self.path in PHOTOS:
            self._send(PHOTOS[self.path], "image/jpeg")
        else:
            self.send_error(404)

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[PhotoServer]:
    srv = PhotoServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


FAST = FetchConfig(concurrency=4, retries=2, timeout_s=5.0, backoff_s=0.01)


def test_fetch_manifest_and_resume(server: PhotoServer, tmp_path: Path) -> None:
    urls = {
        "A": f"{server.base}/a.jpg",
        "B": f"{server.base}/b.jpg",
        "GONE": f"{server.base}/missing.jpg",
        "FLAKY": f"{server.base}/flaky.jpg",
        "PAGE": f"{server.base}/page.jpg",
    }
    waits: list[float] = []
    first = fetch_images(urls, tmp_path, FAST, progress=False, sleep=waits.append)

    status = {item: r.status for item, r in first.records.items()}
    assert status == {"A": "ok", "B": "ok", "GONE": "gone", "FLAKY": "ok", "PAGE": "failed"}
    assert first.records["GONE"].detail == "HTTP 404" and first.records["PAGE"].detail == "not an image"
    assert waits == [0.01]  # one retry, after the 503
    assert (tmp_path / "images" / "A.jpg").read_bytes() == PHOTOS["/a.jpg"]
    assert (tmp_path / first.records["FLAKY"].path).read_bytes() == PHOTOS["/flaky.jpg"]
    assert (first.fetched, first.downloaded, first.reused) == (5, 3, 0)
    assert server.hits == {"/a.jpg": 1, "/b.jpg": 1, "/missing.jpg": 1, "/flaky.jpg": 2, "/page.jpg": 1}

    with open(tmp_path / "images" / "manifest.csv", newline="") as f:
        rows = {r["item_id"]: r for r in csv.DictReader(f)}
    assert list(next(iter(rows.values()))) == ["item_id", "url", "status", "path", "detail"]
    assert rows["A"] == {"item_id": "A", "url": urls["A"], "status": "ok", "path": "images/A.jpg", "detail": ""}
    assert rows["GONE"]["status"] == "gone" and rows["GONE"]["path"] == ""

    # Second run: ok and gone items are not asked again; only the failed one is retried.
    second = fetch_images(urls, tmp_path, FAST, progress=False, sleep=waits.append)
    assert (second.fetched, second.reused) == (1, 4)
    assert server.hits == {"/a.jpg": 1, "/b.jpg": 1, "/missing.jpg": 1, "/flaky.jpg": 2, "/page.jpg": 2}

    # Without the failing item nothing at all is fetched; a deleted photo is fetched again.
    urls.pop("PAGE")
    assert fetch_images(urls, tmp_path, FAST, progress=False).fetched == 0
    (tmp_path / "images" / "B.jpg").unlink()
    third = fetch_images(urls, tmp_path, FAST, progress=False)
    assert third.fetched == 1 and server.hits["/b.jpg"] == 2
    assert read_manifest(tmp_path)["B"].status == "ok"


def test_unreachable_server_gives_up_after_bounded_retries(tmp_path: Path) -> None:
    srv = PhotoServer()  # bound, then closed: nothing listens on this port
    base = srv.base
    srv.server_close()
    waits: list[float] = []
    summary = fetch_images({"X": f"{base}/x.jpg"}, tmp_path, FAST, progress=False, sleep=waits.append)
    record = summary.records["X"]
    assert record.status == "failed" and record.detail.startswith("gave up after 3 attempts: ConnectError")
    assert waits == [0.01, 0.02]  # exponential backoff between the 3 attempts


def test_image_names_stay_inside_the_folder() -> None:
    assert image_name("B000K2PJ4K", "https://x/I/51yCQ.jpg") == "B000K2PJ4K.jpg"
    assert image_name("B0", "https://x/I/photo.PNG?size=2") == "B0.png"
    evil = image_name("../../etc/passwd", "https://x/y")
    assert "/" not in evil and ".." not in evil and evil.endswith(".jpg")


def test_amazon2018_prepare_with_fetch_images(server: PhotoServer, tmp_path: Path) -> None:
    source, out = tmp_path / "raw", tmp_path / "out"
    source.mkdir()
    reviews = [
        {"reviewerID": "U1", "asin": "A", "reviewText": "red", "unixReviewTime": 1},
        {"reviewerID": "U1", "asin": "B", "reviewText": "green", "unixReviewTime": 2},
        {"reviewerID": "U2", "asin": "GONE", "reviewText": "lost", "unixReviewTime": 3},
    ]
    (source / "AMAZON_FASHION_5.json").write_text("".join(json.dumps(r) + "\n" for r in reviews))
    (source / "item_image_urls.csv").write_text(
        f"asin,image_url\nA,{server.base}/a.jpg\nB,{server.base}/b.jpg\nGONE,{server.base}/missing.jpg\n"
    )
    args = ["amazon2018", "--source", str(source), "--out", str(out), "--no-progress"]
    assert main([*args, "--fetch-images", "--retries", "0"]) == 0
    catalog = load_catalog(out)
    assert catalog.images == ["images/A.jpg", "images/B.jpg", ""]
    assert catalog.image_path(0).is_file()
    report = json.loads((out / "prepare.json").read_text())
    assert report["output"]["catalog items without a photo"] == 1
    assert report["sections"]["images (--fetch-images)"]["skipped"] == {"gone: HTTP 404": 1}

    # A later prepare without --fetch-images keeps the photos; --drop-items-without-image drops GONE.
    hits = sum(server.hits.values())
    assert main([*args, "--drop-items-without-image"]) == 0
    assert load_catalog(out).item_ids == ["A", "B"] and sum(server.hits.values()) == hits
