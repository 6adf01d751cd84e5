"""Readers for the three interaction formats csrec understands.

Each returns a :class:`pandas.DataFrame` with integer-coded columns ``user`` and ``item`` in file
order, plus ``rating`` (float) and ``timestamp`` (float) when the file has them.  Every problem is
raised as :class:`csrec.errors.DataError` naming the file and, where there is one, the line; that
includes a file that is not UTF-8 text (a binary file, or text in another encoding).

Formats:

* ``csv``: a header with ``session_id`` or ``user_id``, ``item_id`` and optionally ``rating`` and
  ``timestamp`` (the paper's format, e.g. ``lastfm_small.csv``).
* ``lines``: one user per line, ``uid item item ...`` in time order (e.g. ``Yelp.txt``).
* ``inter``: RecBole atomic files: tab-separated with a typed header such as
  ``user_id:token  item_id:token  rating:float  timestamp:float`` (e.g. ``Office.inter``).
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from csrec.errors import DataError

FORMATS = ("csv", "lines", "inter")


@contextmanager
def utf8_text(path: str | os.PathLike) -> Iterator[None]:
    """Report a file that is not UTF-8 text as such: a one-line DataError naming the file, the
    line and the first byte that does not decode.

    Whatever else goes wrong while reading it (pandas tokenises bytes before decoding them, so a
    binary file can first look like a malformed line) is reported as the encoding problem, which
    is the one to fix first.  The file is scanned only on that error path.
    """
    try:
        yield
    except (UnicodeDecodeError, DataError):
        undecodable = not_utf8_error(path)
        if undecodable is None:
            raise
        raise undecodable from None


def not_utf8_error(path: str | os.PathLike) -> DataError | None:
    """The DataError locating the first byte of ``path`` that is not UTF-8, or None if it decodes.

    Lines are decoded one at a time: a newline byte never occurs inside a multi-byte UTF-8
    character, so a line decodes on its own exactly when it decodes as part of the file (the
    decoder's own offset is relative to whatever chunk a reader was decoding).
    """
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return DataError(
                    f"{path}, line {line_number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte "
                    f"{exc.start + 1} of the line): a binary file or another encoding? csrec reads UTF-8 "
                    "CSV, one-user-per-line and RecBole .inter files"
                )
    return None


def _reports_undecodable(reader):
    @functools.wraps(reader)
    def read(path: str | os.PathLike) -> pd.DataFrame:
        with utf8_text(path):
            return reader(path)

    return read


def detect_format(path: str | os.PathLike) -> str:
    """Format from the extension, else from the first line."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix == ".inter":
        return "inter"
    with utf8_text(path):
        first = _first_line(path)
    if "\t" in first and ":" in first:
        return "inter"
    if "," in first:
        return "csv"
    return "lines"


def read_interactions(path: str | os.PathLike, fmt: str | None = None) -> pd.DataFrame:
    """Read an interaction file of any supported format (detected when ``fmt`` is None)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    fmt = fmt or detect_format(path)
    readers = {"csv": read_csv, "lines": read_user_lines, "inter": read_atomic_inter}
    if fmt not in readers:
        raise DataError(f"{path}: unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    frame = readers[fmt](path)
    if len(frame) == 0:
        raise DataError(f"{path}: the file has a header but no interactions")
    return frame


@_reports_undecodable
def read_csv(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    raw, lines = _read_rows(path, ",")
    user_col = next((c for c in ("session_id", "user_id") if c in raw.columns), None)
    if user_col is None:
        raise DataError(
            f"{path}: missing column 'session_id' or 'user_id' (columns found: {', '.join(raw.columns)})"
        )
    if "item_id" not in raw.columns:
        raise DataError(f"{path}: missing column 'item_id' (columns found: {', '.join(raw.columns)})")
    return _typed_frame(path, raw, user_col, "item_id", "rating", "timestamp", lines)


@_reports_undecodable
def read_atomic_inter(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    header = _first_line(path).rstrip("\n").split("\t")
    names = []
    for position, field in enumerate(header, start=1):
        name, sep, _ = field.partition(":")
        if not sep:
            raise DataError(
                f"{path}, line 1: header field {position} ({field!r}) is not 'name:type' "
                "as RecBole atomic files require"
            )
        names.append(name.strip())
    for required in ("user_id", "item_id"):
        if required not in names:
            raise DataError(f"{path}, line 1: missing field '{required}' (fields found: {', '.join(names)})")
    raw, lines = _read_rows(path, "\t")
    raw.columns = names
    return _typed_frame(path, raw, "user_id", "item_id", "rating", "timestamp", lines)


@_reports_undecodable
def read_user_lines(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    with open(path, encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                ids = np.array(fields, dtype=np.int64)
            except ValueError:
                bad = next(f for f in fields if not _is_int(f))
                raise DataError(f"{path}, line {line_number}: non-integer id {bad!r}") from None
            if len(ids) < 2:
                raise DataError(f"{path}, line {line_number}: a user id with no items")
            users.append(np.full(len(ids) - 1, ids[0], dtype=np.int64))
            items.append(ids[1:])
    if not users:
        raise DataError(f"{path}: the file holds no interactions")
    return pd.DataFrame({"user": np.concatenate(users), "item": np.concatenate(items)})


# --- helpers ----------------------------------------------------------------------------------
def _read_rows(path: Path, sep: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Data rows as strings (columns named by the stripped header fields) and each row's file line.

    The header is parsed as an ordinary row, so a data line with more fields than the header is
    a parse error naming its line (with ``header=0`` pandas silently turns surplus leading fields
    into an index, shifting every column).  Blank lines are kept while parsing and dropped after,
    so row numbers stay file line numbers.
    """
    try:
        raw = pd.read_csv(
            path, sep=sep, dtype=str, header=None, skip_blank_lines=False, skipinitialspace=sep == ","
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed line: {str(exc).strip()}") from None
    header = ["" if pd.isna(c) else str(c).strip() for c in raw.iloc[0]]
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise DataError(f"{path}, line 1: duplicate column(s) {', '.join(map(repr, duplicated))}")
    data = raw.iloc[1:]
    data = data[~data.isna().all(axis=1).to_numpy()]
    lines = data.index.to_numpy() + 1
    data = data.reset_index(drop=True)
    data.columns = header
    return data, lines


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8-sig") as handle:  # a byte-order mark is not part of the header
        return handle.readline()


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


_ARTICLE = {"integer id": "an", "number": "a"}


def _typed_frame(
    path: Path, raw: pd.DataFrame, user_col: str, item_col: str, rating_col: str, time_col: str,
    lines: np.ndarray,
) -> pd.DataFrame:
    columns = {"user": (user_col, "integer id"), "item": (item_col, "integer id")}
    if rating_col in raw.columns:
        columns["rating"] = (rating_col, "number")
    if time_col in raw.columns:
        columns["timestamp"] = (time_col, "number")
    out = {}
    for name, (source, kind) in columns.items():
        text = raw[source]
        missing = text.isna()
        if missing.any():
            row = int(np.flatnonzero(missing.to_numpy())[0])
            raise DataError(f"{path}, line {lines[row]}: empty value in column '{source}'")
        values = pd.to_numeric(text, errors="coerce")
        bad = values.isna().to_numpy()
        if kind == "integer id" and not bad.any():
            bad = (values.to_numpy() != np.floor(values.to_numpy())) | text.str.contains(r"[.eE]").to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{path}, line {lines[row]}: column '{source}' needs {_ARTICLE[kind]} {kind}, got {text.iloc[row]!r}"
            )
        out[name] = values.to_numpy(dtype=np.int64 if kind == "integer id" else np.float64)
    return pd.DataFrame(out)
