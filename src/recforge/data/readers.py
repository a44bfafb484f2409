"""Readers: event files in, chunks of raw rows out, each row with its line number.

Formats (``--format`` names; detected from the file name and its first bytes when not given):

==========  ==============================================================================
csv / tsv   a header line, then one event per physical line; columns named as the event
            schema, or mapped with ``--map user_id=userId,item_id=movieId,...``
jsonl       one JSON object per line (keys as the schema, or mapped)
parquet     columns as the schema, or mapped
ml-100k     MovieLens ``u.data`` (also ``u1.base``...): ``user item rating timestamp``,
            tab-separated, no header; each row is a ``rating`` event, value = the rating
ml-dat      MovieLens ``ratings.dat``: ``user::item::rating::timestamp``; ``rating`` events
ml-csv      MovieLens ``ratings.csv``: header ``userId,movieId,rating,timestamp``
ml-pairs    Parquet with string columns ``userID``/``movieID`` and nothing else (the
            ml-1m-pairs file): ``view`` events, value 1.0, at :data:`FIXED_TIMESTAMP`
==========  ==============================================================================

Gzip-compressed files (``.gz``, recognised by their magic bytes) are read transparently.
Text is read in blocks of at most ``chunk_rows`` lines and parsed by Arrow, so a file is never
held whole in memory, nor turned into Python objects row by row; a block that Arrow cannot
split cleanly line by line (a stray quote, a lone carriage return, invalid UTF-8) is re-read
one line at a time, so every bad line is found and named. A missing ``value`` column means
1.0 and a missing ``event_id`` column means ids derived from the content; a missing
``user_id``, ``item_id``, ``event_type`` or ``timestamp`` column makes the file unreadable.

Line numbers are physical lines, 1-based, the header being line 1. Parquet rows are numbered
from 1 and reported as ``row``.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from recforge.data.schema import COLUMNS, FIXED_TIMESTAMP
from recforge.data.validation import records_to_table
from recforge.errors import RecforgeError, UnreadableSourceError

__all__ = ["FORMATS", "Chunk", "Format", "Source", "detect_format", "parse_mapping"]

_READ_BYTES = 16 << 20
_REQUIRED = ("user_id", "item_id", "event_type", "timestamp")


@dataclass(frozen=True)
class Format:
    """How to read one kind of file."""

    name: str
    kind: str  # "text", "jsonl" or "parquet"
    delimiter: str = ","
    header: bool = True
    quoted: bool = True
    #: Column names of a headerless file.
    columns: tuple[str, ...] = ()
    #: Event field -> source column, where the names differ.
    mapping: Mapping[str, str] = field(default_factory=dict)
    #: Event field -> the value every row gets.
    constants: Mapping[str, Any] = field(default_factory=dict)


_MOVIELENS = ("user_id", "item_id", "value", "timestamp")
FORMATS: dict[str, Format] = {
    "csv": Format("csv", "text"),
    "tsv": Format("tsv", "text", delimiter="\t"),
    "jsonl": Format("jsonl", "jsonl"),
    "parquet": Format("parquet", "parquet"),
    "ml-100k": Format("ml-100k", "text", "\t", False, False, _MOVIELENS, constants={"event_type": "rating"}),
    "ml-dat": Format("ml-dat", "text", "::", False, False, _MOVIELENS, constants={"event_type": "rating"}),
    "ml-csv": Format(
        "ml-csv",
        "text",
        mapping={"user_id": "userId", "item_id": "movieId", "value": "rating"},
        constants={"event_type": "rating"},
    ),
    "ml-pairs": Format(
        "ml-pairs",
        "parquet",
        mapping={"user_id": "userID", "item_id": "movieID"},
        constants={"event_type": "view", "value": 1.0, "timestamp": FIXED_TIMESTAMP},
    ),
}


@dataclass
class Chunk:
    """Raw rows of a source, not yet validated.

    ``table`` has event-field columns of any type. ``locations`` gives each row's place in the
    source (``{"line": ...}`` or ``{"row": ...}``); ``raw(rows)`` the source text of rows (for
    the quarantine); ``malformed`` rows (all-null placeholders) are not events at all and carry
    their one reason (wrong column count, invalid JSON); ``extra`` adds reasons to rows.
    """

    table: pa.Table
    locations: dict[str, np.ndarray]
    raw: Callable[[np.ndarray], Sequence[Any]]
    malformed: dict[int, str] = field(default_factory=dict)
    extra: dict[int, list[str]] = field(default_factory=dict)


def parse_mapping(text: str | None) -> dict[str, str]:
    """``"user_id=userId,item_id=movieId"`` -> ``{"user_id": "userId", ...}``; bad input raises
    :class:`RecforgeError` naming it."""
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        target, sep, column = part.partition("=")
        target, column = target.strip(), column.strip()
        if not sep or not column:
            raise RecforgeError(f"--map entry {part.strip()!r} is not FIELD=COLUMN")
        if target not in COLUMNS:
            raise RecforgeError(f"--map names unknown field {target!r}; fields: {', '.join(COLUMNS)}")
        mapping[target] = column
    return mapping


class Source:
    """One event file: its format, column mapping, and :meth:`chunks`.

    ``constants`` give every row a value for fields the file has no column for (e.g.
    ``{"event_type": "view"}`` for a file of clicks), beside the format's own."""

    def __init__(
        self,
        path: str | Path,
        format: str | None = None,
        mapping: Mapping[str, str] | None = None,
        constants: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        _check_file(self.path)
        self.gzip = _is_gzip(self.path)
        if format is None:
            format = detect_format(self.path)
        if format not in FORMATS:
            raise RecforgeError(f"unknown format {format!r}; one of: {', '.join(FORMATS)}")
        self.format = FORMATS[format]
        self.mapping = {**self.format.mapping, **(mapping or {})}
        self.constants = {**self.format.constants, **(constants or {})}

    @property
    def name(self) -> str:
        return self.path.name

    def chunks(self, chunk_rows: int = 1_000_000) -> Iterator[Chunk]:
        """The rows in order, ``chunk_rows`` lines (or Parquet rows) at a time."""
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
        try:
            if self.format.kind == "parquet":
                yield from self._parquet_chunks(chunk_rows)
            else:
                yield from self._text_chunks(chunk_rows)
        except (OSError, EOFError, pa.ArrowException) as error:
            raise UnreadableSourceError(f"{self.path}: cannot be read: {_one_line(error)}") from error

    # text formats ---------------------------------------------------------------------------
    def _text_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        fmt = self.format
        with _open(self.path, self.gzip) as stream:
            blocks = _line_blocks(stream, chunk_rows)
            first = next(blocks, b"")
            line = 1
            names = list(fmt.columns)
            if fmt.kind == "text" and fmt.header:
                head, _, first = first.partition(b"\n")
                names = _header(head, fmt, self.path)
                line = 2
                self._check_columns(names)
            elif fmt.kind == "text":
                self._check_columns(names)
            for block in _prepend(first, blocks):
                if fmt.kind == "jsonl":
                    chunk = _jsonl_block(block, line)
                else:
                    chunk = _text_block(block, line, fmt, names)
                yield self._events(chunk)
                line += block.count(b"\n")

    def _check_columns(self, names: Sequence[str]) -> None:
        for name in _REQUIRED:
            if name in self.constants:
                continue
            column = self.mapping.get(name, name)
            if column not in names:
                hint = f"; name one with --map {name}=COLUMN" if self.format.kind != "jsonl" else ""
                shown = ", ".join(n if n.isprintable() else repr(n) for n in names)
                raise UnreadableSourceError(
                    f"{self.path}: no column {column!r} for {name} (columns: {shown}){hint}"
                )

    def _events(self, chunk: Chunk) -> Chunk:
        """Rename mapped columns to event fields and add the format's constants."""
        table = chunk.table
        n = table.num_rows
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        for name in COLUMNS:
            source = self.mapping.get(name, name)
            if source in table.column_names:
                columns[name] = table.column(source)
            elif name in self.constants:
                columns[name] = pa.repeat(pa.scalar(self.constants[name]), n)
        chunk.table = pa.table(columns) if columns else pa.table({"user_id": pa.nulls(n)})
        return chunk

    # parquet --------------------------------------------------------------------------------
    def _parquet_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        with _local_copy(self.path, self.gzip) as path:
            try:
                parquet = pq.ParquetFile(path)
            except (pa.ArrowInvalid, OSError) as error:
                raise UnreadableSourceError(f"{self.path}: not a Parquet file ({_one_line(error)})") from None
            names = parquet.schema_arrow.names
            self._check_columns(names)
            wanted = [self.mapping.get(c, c) for c in COLUMNS if self.mapping.get(c, c) in names]
            first = 1
            for batch in parquet.iter_batches(batch_size=chunk_rows, columns=wanted):
                shown = pa.Table.from_batches([batch])
                table, malformed = _without_invalid_text(shown)
                rows = np.arange(first, first + table.num_rows, dtype=np.int64)

                def raw(positions: np.ndarray, shown: pa.Table = shown) -> list[Any]:
                    return _rows_as_text(shown.take(pa.array(positions)))

                yield self._events(Chunk(table, {"row": rows}, raw, malformed=malformed))
                first += table.num_rows


def _without_invalid_text(table: pa.Table) -> tuple[pa.Table, dict[int, str]]:
    """Parquet strings are not checked for UTF-8 when read: rows holding invalid text become
    null rows rejected as ``not valid UTF-8`` (a full validation per string column, in C; rows
    are looked at one by one only in a column that fails it)."""
    bad = np.zeros(table.num_rows, dtype=bool)
    for column in table.columns:
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            raw = column.cast(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary())
            for row, value in enumerate(raw.to_pylist()):
                if value is not None and not _is_utf8(value):
                    bad[row] = True
    if not bad.any():
        return table, {}
    mask = pa.array(bad)
    columns = [pc.if_else(mask, pa.scalar(None, c.type), c) for c in table.columns]
    return pa.table(columns, names=table.column_names), dict.fromkeys(
        np.flatnonzero(bad).tolist(), "not valid UTF-8"
    )


def _is_utf8(value: bytes) -> bool:
    """Whether ``value`` is UTF-8 text, checked by Arrow in C (no Python string is made)."""
    try:
        pa.array([value], pa.large_binary()).cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def _rows_as_text(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts for the quarantine; invalid UTF-8 is shown with replacement characters."""
    rows: list[dict[str, Any]] = [{} for _ in range(table.num_rows)]
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            values = column.cast(pa.large_binary()).to_pylist()
            values = [None if v is None else v.decode("utf-8", errors="replace") for v in values]
        else:
            values = column.to_pylist()
        for row, value in zip(rows, values, strict=True):
            row[name] = value
    return rows


def detect_format(path: str | Path) -> str:
    """The format of ``path`` from its name (``.gz`` aside) and first bytes."""
    path = Path(path)
    _check_file(path)
    name = path.name.lower()
    gz = _is_gzip(path)
    if name.endswith(".gz"):
        name = name[:-3]
    head = _peek(path, gz)
    suffix = Path(name).suffix
    if head.startswith(b"PAR1") or suffix in (".parquet", ".pq"):
        if not head.startswith(b"PAR1"):
            raise UnreadableSourceError(f"{path}: not a Parquet file (no PAR1 magic bytes)")
        with _local_copy(path, gz) as local:
            try:
                names = pq.read_schema(local).names
            except (pa.ArrowInvalid, OSError) as error:
                raise UnreadableSourceError(f"{path}: not a Parquet file ({_one_line(error)})") from None
        return "ml-pairs" if {"userID", "movieID"} <= set(names) and "user_id" not in names else "parquet"
    if name == "u.data" or suffix in (".data", ".base", ".test"):
        return "ml-100k"
    if suffix == ".dat":
        return "ml-dat"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".tsv", ".tab"):
        return "tsv"
    first_line = head.split(b"\n", 1)[0].strip()
    if suffix == ".csv":
        return "ml-csv" if first_line == b"userId,movieId,rating,timestamp" else "csv"
    if first_line.startswith(b"{"):
        return "jsonl"
    if b"::" in first_line:
        return "ml-dat"
    if b"\t" in first_line:
        return "tsv"
    if b"," in first_line:
        return "csv"
    raise UnreadableSourceError(f"{path}: unknown format; give one with --format ({', '.join(FORMATS)})")


# blocks of lines ---------------------------------------------------------------------------------
def _line_blocks(stream: Any, max_lines: int) -> Iterator[bytes]:
    """Consecutive blocks of at most ``max_lines`` whole lines (the last may lack its newline)."""
    pending: list[bytes] = []
    count = 0
    while True:
        piece = stream.read(_READ_BYTES)
        if not piece:
            break
        pending.append(piece)
        count += piece.count(b"\n")
        while count >= max_lines:
            buffer = b"".join(pending)
            newlines = np.flatnonzero(np.frombuffer(buffer, dtype=np.uint8) == 10)
            cut = int(newlines[max_lines - 1]) + 1
            yield buffer[:cut]
            pending = [buffer[cut:]]
            count -= max_lines
    rest = b"".join(pending)
    if rest:
        yield rest


def _prepend(first: bytes, blocks: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from blocks


@dataclass
class _Lines:
    """Where each line of a block starts and ends (without its newline and carriage return)."""

    block: bytes
    starts: np.ndarray
    ends: np.ndarray

    @classmethod
    def of(cls, block: bytes) -> _Lines:
        data = np.frombuffer(block, dtype=np.uint8)
        ends = np.flatnonzero(data == 10)
        if len(block) and block[-1:] != b"\n":
            ends = np.append(ends, len(block))
        starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
        has_cr = (ends > starts) & (data[np.maximum(ends - 1, 0)] == 13) if len(data) else ends > starts
        return cls(block, starts, np.where(has_cr, ends - 1, ends))

    def __len__(self) -> int:
        return len(self.starts)

    def blank(self, whitespace: bytes) -> np.ndarray:
        """Lines holding nothing but bytes from ``whitespace``."""
        blank = self.ends == self.starts
        if not whitespace:
            return blank
        data = np.frombuffer(self.block, dtype=np.uint8)
        filled = np.flatnonzero(~blank)
        # only lines starting with whitespace need a closer look (one by one: they are rare)
        for index in filled[np.isin(data[self.starts[filled]], list(whitespace))]:
            blank[index] = not self.block[self.starts[index] : self.ends[index]].strip(whitespace)
        return blank

    def text(self, index: int) -> str:
        return self.block[self.starts[index] : self.ends[index]].decode("utf-8", errors="replace")


def _text_block(block: bytes, first_line: int, fmt: Format, names: list[str]) -> Chunk:
    lines = _Lines.of(block)
    blank = lines.blank(b"")
    parse = block.replace(b"::", b"\x1f") if fmt.delimiter == "::" else block
    delimiter = "\x1f" if fmt.delimiter == "::" else fmt.delimiter
    # Invalid UTF-8 goes line by line: Arrow's handler of bad rows cannot even be told about a row
    # that is not text (it raises inside pyarrow, which prints a traceback and loses the row).
    parsed = _arrow_csv(parse, names, delimiter, fmt.quoted, lines, blank) if _is_utf8(block) else None
    if parsed is None:
        return _text_lines_one_by_one(lines, first_line, names, fmt.delimiter, fmt.quoted)
    table, good, bad, counts = parsed
    return _with_malformed(
        table,
        lines,
        first_line,
        good,
        bad,
        [f"wrong column count: {c} fields, expected {len(names)}" for c in counts],
    )


def _arrow_csv(
    block: bytes, names: list[str], delimiter: str, quoted: bool, lines: _Lines, blank: np.ndarray
) -> tuple[pa.Table, np.ndarray, np.ndarray, list[int]] | None:
    """Parse with Arrow; ``(table, good line indices, bad line indices, bad field counts)``, or
    ``None`` when Arrow's rows do not map one-to-one onto the physical lines."""
    invalid: list[tuple[int | None, int]] = []

    def handler(row: Any) -> str:
        invalid.append((row.number, row.actual_columns))
        return "skip"

    def read(threads: bool) -> pa.Table:
        return pcsv.read_csv(
            io.BytesIO(block),
            read_options=pcsv.ReadOptions(column_names=names, use_threads=threads, block_size=1 << 24),
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter, quote_char='"' if quoted else False, invalid_row_handler=handler
            ),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.large_string()), strings_can_be_null=False
            ),
        )

    nonblank = np.flatnonzero(~blank)
    try:
        table = read(threads=True)
        if not invalid and table.num_rows == len(nonblank):
            return table, nonblank, np.zeros(0, np.int64), []
        invalid.clear()
        table = read(threads=False)  # row numbers of invalid rows are only known serially
    except pa.ArrowInvalid:
        return None
    if any(number is None for number, _ in invalid):
        return None
    # Arrow numbers rows from 1 counting every line but empty ones.
    numbers = np.array([number for number, _ in invalid], dtype=np.int64)
    if len(numbers) and (numbers.min() < 1 or numbers.max() > len(nonblank)):
        return None
    bad = nonblank[numbers - 1]
    good_mask = ~blank
    good_mask[bad] = False
    good = np.flatnonzero(good_mask)
    if table.num_rows != len(good):
        return None
    return table, good, bad, [count for _, count in invalid]


def _text_lines_one_by_one(
    lines: _Lines, first_line: int, names: list[str], delimiter: str, quoted: bool
) -> Chunk:
    """The slow path: each line parsed alone with the ``csv`` module (a multi-character
    ``delimiter`` such as ``::`` is replaced by a unit separator first, as the fast path does)."""
    import csv

    multi = len(delimiter) > 1
    split_on = "\x1f" if multi else delimiter

    rows: list[list[str]] = []
    good: list[int] = []
    bad: list[int] = []
    reasons: list[str] = []
    for index in range(len(lines)):
        raw = lines.block[lines.starts[index] : lines.ends[index]]
        if not raw:
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(index)
            reasons.append("not valid UTF-8")
            continue
        if multi:
            text = text.replace(delimiter, split_on)
        try:
            if quoted:
                fields = next(csv.reader([text], delimiter=split_on, strict=True))
            else:
                fields = next(csv.reader([text], delimiter=split_on, quoting=csv.QUOTE_NONE, strict=True))
        except (csv.Error, StopIteration) as error:
            bad.append(index)
            reasons.append(f"malformed line: {error}")
            continue
        if len(fields) != len(names):
            bad.append(index)
            reasons.append(f"wrong column count: {len(fields)} fields, expected {len(names)}")
            continue
        rows.append(fields)
        good.append(index)
    table = pa.table(
        {name: pa.array([row[j] for row in rows], pa.large_string()) for j, name in enumerate(names)}
    )
    return _with_malformed(
        table, lines, first_line, np.array(good, np.int64), np.array(bad, np.int64), reasons
    )


def _with_malformed(
    table: pa.Table, lines: _Lines, first_line: int, good: np.ndarray, bad: np.ndarray, reasons: list[str]
) -> Chunk:
    """The good rows followed by one all-null placeholder row per malformed line."""
    if len(bad):
        nulls = pa.table(
            {name: pa.nulls(len(bad), table.schema.field(name).type) for name in table.column_names}
        )
        table = pa.concat_tables([table, nulls])
    where = np.concatenate([good, bad]).astype(np.int64)
    malformed = {len(good) + j: reason for j, reason in enumerate(reasons)}
    return Chunk(
        table,
        {"line": where + first_line},
        lambda rows: [lines.text(int(where[r])) for r in rows],
        malformed=malformed,
    )


def _jsonl_block(block: bytes, first_line: int) -> Chunk:
    lines = _Lines.of(block)
    blank = lines.blank(b" \t\r")
    nonblank = np.flatnonzero(~blank)
    try:
        if not _is_utf8(block):  # Arrow's JSON reader does not check: invalid text goes line by line
            raise pa.ArrowInvalid("not UTF-8")
        table = pjson.read_json(
            io.BytesIO(block),
            read_options=pjson.ReadOptions(
                use_threads=True, block_size=max(1 << 20, min(len(block), 1 << 24))
            ),
        )
        if table.num_rows == len(nonblank):  # nested values are rejected by validation
            return Chunk(
                table,
                {"line": nonblank + first_line},
                lambda rows: [lines.text(int(nonblank[r])) for r in rows],
            )
    except pa.ArrowInvalid:
        pass
    records: list[Any] = []
    malformed: dict[int, str] = {}
    for j, index in enumerate(nonblank):
        record, reason = _json_line(lines.block[lines.starts[index] : lines.ends[index]])
        records.append(record)
        if reason is not None:
            malformed[j] = reason
    table, extra, not_objects = records_to_table(records)
    for j in not_objects:
        malformed.setdefault(j, "not a JSON object")
    return Chunk(
        table,
        {"line": nonblank + first_line},
        lambda rows: [lines.text(int(nonblank[r])) for r in rows],
        malformed=malformed,
        extra=extra,
    )


def _json_line(line: bytes) -> tuple[Any, str | None]:
    """One JSONL line parsed alone: ``(record, None)``, or ``(None, reason)`` when it is not valid
    UTF-8 or not valid JSON (nesting too deep for the parser included)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not valid UTF-8"
    try:
        record = json.loads(text)
    except ValueError as error:
        return None, f"invalid JSON: {error}"
    except RecursionError:
        return None, "invalid JSON: nested too deeply"
    if isinstance(record, dict) and any(isinstance(v, dict | list) for v in record.values()):
        try:  # a value too deep to write back as text (validation shows it as JSON)
            json.dumps(record)
        except RecursionError:
            return None, "invalid JSON: nested too deeply"
    return record, None


# files -----------------------------------------------------------------------------------------
def _check_file(path: Path) -> None:
    if not path.exists():
        raise UnreadableSourceError(f"{path}: no such file")
    if path.is_dir():
        raise UnreadableSourceError(f"{path}: is a directory, not an event file")
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as error:
        raise UnreadableSourceError(f"{path}: cannot be read: {error.strerror or error}") from None


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


@contextmanager
def _open(path: Path, gz: bool) -> Iterator[Any]:
    stream = pa.input_stream(str(path), compression="gzip" if gz else None)
    try:
        yield stream
    finally:
        stream.close()


def _peek(path: Path, gz: bool, size: int = 65536) -> bytes:
    try:
        with _open(path, gz) as stream:
            return bytes(stream.read(size))
    except (OSError, pa.ArrowException) as error:
        raise UnreadableSourceError(f"{path}: cannot be read: {_one_line(error)}") from None


@contextmanager
def _local_copy(path: Path, gz: bool) -> Iterator[Path]:
    """``path`` itself, or a decompressed temporary copy of a gzip file (Parquet needs seeking)."""
    if not gz:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="recforge-") as tmp:
        local = Path(tmp) / path.name.removesuffix(".gz")
        with _open(path, gz) as stream, local.open("wb") as out:
            shutil.copyfileobj(stream, out, _READ_BYTES)
        yield local


def _header(line: bytes, fmt: Format, path: Path) -> list[str]:
    import csv

    try:
        text = line.decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError:
        raise UnreadableSourceError(f"{path}: not UTF-8 text") from None
    if not text.strip():
        raise UnreadableSourceError(f"{path}: empty file (no header line)")
    return [name.strip() for name in next(csv.reader([text], delimiter=fmt.delimiter))]


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
