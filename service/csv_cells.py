"""CSV files in and out: formula-injection defusing of exported cells, and reading an imported file's bytes into rows.

Defusing (OWASP "CSV injection"): a spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (and, in some,
tab or carriage return) as a formula, so a text cell starting with one of them is written with a single quote in
front (`=HYPERLINK(...)` -> `'=HYPERLINK(...)`). Only text is touched: numbers stay numbers (-0.5 is written as
-0.5), and so does text that reads as a plain decimal number. A text that already starts with quotes before such a
character gets one more, so `undefuse` (used when a CSV file is imported) restores every text exactly: an exported
file imports as the rows it was written from.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

from db.imports import ImportRejected

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def _risky(text: str) -> bool:
    """A spreadsheet would read `text` as a formula (after any quotes we added)."""
    bare = text.lstrip("'")
    return bare.startswith(FORMULA_STARTS) and not _NUMBER.match(bare)


def defuse(value: Any) -> Any:
    """A cell as it is safe to write: text a spreadsheet would run as a formula gets a leading `'`; anything else
    (numbers, None, other text) unchanged."""
    if isinstance(value, str) and _risky(value):
        return "'" + value
    return value


def undefuse(text: str) -> str:
    """The text `defuse` was given: one leading quote removed where `defuse` added it."""
    return text[1:] if text.startswith("'") and _risky(text[1:]) else text


def _bad_byte(text: str) -> str | None:
    """The first byte of `text` (decoded with surrogateescape) that is not UTF-8, as `0xff`; None when all are."""
    bad = re.search("[\udc80-\udcff]", text)
    return None if bad is None else f"0x{ord(bad.group()) - 0xDC00:02x}"


def _parsed(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    """The reader's rows; a text the csv module cannot parse (a cell beyond its field limit, a stray quote in
    strict dialects) is ImportRejected naming the row (0: the header) and "row"."""
    n = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise ImportRejected(n, "row", f"not CSV: {e}") from None
        n += bool(cells)  # blank lines are not rows
        yield cells


def read_csv_rows(data: bytes | str) -> list[dict[str, Any]]:
    """The data rows of a CSV file (UTF-8, with or without a BOM) as dicts: header names as keys, cells as text with
    `undefuse` applied. Row 1 is the first data row after the header; blank lines are skipped. ImportRejected naming
    the row and the field for a byte that is not UTF-8 (row 0 for the header), for a row with more or fewer cells than
    the header, and for text the csv module cannot parse."""
    text = data.decode("utf-8-sig", errors="surrogateescape") if isinstance(data, bytes) else data
    lines = _parsed(csv.reader(io.StringIO(text, newline="")))
    header = next(lines, [])
    for k, name in enumerate(header, start=1):
        if (byte := _bad_byte(name)) is not None:
            raise ImportRejected(0, f"column {k}", f"the header has byte {byte}, which is not UTF-8 "
                                                   f"(save the file as UTF-8)")
    names = [h.strip() for h in header]
    rows: list[dict[str, Any]] = []
    for cells in lines:
        if not cells:
            continue
        n = len(rows) + 1
        for name, cell in zip(names, cells, strict=False):
            if (byte := _bad_byte(cell)) is not None:
                raise ImportRejected(n, name, f"byte {byte} is not UTF-8 (save the file as UTF-8)")
        if len(cells) != len(names):
            field = names[len(cells)] if len(cells) < len(names) else f"column {len(names) + 1}"
            raise ImportRejected(n, field, f"the row has {len(cells)} cells and the header {len(names)} "
                                           f"(a ragged row: a cell too many or too few, e.g. an unquoted comma)")
        rows.append({name: undefuse(cell) for name, cell in zip(names, cells, strict=True)})
    return rows
