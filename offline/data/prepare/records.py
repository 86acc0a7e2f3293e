"""Reading source files record by record, so that one bad record (or a truncated download) is counted
and skipped instead of stopping a run over millions of lines.

Every reader takes the report `Section` it counts into: `read` for each record seen, `skipped[reason]`
for each it drops; the caller counts `kept`.
"""

from __future__ import annotations

import ast
import csv
import gzip
import html
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tqdm import tqdm

from offline.data.prepare.report import Section

GZIP_MAGIC = b"\x1f\x8b"
# literal_eval builds whatever nesting a line holds; a multi-megabyte line is no real record, and
# refusing it keeps a corrupt file from costing minutes or memory.
MAX_LINE_BYTES = 1_000_000
TRUNCATED = "truncated or corrupt file (the rest of it was lost)"


class PrepareError(ValueError):
    """A source folder or file that cannot be used at all; the message names it and the fix."""


class BadRecord(ValueError):
    """One record that does not parse; its message is the skip reason (short, shared by many records)."""


def clean_text(value: object) -> str:
    """Readable text: HTML entities decoded (Amazon's 2014 reviews hold `&#34;`), whitespace runs and
    newlines collapsed to one space. Anything but a string (a missing field, a number) is ""."""
    if not isinstance(value, str):
        return ""
    return " ".join(html.unescape(value).split())


def open_binary(path: Path) -> IO[bytes]:
    """Gzip is recognised by its magic bytes, not the name: copies are often renamed or unpacked."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def read_lines(path: Path, section: Section, progress: bool = True) -> Iterator[str]:
    """Each non-blank line as text. Lines that are not UTF-8 or too long are skipped; a truncated or
    corrupt gzip stream ends the file (counted once) instead of raising."""
    with open_binary(path) as f, tqdm(desc=path.name, unit=" lines", disable=not progress, mininterval=1.0) as bar:
        lines = iter(f)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return
            except (EOFError, zlib.error, gzip.BadGzipFile, OSError):
                section.read += 1
                section.skip(TRUNCATED)
                return
            bar.update()
            if not raw.strip():
                continue
            section.read += 1
            if len(raw) > MAX_LINE_BYTES:
                section.skip(f"line longer than {MAX_LINE_BYTES:,} bytes")
                continue
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                section.skip("not UTF-8")


def parse_json(line: str) -> dict:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; absurd nesting recurses
        raise BadRecord("malformed JSON") from None
    if not isinstance(record, dict):
        raise BadRecord("not a JSON object")
    return record


def parse_literal(line: str) -> dict:
    """A Python-literal dict (Amazon 2014 metadata: single quotes). `ast.literal_eval` only builds
    literals (strings, numbers, lists, dicts...), it never runs code: never `eval` data."""
    try:
        record = ast.literal_eval(line.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise BadRecord("malformed Python literal") from None
    if not isinstance(record, dict):
        raise BadRecord("not a dict literal")
    return record


def json_records(path: Path, section: Section, progress: bool = True) -> Iterator[dict]:
    for line in read_lines(path, section, progress):
        try:
            yield parse_json(line)
        except BadRecord as bad:
            section.skip(str(bad))


def csv_rows(path: Path, section: Section, columns: tuple[str, ...], progress: bool = True) -> Iterator[dict[str, str]]:
    """Rows as dicts of strings (never numbers: ids keep their leading zeros). Rows missing one of
    `columns`, or with a short line, are skipped."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise PrepareError(f"{path}: missing columns {missing} (has {reader.fieldnames}); is this the right file?")
        for row in tqdm(reader, desc=path.name, unit=" rows", disable=not progress, mininterval=1.0):
            section.read += 1
            values = [row.get(c) for c in columns]
            if any(v is None for v in values) or None in row:
                section.skip("short or overlong CSV row")
                continue
            if any(not v.strip() for v in values):
                section.skip(f"empty {' / '.join(c for c, v in zip(columns, values) if not v.strip())}")
                continue
            yield row


def find_file(folder: Path, patterns: tuple[str, ...], what: str, required: bool = True) -> Path | None:
    """The one file in `folder` matching the first pattern that matches anything."""
    for pattern in patterns:
        found = sorted(p for p in folder.glob(pattern) if p.is_file())
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise PrepareError(f"{folder}: several {what} files match {pattern!r} ({names}); pick one with --category")
    if required:
        raise PrepareError(
            f"{folder}: no {what} file (looked for {', '.join(patterns)}); "
            f"download it with ./dataset.sh or point --source at the folder that holds it"
        )
    return None
