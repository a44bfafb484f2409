"""Item files in: raw records, each with its place in the file, a chunk at a time.

Formats (``--format`` names; detected from the file name and first bytes when not given):

=========  ===================================================================================
csv / tsv  a header line, then one item per line; ``categories`` separated by ``|``; every
           column that is not a field is an attribute; a column whose values (in the first
           chunk) are all numbers gives numbers; an empty cell is "not given"
jsonl      one JSON object per line: the fields, ``attributes`` as an object, and any other key
           as an attribute
parquet    columns as the fields (``categories`` a list of strings or a ``|``-separated
           string); other columns are attributes
ml-item    MovieLens 100K ``u.item`` (``|``-separated, Latin-1): genre flags become
           categories; attributes ``title``, ``year``, ``imdb_url``; ``created_at`` the
           release date
ml-movies  MovieLens 1M ``movies.dat`` (``id::Title (Year)::Genre|Genre``, Latin-1):
           attributes ``title`` and ``year``; ``created_at`` January 1 of the year
=========  ===================================================================================

``--map item_id=sku,categories=cats,...`` names the source column of a field. Gzip is read
transparently. Line numbers are physical lines, 1-based (the header is line 1); Parquet rows
are numbered from 1 and reported as ``row``.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from recforge.catalog.record import FIELDS
from recforge.errors import RecforgeError, UnreadableSourceError

__all__ = ["ITEM_FORMATS", "ItemChunk", "ItemSource", "detect_item_format", "parse_item_mapping"]

ITEM_FORMATS = ("csv", "tsv", "jsonl", "parquet", "ml-item", "ml-movies")

#: MovieLens 100K genre flags, in ``u.item``'s column order.
ML_100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")


@dataclass
class ItemChunk:
    """Raw records of a source, in order: ``records[j]`` sits at ``locations[j]`` (``{"line": n}``
    or ``{"row": n}``) and was read from ``raw[j]``; ``malformed`` maps a position in the chunk to
    the one reason it is not a record at all (invalid JSON, a short line)."""

    records: list[Any]
    locations: list[dict[str, int]]
    raw: list[Any]
    malformed: dict[int, str] = field(default_factory=dict)


def parse_item_mapping(text: str | None) -> dict[str, str]:
    """``"item_id=sku,categories=cats"`` -> ``{"item_id": "sku", ...}``."""
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        target, sep, column = (s.strip() for s in part.partition("="))
        if not sep or not column:
            raise RecforgeError(f"--map entry {part.strip()!r} is not FIELD=COLUMN")
        if target not in FIELDS:
            raise RecforgeError(f"--map names unknown field {target!r}; fields: {', '.join(FIELDS)}")
        mapping[target] = column
    return mapping


class ItemSource:
    """One item file: its format, column mapping and :meth:`chunks`."""

    def __init__(
        self, path: str | Path, format: str | None = None, mapping: Mapping[str, str] | None = None
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UnreadableSourceError(f"{self.path}: no such file")
        self.format = format or detect_item_format(self.path)
        if self.format not in ITEM_FORMATS:
            raise RecforgeError(f"unknown item format {self.format!r}; one of: {', '.join(ITEM_FORMATS)}")
        unknown = [name for name in mapping or {} if name not in FIELDS]
        if unknown:
            raise RecforgeError(
                f"the mapping names unknown field {unknown[0]!r}; fields: {', '.join(FIELDS)}"
            )
        self.rename = {column: name for name, column in (mapping or {}).items()}

    @property
    def name(self) -> str:
        return self.path.name

    def chunks(self, chunk_rows: int = 1_000_000) -> Iterator[ItemChunk]:
        try:
            if self.format == "parquet":
                yield from self._parquet(chunk_rows)
            elif self.format == "jsonl":
                yield from self._jsonl(chunk_rows)
            elif self.format in ("csv", "tsv"):
                yield from self._csv(chunk_rows, "," if self.format == "csv" else "\t")
            else:
                yield from self._movielens(chunk_rows)
        except (OSError, EOFError, UnicodeDecodeError, pa.ArrowException, csv.Error) as error:
            raise UnreadableSourceError(f"{self.path}: cannot be read: {error}") from error

    def _named(self, record: dict[str, Any]) -> dict[str, Any]:
        if not self.rename:
            return record
        return {self.rename.get(key, key): value for key, value in record.items()}

    # formats ----------------------------------------------------------------------------------
    def _csv(self, chunk_rows: int, delimiter: str) -> Iterator[ItemChunk]:
        with _text(self.path, "utf-8") as stream:
            reader = csv.reader(stream, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                return
            names = [self.rename.get(h.strip(), h.strip()) for h in header]
            if "item_id" not in names:
                raise UnreadableSourceError(
                    f"{self.path}: no item_id column (columns: {', '.join(names)}); name one with --map"
                )
            numeric: set[str] | None = None
            chunk = ItemChunk([], [], [])
            for row in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(names):
                    chunk.malformed[len(chunk.records)] = f"{len(row)} columns, expected {len(names)}"
                    chunk.records.append(None)
                else:
                    chunk.records.append({n: c for n, c in zip(names, row, strict=True) if c != ""})
                chunk.locations.append({"line": line})
                chunk.raw.append(delimiter.join(row))
                if len(chunk.records) >= chunk_rows:
                    numeric = _numbers(chunk, names, numeric)
                    yield chunk
                    chunk = ItemChunk([], [], [])
            if chunk.records:
                _numbers(chunk, names, numeric)
                yield chunk

    def _jsonl(self, chunk_rows: int) -> Iterator[ItemChunk]:
        with _binary(self.path) as stream:
            chunk = ItemChunk([], [], [])
            for line, text in enumerate(stream, start=1):
                if not text.strip():
                    continue
                try:
                    record = orjson.loads(text)
                except orjson.JSONDecodeError as error:
                    chunk.malformed[len(chunk.records)] = f"invalid JSON: {error}"
                    record = None
                if isinstance(record, dict):
                    record = self._named(record)
                chunk.records.append(record)
                chunk.locations.append({"line": line})
                chunk.raw.append(text.decode("utf-8", errors="replace").rstrip("\r\n"))
                if len(chunk.records) >= chunk_rows:
                    yield chunk
                    chunk = ItemChunk([], [], [])
            if chunk.records:
                yield chunk

    def _parquet(self, chunk_rows: int) -> Iterator[ItemChunk]:
        with _binary(self.path) as stream:
            data = stream.read()
        try:
            parquet = pq.ParquetFile(io.BytesIO(data))
        except (pa.ArrowInvalid, OSError) as error:
            raise UnreadableSourceError(f"{self.path}: not a Parquet file ({error})") from None
        names = [self.rename.get(n, n) for n in parquet.schema_arrow.names]
        if "item_id" not in names:
            raise UnreadableSourceError(f"{self.path}: no item_id column (columns: {', '.join(names)})")
        first = 1
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            rows = [
                self._named({k: v for k, v in r.items() if v is not None and v != ""})
                for r in batch.to_pylist()
            ]
            yield ItemChunk(rows, [{"row": first + j} for j in range(len(rows))], rows)
            first += len(rows)

    def _movielens(self, chunk_rows: int) -> Iterator[ItemChunk]:
        separator = "|" if self.format == "ml-item" else "::"
        with _text(self.path, "latin-1") as stream:
            chunk = ItemChunk([], [], [])
            for line, text in enumerate(stream, start=1):
                text = text.rstrip("\r\n")
                if not text.strip():
                    continue
                parts = text.split(separator)
                parse = _ml_item if self.format == "ml-item" else _ml_movie
                parsed = parse(parts)
                if isinstance(parsed, str):
                    chunk.malformed[len(chunk.records)] = parsed
                chunk.records.append(None if isinstance(parsed, str) else parsed)
                chunk.locations.append({"line": line})
                chunk.raw.append(text)
                if len(chunk.records) >= chunk_rows:
                    yield chunk
                    chunk = ItemChunk([], [], [])
            if chunk.records:
                yield chunk


def _ml_item(parts: list[str]) -> dict[str, Any] | str:
    """A ``u.item`` line: ``id|title|release date|video release date|IMDb URL|19 genre flags``."""
    if len(parts) != 5 + len(ML_100K_GENRES):
        return f"{len(parts)} fields, expected {5 + len(ML_100K_GENRES)}"
    flags = parts[5:]
    if any(flag not in ("0", "1") for flag in flags):
        return "genre flags must be 0 or 1"
    record: dict[str, Any] = {
        "item_id": parts[0],
        "categories": [g for g, flag in zip(ML_100K_GENRES, flags, strict=True) if flag == "1"],
        "attributes": {"title": parts[1]},
    }
    if parts[4]:
        record["attributes"]["imdb_url"] = parts[4]
    if parts[2]:
        try:
            released = datetime.strptime(parts[2], "%d-%b-%Y").replace(tzinfo=UTC)
        except ValueError:
            return f"unparsable release date {parts[2]!r} (expected 01-Jan-1995)"
        record["created_at"] = released
        record["attributes"]["year"] = released.year
    return record


def _ml_movie(parts: list[str]) -> dict[str, Any] | str:
    """A ``movies.dat`` line: ``id::Title (Year)::Genre|Genre``."""
    if len(parts) != 3:
        return f"{len(parts)} fields, expected 3 (id::title::genres)"
    record: dict[str, Any] = {
        "item_id": parts[0],
        "categories": [g for g in parts[2].split("|") if g],
        "attributes": {"title": parts[1]},
    }
    year = _TITLE_YEAR.search(parts[1])
    if year:
        record["attributes"]["year"] = int(year[1])
        record["created_at"] = datetime(int(year[1]), 1, 1, tzinfo=UTC)
    return record


def _numbers(chunk: ItemChunk, names: list[str], numeric: set[str] | None) -> set[str]:
    """Turn the cells of numeric attribute columns into numbers (which columns: decided on the
    first chunk, where every non-empty cell of such a column parses as a finite number)."""
    if numeric is None:
        numeric = set()
        for name in names:
            if name in FIELDS:
                continue
            cells = [r[name] for r in chunk.records if r is not None and name in r]
            if cells and all(_number(c) is not None for c in cells):
                numeric.add(name)
    for record in chunk.records:
        if record is None:
            continue
        for name in numeric:
            if name in record:
                value = _number(record[name])
                if value is not None:
                    record[name] = value
    return numeric


def _number(text: str) -> int | float | None:
    try:
        value = int(text)
        return value if abs(value) < 2**53 else float(value)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def detect_item_format(path: str | Path) -> str:
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    if name == "u.item" or name.endswith(".item"):
        return "ml-item"
    if name == "movies.dat":
        return "ml-movies"
    suffix = Path(name).suffix
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".tsv", ".tab"):
        return "tsv"
    if suffix == ".csv":
        return "csv"
    with _binary(path) as stream:
        head = stream.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    raise UnreadableSourceError(
        f"{path}: unknown item format; give one with --format ({', '.join(ITEM_FORMATS)})"
    )


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _binary(path: Path) -> IO[bytes]:
    if _is_gzip(path):
        return gzip.GzipFile(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _text(path: Path, encoding: str) -> IO[str]:
    return io.TextIOWrapper(_binary(path), encoding=encoding, newline="")
