"""dataset.sh against a local HTTP server with byte-range support (DATASET_MIRROR): download, resume of a
partial file, the SHA256SUMS record and its verification, damaged downloads, and the Kaggle path for hm."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "dataset.sh"
NPY = "AmazonFashion/AmazonFashion6ImgPartitioned.npy"
REVIEWS = "amazon2018-AMAZON_FASHION/AMAZON_FASHION_5.json.gz"
META = "amazon2018-AMAZON_FASHION/meta_AMAZON_FASHION.json.gz"


class Mirror(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), MirrorHandler)
        self.files: dict[str, bytes] = {}  # "NAME/FILE" -> body
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class MirrorHandler(BaseHTTPRequestHandler):
    server: Mirror

    def do_HEAD(self) -> None:
        self.server.requests.append((f"HEAD {self.path}", None))
        body = self.server.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def do_GET(self) -> None:
        byte_range = self.headers.get("Range")
        self.server.requests.append((self.path, byte_range))
        body = self.server.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        start = 0
        if byte_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", byte_range).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args: object) -> None:
        pass


def downloader() -> None:
    if shutil.which("curl") is None and shutil.which("wget") is None:
        reason = "dataset.sh needs curl or wget; neither is on PATH"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: failing instead of skipping)")
        pytest.skip(reason)


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    downloader()
    server = Mirror()
    rng = __import__("random").Random(7)
    server.files[NPY] = b"\x93NUMPY\x01\x00" + bytes(rng.getrandbits(8) for _ in range(50_000))
    server.files[REVIEWS] = gzip.compress(b'{"reviewerID": "U1", "asin": "A"}\n' * 500)
    server.files[META] = gzip.compress(b'{"asin": "A", "title": "t"}\n' * 200)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def run(raw: Path, *args: str, mirror: Mirror | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(raw.parent),
        "RAW": str(raw),
        "DATASET_RETRY_DELAY": "0",
        "DATASET_ATTEMPTS": "2",
        **env,
    }
    if mirror is not None:
        full_env["DATASET_MIRROR"] = mirror.url
    return subprocess.run(["bash", str(SCRIPT), *args], env=full_env, capture_output=True, text=True, timeout=60)


def sums(raw: Path, name: str) -> dict[str, tuple[str, int]]:
    lines = (raw / name / "SHA256SUMS").read_text().splitlines()
    return {file: (sha, int(size)) for sha, size, file in (line.split() for line in lines)}


def test_list_help_and_unknown_names(tmp_path: Path) -> None:
    listed = run(tmp_path / "raw", "--list")
    assert listed.returncode == 0
    for name in ("AmazonFashion", "AmazonWomen", "AmazonMen", "amazon2014-clothing", "amazon2018-CATEGORY", "hm"):
        assert re.search(rf"^{name}\s", listed.stdout, re.M), name
    helped = run(tmp_path / "raw", "--help")
    assert helped.returncode == 0 and "DATASET_MIRROR" in helped.stdout and "SHA256SUMS" in helped.stdout
    for bad in ("nope", "amazon2018-../../etc", "AmazonFashion nope"):
        result = run(tmp_path / "raw", *bad.split())
        assert result.returncode == 2 and "unknown dataset" in result.stderr
    assert not (tmp_path / "raw").exists()  # nothing was downloaded before the names were checked


def test_download_records_then_verifies(mirror: Mirror, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    result = run(raw, "AmazonFashion", "amazon2018-AMAZON_FASHION", mirror=mirror)
    assert result.returncode == 0, result.stderr
    for key, body in mirror.files.items():
        assert (raw / key).read_bytes() == body
        name, file = key.split("/")
        assert sums(raw, name)[file] == (hashlib.sha256(body).hexdigest(), len(body))
    assert "python -m offline prepare dvbpr --source" in result.stdout
    assert "python -m offline prepare amazon2018 --source" in result.stdout
    assert not list(raw.rglob("*.part"))

    asked = len(mirror.requests)
    again = run(raw, "AmazonFashion", "amazon2018-AMAZON_FASHION", mirror=mirror)
    assert again.returncode == 0, again.stderr
    assert len(mirror.requests) == asked  # complete and verified: nothing fetched again
    assert again.stdout.count("verified") == 3


def test_resumes_a_partial_download(mirror: Mirror, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    body = mirror.files[NPY]
    (raw / "AmazonFashion").mkdir(parents=True)
    (raw / f"{NPY}.part").write_bytes(body[:20_000])
    result = run(raw, "AmazonFashion", mirror=mirror)
    assert result.returncode == 0, result.stderr
    assert mirror.requests == [(f"HEAD /{NPY}", None), (f"/{NPY}", "bytes=20000-")]  # only the rest
    assert (raw / NPY).read_bytes() == body
    assert "resuming at 20000 bytes" in result.stdout


def test_a_finished_part_is_not_fetched_again_and_an_oversized_one_restarts(mirror: Mirror, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    body = mirror.files[NPY]
    (raw / "AmazonFashion").mkdir(parents=True)
    (raw / f"{NPY}.part").write_bytes(body)  # complete, but the run stopped before moving it into place
    assert run(raw, "AmazonFashion", mirror=mirror).returncode == 0
    assert mirror.requests == [(f"HEAD /{NPY}", None)] and (raw / NPY).read_bytes() == body

    mirror.requests.clear()
    (raw / NPY).unlink()
    (raw / f"{NPY}.part").write_bytes(body + b"junk")
    result = run(raw, "AmazonFashion", mirror=mirror)
    assert result.returncode == 0 and "starting again" in result.stdout
    assert mirror.requests == [(f"HEAD /{NPY}", None), (f"/{NPY}", None)] and (raw / NPY).read_bytes() == body


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:-10], "size"),
        (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], "sha256"),
    ],
)
def test_changed_file_fails_with_the_fix(mirror: Mirror, tmp_path: Path, damage, message: str) -> None:
    raw = tmp_path / "raw"
    assert run(raw, "AmazonFashion", mirror=mirror).returncode == 0
    path = raw / NPY
    path.write_bytes(damage(path.read_bytes()))
    result = run(raw, "AmazonFashion", mirror=mirror)
    assert result.returncode == 1
    assert f"{path}: {message}" in result.stderr
    assert "SHA256SUMS" in result.stderr and "delete it and run ./dataset.sh AmazonFashion again" in result.stderr
    assert "failed: AmazonFashion" in result.stderr


def test_new_download_that_differs_from_the_record_is_set_aside(mirror: Mirror, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    assert run(raw, "AmazonFashion", mirror=mirror).returncode == 0
    (raw / NPY).unlink()
    mirror.files[NPY] = mirror.files[NPY][:-1] + b"!"  # the server now sends other bytes
    result = run(raw, "AmazonFashion", mirror=mirror)
    assert result.returncode == 1 and "does not match" in result.stderr
    assert not (raw / NPY).exists() and (raw / f"{NPY}.mismatch").exists()


def test_truncated_gzip_is_not_accepted(mirror: Mirror, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    mirror.files[REVIEWS] = mirror.files[REVIEWS][:-30]
    result = run(raw, "amazon2018-AMAZON_FASHION", mirror=mirror)
    assert result.returncode == 1
    assert "is not a complete gzip file" in result.stderr and "delete" in result.stderr
    assert not (raw / REVIEWS).exists() and (raw / f"{REVIEWS}.part").exists()


def test_missing_file_gives_up(mirror: Mirror, tmp_path: Path) -> None:
    result = run(tmp_path / "raw", "AmazonMen", mirror=mirror)
    assert result.returncode == 1
    assert "could not download AmazonMenWithImgPartitioned.npy" in result.stderr


def test_hm_without_kaggle_prints_the_steps(tmp_path: Path) -> None:
    result = run(tmp_path / "raw", "hm", KAGGLE=str(tmp_path / "no-such-kaggle"))
    assert result.returncode == 1
    assert "kaggle competitions download -c h-and-m-personalized-fashion-recommendations" in result.stderr
    assert "/competitions/h-and-m-personalized-fashion-recommendations/rules" in result.stderr


def test_hm_with_a_configured_kaggle_cli(tmp_path: Path) -> None:
    fake = tmp_path / "kaggle"
    log = tmp_path / "kaggle.log"
    # Stands in for the real CLI: records its arguments, writes the competition zip into -p DIR.
    fake.write_text(f"""#!/usr/bin/env bash
echo "$@" >> {log}
dir=$6
"{sys.executable}" - "$dir" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1] + "/h-and-m-personalized-fashion-recommendations.zip", "w") as z:
    z.writestr("articles.csv", "article_id\\n0108775015\\n")
    z.writestr("images/010/0108775015.jpg", b"jpeg")
PY
""")
    fake.chmod(0o755)
    raw = tmp_path / "raw"
    result = run(raw, "hm", KAGGLE=str(fake), KAGGLE_USERNAME="someone", KAGGLE_KEY="not-a-real-key")
    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == [
        "competitions",
        "download",
        "-c",
        "h-and-m-personalized-fashion-recommendations",
        "-p",
        str(raw / "hm"),
    ]
    assert (raw / "hm" / "articles.csv").read_text() == "article_id\n0108775015\n"
    assert (raw / "hm" / "images" / "010" / "0108775015.jpg").exists()
    assert "python -m offline prepare hm" in result.stdout


def test_hm_without_credentials(tmp_path: Path) -> None:
    fake = tmp_path / "kaggle"
    fake.write_text("#!/usr/bin/env bash\nexit 0\n")
    fake.chmod(0o755)
    result = run(tmp_path / "raw", "hm", KAGGLE=str(fake))  # HOME is tmp_path: no ~/.kaggle/kaggle.json
    assert result.returncode == 1 and "no Kaggle API credentials" in result.stderr


def test_a_file_from_an_older_download_is_checked_then_recorded(mirror: Mirror, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "AmazonFashion").mkdir(parents=True)
    (raw / NPY).write_bytes(mirror.files[NPY])  # there, but never recorded in SHA256SUMS
    result = run(raw, "AmazonFashion", mirror=mirror)
    assert result.returncode == 0 and "recorded" in result.stdout and mirror.requests == []
    assert sums(raw, "AmazonFashion")["AmazonFashion6ImgPartitioned.npy"][1] == len(mirror.files[NPY])

    (raw / "AmazonFashion" / "SHA256SUMS").unlink()
    (raw / NPY).write_bytes(b"<html>a login page</html>")
    result = run(raw, "AmazonFashion", mirror=mirror)
    assert result.returncode == 1 and "is not a NumPy .npy file" in result.stderr
