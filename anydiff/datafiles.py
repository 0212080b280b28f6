"""The command line's data files: tables in ``.csv``, ``.npy`` or ``.parquet``, read strictly and
written all or nothing.

Reading never guesses a number. In a CSV only empty, ``NA``, ``N/A``, ``NaN`` and ``null`` cells
are missing. The separator (``,`` ``;`` tab or ``|``) and quoting are detected by Python's
``csv`` module; a first line with a cell that is not a number is the header. A numeric table
becomes a float array; with ``allow_text=True`` a table with text columns (it needs a header)
becomes a DataFrame whose column types are read from the cells: numbers (int64, or Int64 with
missing cells; float64 when any cell is written with a decimal point or an exponent, so that
filled cells are written as the observed ones are), true/false, ISO dates, and text. A column of numbers with a few
text cells is an error naming the file, line and column, as is any text cell when text is not
allowed. ``.parquet`` keeps its dtypes exactly (it needs pyarrow). Writing goes through a
temporary file in the same folder (:func:`anydiff._utils.atomic_write`). An imputed CSV keeps
the header and the text of every observed cell exactly as it was read; only missing cells are
filled.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._utils import atomic_write, check_output_path

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Table", "read_table", "read_labels", "write_table", "check_output"]

MISSING = frozenset({"", "na", "n/a", "nan", "null"})  # lower-cased cell texts read as missing
EXTENSIONS = (".csv", ".npy", ".parquet")
TYPO_SHARE = 0.9  # a column this much numbers, with other text cells, is a column of numbers with typos


@dataclass
class Table:
    """A numeric table read from a file.

    values : float ndarray (n_rows, n_columns), NaN where a cell is missing; None for a table
        with text (or other non-numeric) columns.
    header : column names, or None when the file has none (always None for .npy).
    cells : the text of every data cell as read (CSV only), to write observed cells back unchanged.
    delimiter : the CSV separator that was detected.
    frame : the table as a DataFrame with its column types (text tables and .parquet), else None.
    """

    values: np.ndarray | None
    header: list[str] | None = None
    cells: list[list[str]] | None = None
    delimiter: str = ","
    frame: "pd.DataFrame | None" = None

    def as_frame(self) -> "pd.DataFrame":
        """The table as a DataFrame (numeric tables: one float column per column)."""
        import pandas as pd

        if self.frame is not None:
            return self.frame
        names = self.header or [f"x{j}" for j in range(self.values.shape[1])]
        return pd.DataFrame(self.values, columns=names)


def _extension(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in EXTENSIONS:
        raise ValueError(f"{path}: unknown file type {ext or '(none)'!r}; use .csv, .npy or .parquet")
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


def _read_csv(path: str, allow_text: bool, typed: bool) -> Table:
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
    if typed:
        header = header if header is not None else [f"x{j}" for j in range(width)]
        return Table(None, header, cells, delimiter, _text_frame(path, header, rows))
    values = np.empty((len(cells), width))
    for i, (line, row) in enumerate(rows):
        for j, cell in enumerate(row):
            if cell.lower() in MISSING:
                values[i, j] = np.nan
            elif _is_number(cell):
                values[i, j] = float(cell)
            elif allow_text and header is not None:
                return Table(None, header, cells, delimiter, _text_frame(path, header, rows))
            else:
                name = f" ({header[j]!r})" if header is not None else ""
                hint = ("a table with text columns needs a header line" if allow_text else
                        "convert or remove text columns first")
                raise ValueError(f"{path}, line {line}, column {j + 1}{name}: {cell!r} is not a number. Only "
                                 f"empty, NA and NaN cells count as missing; {hint}")
    return Table(values, header, cells, delimiter)


def _text_column(path: str, name: str, j: int, lines: list[int], texts: list[str]):
    """One column of a text table, typed from its cells: numbers, true/false, ISO dates or text."""
    import pandas as pd

    missing = np.array([t.lower() in MISSING for t in texts])
    present = [t for t, m in zip(texts, missing) if not m]
    numeric = np.array([_is_number(t) for t in present])
    if numeric.all():
        values = np.array([float(t) if not m else np.nan for t, m in zip(texts, missing)])
        written_as_floats = any(c in t for t in present for c in ".eE")  # 181.0 is a float column
        if not written_as_floats and np.all(np.abs(values[~missing]) < 2**53):
            return pd.array([None if m else int(v) for v, m in zip(values, missing)],
                            dtype="Int64" if missing.any() else "int64")
        return pd.Series(values, dtype=np.float64).array
    if numeric.mean() >= TYPO_SHARE:
        k = np.flatnonzero(~missing)[np.argmax(~numeric)]
        raise ValueError(f"{path}, line {lines[k]}, column {j + 1} ({name!r}): {texts[k]!r} is not a number, "
                         f"but {numeric.mean():.0%} of the column's cells are; correct the cell, or leave it "
                         "empty if it is missing")
    if all(t.lower() in ("true", "false") for t in present):
        return pd.array([None if m else t.lower() == "true" for t, m in zip(texts, missing)],
                        dtype="boolean" if missing.any() else "bool")
    if all(len(t) >= 10 and t[4] == "-" and t[:4].isdigit() for t in present):
        try:
            return pd.to_datetime(pd.Series([None if m else t for t, m in zip(texts, missing)]),
                                  format="ISO8601").array
        except ValueError:
            pass  # not dates after all: text
    return pd.array([None if m else t for t, m in zip(texts, missing)], dtype=object)


def _text_frame(path: str, header: list[str], rows: list[tuple[int, list[str]]]):
    import pandas as pd

    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise ValueError(f"{path}: the header names columns {dupes} more than once; give each column its own name")
    lines = [line for line, _ in rows]
    return pd.DataFrame({name: _text_column(path, name, j, lines, [row[j] for _, row in rows])
                         for j, name in enumerate(header)})


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
        raise ValueError(f"{path}: cannot read it as a numpy array file ({str(exc).splitlines()[0]})") from exc


def _read_parquet(path: str) -> Table:
    try:
        import pandas as pd

        frame = pd.read_parquet(path)
    except ImportError as exc:
        raise ValueError(f"{path}: reading parquet needs pyarrow: pip install 'anydiff[tabular]'") from exc
    except Exception as exc:  # pyarrow raises its own error types for damaged files
        raise ValueError(f"{path}: cannot read it as a parquet table ({str(exc).splitlines()[0]})") from exc
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"{path}: the table is empty ({frame.shape[0]} rows, {frame.shape[1]} columns)")
    numeric = all(pd.api.types.is_numeric_dtype(d) and not pd.api.types.is_bool_dtype(d) for d in frame.dtypes)
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan) if numeric else None
    return Table(values, [str(c) for c in frame.columns], frame=frame)


def read_table(path: str, *, allow_text: bool = False, typed: bool = False) -> Table:
    """Read a table (rows, columns) from ``.csv``, ``.npy`` (no pickle) or ``.parquet``; with
    ``allow_text`` a CSV may hold text columns, and with ``typed`` a CSV is always read as a
    DataFrame with column types read from its cells (see the module's docstring)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    ext = _extension(path)
    if ext == ".csv":
        return _read_csv(path, allow_text or typed, typed)
    if ext == ".parquet":
        return _read_parquet(path)
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


def _csv_cells(data, delimiter: str) -> list[list[str]]:
    """The text of every cell: numbers as :func:`_format`, a DataFrame's cells as pandas writes
    them (floats as repr, missing as empty, dates without a time when every time is midnight)."""
    if not hasattr(data, "to_csv"):
        return [[_format(v) for v in row] for row in np.asarray(data, dtype=np.float64)]
    text = data.to_csv(index=False, header=False, sep=delimiter, lineterminator="\n")
    return list(csv.reader(io.StringIO(text), delimiter=delimiter))


def _observed(source: Table) -> np.ndarray:
    if source.values is not None:
        return ~np.isnan(source.values)
    return source.frame.notna().to_numpy()


def write_table(path: str, data, *, header: list[str] | None = None, source: Table | None = None) -> None:
    """Write ``data`` (an array (rows, columns) or a DataFrame) to ``.csv``, ``.npy`` or
    ``.parquet``, all or nothing.

    With ``source`` (the table that was read), a CSV keeps its header and separator, and every
    cell that was observed in it is written back as its original text; only cells that were
    missing get new values. A ``.npy`` output of a ``.npy`` source keeps its dtype; a DataFrame
    goes to ``.npy`` only when all its columns are numbers.
    """
    path = check_output(path)
    ext = os.path.splitext(path)[1].lower()
    is_frame = hasattr(data, "to_csv")
    if ext == ".parquet":
        import pandas as pd

        if not is_frame and header is None and source is not None:
            header = source.header
        frame = data if is_frame else pd.DataFrame(np.asarray(data), columns=header)
        frame.columns = [str(c) for c in frame.columns]
        try:
            with atomic_write(path, "wb") as fh:
                frame.to_parquet(fh, index=False)
        except ImportError as exc:
            raise ValueError(f"{path}: writing parquet needs pyarrow: pip install 'anydiff[tabular]'") from exc
        return
    if ext == ".npy":
        if is_frame:
            try:
                data = data.to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
                raise ValueError(f"{path}: a table with text columns is written as .csv or .parquet, "
                                 "not .npy") from None
        values = np.asarray(data)
        if source is not None and source.cells is None and source.values is not None:
            values = values.astype(source.values.dtype)
        with atomic_write(path, "wb") as fh:
            np.save(fh, values, allow_pickle=False)  # a file object: no ".npy" appended to the name
        return
    delimiter = source.delimiter if source is not None else ","
    if source is not None and source.header is not None:
        header = source.header
    elif is_frame:
        header = [str(c) for c in data.columns]
    cells = _csv_cells(data, delimiter)
    if source is not None and source.cells is not None:
        observed = _observed(source)
        cells = [[old if seen else new for old, new, seen in zip(old_row, new_row, seen_row)]
                 for old_row, new_row, seen_row in zip(source.cells, cells, observed)]
    with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter, lineterminator="\n")
        if header is not None:
            writer.writerow(header)
        writer.writerows(cells)
