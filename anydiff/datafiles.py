"""The command line's data files: numeric tables in ``.csv`` or ``.npy``, read strictly and written
all or nothing.

Reading never guesses a number. In a CSV only empty, ``NA``, ``N/A``, ``NaN`` and ``null`` cells
are missing; any other cell that is not a number is an error naming the file, line and column.
The separator (``,`` ``;`` tab or ``|``) and quoting are detected by Python's ``csv`` module; a
first line with a cell that is not a number is the header. Writing goes through a temporary
file in the same folder (:func:`anydiff._utils.atomic_write`). An imputed CSV keeps the header
and the text of every observed cell exactly as it was read; only missing cells are filled.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass

import numpy as np

from ._utils import atomic_write, check_output_path

__all__ = ["Table", "read_table", "read_labels", "write_table", "check_output"]

MISSING = frozenset({"", "na", "n/a", "nan", "null"})  # lower-cased cell texts read as missing
EXTENSIONS = (".csv", ".npy")


@dataclass
class Table:
    """A numeric table read from a file.

    values : float ndarray (n_rows, n_columns), NaN where a cell is missing.
    header : column names, or None when the file has none (always None for .npy).
    cells : the text of every data cell as read (CSV only), to write observed cells back unchanged.
    delimiter : the CSV separator that was detected.
    """

    values: np.ndarray
    header: list[str] | None = None
    cells: list[list[str]] | None = None
    delimiter: str = ","


def _extension(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in EXTENSIONS:
        raise ValueError(f"{path}: unknown file type {ext or '(none)'!r}; use .csv or .npy")
    return ext


def check_output(path: str) -> str:
    """Check an output data file's type and folder before any work is done."""
    _extension(path)
    return check_output_path(path)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return "_" not in text  # Python's float() takes 1_000; a spreadsheet does not write it


def _read_csv_rows(path: str) -> tuple[list[tuple[int, list[str]]], str]:
    """Non-blank rows with their line numbers, and the separator."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    if not text.strip():
        raise ValueError(f"{path}: the file is empty")
    try:
        dialect = csv.Sniffer().sniff(text[:65536], delimiters=",;\t|")
    except csv.Error:  # one column, or nothing to tell separators apart
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    rows = []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((reader.line_num, [cell.strip() for cell in row]))
    except csv.Error as exc:
        raise ValueError(f"{path}, line {reader.line_num}: {exc}") from exc
    return rows, dialect.delimiter


def _read_csv(path: str) -> Table:
    rows, delimiter = _read_csv_rows(path)
    header = None
    first = rows[0][1]
    if any(cell.lower() not in MISSING and not _is_number(cell) for cell in first):
        header, rows = first, rows[1:]
        if not rows:
            raise ValueError(f"{path}: the file has a header line but no data rows")
    # A separator at the end of every data row adds no column (spreadsheets export them).
    if all(len(row) > 1 and row[-1] == "" for _, row in rows) and (
            header is None or len(header) == len(rows[0][1]) - 1 or header[-1] == ""):
        rows = [(line, row[:-1]) for line, row in rows]
        if header is not None and len(header) == len(rows[0][1]) + 1:
            header = header[:-1]
    width = len(header) if header is not None else len(rows[0][1])
    for line, row in rows:
        if len(row) != width:
            what = "the header has" if header is not None else f"line {rows[0][0]} has"
            raise ValueError(f"{path}, line {line}: {len(row)} fields, but {what} {width}; "
                             "every row needs the same number of columns")
    cells = [row for _, row in rows]
    values = np.empty((len(cells), width))
    for i, (line, row) in enumerate(rows):
        for j, cell in enumerate(row):
            if cell.lower() in MISSING:
                values[i, j] = np.nan
            elif _is_number(cell):
                values[i, j] = float(cell)
            else:
                name = f" ({header[j]!r})" if header is not None else ""
                raise ValueError(
                    f"{path}, line {line}, column {j + 1}{name}: {cell!r} is not a number. Only empty, NA and "
                    "NaN cells count as missing; convert or remove text columns first")
    return Table(values, header, cells, delimiter)


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read it as a numpy array file ({str(exc).splitlines()[0]})") from exc


def read_table(path: str) -> Table:
    """Read a numeric table (rows, columns) from ``.csv`` or ``.npy`` (no pickle)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    if _extension(path) == ".csv":
        return _read_csv(path)
    data = _load_npy(path)
    if data.dtype.kind not in "biuf":
        raise ValueError(f"{path}: holds {data.dtype} values; a data file holds numbers")
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"{path}: expected a table of shape (rows, columns), got shape {data.shape}")
    return Table(data)


def read_labels(path: str) -> np.ndarray:
    """One class label per row: a one-column .csv or .npy. Numbers stay numbers (integers when
    every value is whole); any text makes every label a string. No label may be missing. A CSV
    may have a header line over numeric labels; text labels are read from the first line on."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    if _extension(path) == ".npy":
        labels = _load_npy(path)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or labels.dtype.kind not in "biufUS" or len(labels) == 0:
            raise ValueError(f"{path}: labels need one value per row (a 1-D array of numbers or text), got "
                             f"{labels.dtype} of shape {labels.shape}")
        if labels.dtype.kind == "f" and np.isnan(labels).any():
            raise ValueError(f"{path}: row {int(np.argmax(np.isnan(labels))) + 1} has no label")
    else:
        rows, _ = _read_csv_rows(path)
        if any(len(row) != 1 for _, row in rows):
            line = next(line for line, row in rows if len(row) != 1)
            raise ValueError(f"{path}, line {line}: labels need one column, one label per row")
        pairs = [(line, row[0]) for line, row in rows]
        if len(pairs) > 1 and not _is_number(pairs[0][1]) and all(_is_number(t) for _, t in pairs[1:]):
            pairs = pairs[1:]  # a header line over numeric labels
        for line, text in pairs:
            if text.lower() in MISSING:
                raise ValueError(f"{path}, line {line}: the label is missing")
        texts = [text for _, text in pairs]
        if all(_is_number(t) for t in texts):
            labels = np.asarray([float(t) for t in texts])
        else:
            labels = np.asarray(texts, dtype=str)
    if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    return labels


def _format(value: float) -> str:
    """The shortest text that reads back as the same float64 (``repr``), empty for NaN."""
    return "" if np.isnan(value) else repr(float(value))


def write_table(path: str, values: np.ndarray, *, header: list[str] | None = None,
                source: Table | None = None) -> None:
    """Write ``values`` (rows, columns) to ``.csv`` or ``.npy``, all or nothing.

    With ``source`` (the table that was read), a CSV keeps its header and separator, and every
    cell that was observed in it is written back as its original text; only cells that were
    missing get new numbers. A ``.npy`` output of a ``.npy`` source keeps its dtype.
    """
    path = check_output(path)
    values = np.asarray(values)
    if os.path.splitext(path)[1].lower() == ".npy":
        if source is not None and source.cells is None:
            values = values.astype(source.values.dtype)
        with atomic_write(path, "wb") as fh:
            np.save(fh, values, allow_pickle=False)  # a file object: no ".npy" appended to the name
        return
    delimiter = source.delimiter if source is not None else ","
    header = source.header if source is not None and source.header is not None else header
    with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter, lineterminator="\n")
        if header is not None:
            writer.writerow(header)
        for i, row in enumerate(values):
            if source is not None and source.cells is not None:
                writer.writerow([cell if not np.isnan(source.values[i, j]) else _format(v)
                                 for j, (cell, v) in enumerate(zip(source.cells[i], row))])
            else:
                writer.writerow([_format(v) for v in row])
