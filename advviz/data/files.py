"""Reading tables and text files, bounded (``limits.max_data_bytes``), with one line per error:
UTF-8, TSV/CSV/JSONL, duplicate keys, ragged rows, column picking."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import stat
import sys
import zlib
from pathlib import Path

from ..errors import AdvvizError
from ..limits import max_data_bytes, too_much_data

csv.field_size_limit(1 << 30)  # IMDB reviews and hostile 50 MB lines must not trip the csv module

TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "body", "x")
LABEL_COLUMNS = ("label", "labels", "y", "class", "target", "sentiment", "category")


# --------------------------------------------------------------------------------------------
# reading tables


READ_CHUNK = 1 << 24  # bytes per read: a signal (Ctrl-C, SIGTERM) is handled between two chunks


def _read_limited(f, limit: int, where: str, decompressed: bool) -> bytes:
    """At most ``limit`` bytes of the open binary file ``f``, read in chunks; one byte more is an
    error naming the limit (``limits.too_much_data``)."""
    out, total = [], 0
    while True:
        chunk = f.read(min(READ_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(out)
        total += len(chunk)
        if total > limit:
            raise too_much_data(where, decompressed)
        out.append(chunk)


def _read_bytes(path: Path, allow_stdin: bool = False) -> bytes:
    """The (decompressed) bytes of a data file: a regular file (``-``: standard input, where the
    caller allows it), at most ``limits.max_data_bytes()`` once decompressed (``--max-data-mb``).
    A gzip bomb, ``/dev/zero`` on standard input or a file that grows stop at the limit with one
    line; a FIFO or a device is refused, never waited on. Read in chunks, so that a signal stops
    a long read within a chunk's time."""
    limit = max_data_bytes()
    if allow_stdin and str(path) == "-":
        try:
            return _read_limited(sys.stdin.buffer, limit, "standard input", False)
        except OSError as e:
            raise AdvvizError(f"cannot read standard input ({e.strerror or e})") from None
    try:
        st = os.stat(path)
    except OSError as e:
        raise AdvvizError(f"{path}: cannot read the data file ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise AdvvizError(f"{path}: not a regular file" + (" (give a file, or - for standard input)"
                                                           if allow_stdin else ""))
    gz = path.suffix == ".gz"
    if not gz and st.st_size > limit:
        raise too_much_data(str(path))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO swapped in: no wait
        with os.fdopen(fd, "rb") as raw:
            if not stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
                raise AdvvizError(f"{path}: not a regular file")
            if not gz:
                return _read_limited(raw, limit, str(path), False)
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                return _read_limited(f, limit, str(path), True)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise AdvvizError(f"{path}: not a readable gzip file ({e})") from None
    except OSError as e:
        raise AdvvizError(f"{path}: cannot read the data file ({e.strerror or e})") from None


def _read_text(path: Path, allow_stdin: bool = False) -> str:
    raw = _read_bytes(path, allow_stdin)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        where = "standard input" if allow_stdin and str(path) == "-" else path
        raise AdvvizError(f"{where}: line {line}: bytes that are not UTF-8 "
                          f"({raw[e.start:e.start + 4]!r}); re-encode the file as UTF-8") from None


def read_lines(path: str | os.PathLike, allow_stdin: bool = False) -> list[str]:
    """The lines of a text file of one text a line (``inspect --input``, ``--unlabeled F.txt``),
    read as every data file is (regular files only, bounded, UTF-8); ``-`` is standard input
    where ``allow_stdin``."""
    return _read_text(Path(path), allow_stdin).splitlines()


def _no_duplicate_keys(where: str):
    def hook(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise AdvvizError(f"{where}: key '{k}' appears twice in one object")
            seen.add(k)
        return dict(pairs)
    return hook


def read_rows(path: str | os.PathLike) -> tuple[list[str], list[dict], list[int]]:
    """(columns, rows, line numbers) of a .csv/.tsv/.jsonl file (optionally .gz). A header naming
    a column twice, a row with more or fewer fields than the header and a JSON object repeating a
    key are errors naming the file and line (they would silently shift or drop a column)."""
    path = Path(path)
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    kind = stem.rsplit(".", 1)[-1].lower()
    if kind not in ("csv", "tsv", "jsonl", "json"):
        raise AdvvizError(f"{path}: unsupported file type '.{kind}' (use .csv, .tsv or .jsonl, optionally .gz)")
    text = _read_text(path)
    rows, lines = [], []
    if kind in ("jsonl", "json"):
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line, object_pairs_hook=_no_duplicate_keys(f"{path}: line {i}"))
            except json.JSONDecodeError as e:
                raise AdvvizError(f"{path}: line {i}: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise AdvvizError(f"{path}: line {i}: JSON nested too deeply") from None
            except ValueError as e:  # an integer of more than 4,300 digits (Python's int limit)
                raise AdvvizError(f"{path}: line {i}: a number too long to read ({str(e).split(':')[0]})") from None
            if not isinstance(obj, dict):
                raise AdvvizError(f"{path}: line {i}: each line must be a JSON object")
            rows.append(obj)
            lines.append(i)
        cols = list(rows[0].keys()) if rows else []
        return cols, rows, lines
    # TSV files in the wild (and ours) carry literal quotes: read them unquoted.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if kind == "tsv" else ",",
                        quoting=csv.QUOTE_NONE if kind == "tsv" else csv.QUOTE_MINIMAL)
    try:
        header = next(reader)
    except StopIteration:
        raise AdvvizError(f"{path}: the file is empty") from None
    except csv.Error as e:
        raise AdvvizError(f"{path}: line 1: {e}") from None
    header = [h.strip() for h in header]
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise AdvvizError(f"{path}: line 1: column '{dup[0]}' appears twice in the header; rename one")
    start = reader.line_num + 1
    try:
        for r in reader:
            line, start = start, reader.line_num + 1
            if not r:
                continue
            if len(r) != len(header):
                sep = "a tab" if kind == "tsv" else "a comma (quote such texts)"
                raise AdvvizError(f"{path}: line {line}: {len(r)} field{'s' if len(r) != 1 else ''} but the header "
                                  f"has {len(header)} ({sep} inside a text, or a missing field?)")
            rows.append(dict(zip(header, r)))
            lines.append(line)
    except csv.Error as e:
        raise AdvvizError(f"{path}: line {reader.line_num}: {e}") from None
    return header, rows, lines


def _pick(cols: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, path) -> str:
    if wanted:
        if wanted not in cols:
            raise AdvvizError(f"{path}: no column '{wanted}'; columns found: {', '.join(cols) or '(none)'}")
        return wanted
    lower = {c.lower(): c for c in cols}
    for c in candidates:
        if c in lower:
            return lower[c]
    raise AdvvizError(f"{path}: no {what} column found (looked for {', '.join(candidates)}); "
                      f"columns found: {', '.join(cols) or '(none)'}; name it with --{what}-col")
