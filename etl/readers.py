"""Readers: one per family of formats, looked up by name (a small registry, as pygeoapi's
plugins). Each streams Arrow batches of properties plus shapely geometries, so a file of
any size is read with bounded memory."""

from __future__ import annotations

import csv
import io
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyogrio
import shapely

from catalog.text import fold_digits_array
from etl.manifest import Manifest
from etl.source import SourceError, SourceFile, detect_dbf_encoding, guess_encoding, read_head


@dataclass
class LayerInfo:
    crs: str | None  # as the file states it (WKT / authority), None when it says nothing
    columns: list[tuple[str, pa.DataType]]
    geometry_type: str | None
    feature_count: int | None
    encoding: str | None = None
    encoding_how: str | None = None


@dataclass
class Batch:
    """A slice of rows: properties, geometries, and why a geometry is missing (if known)."""

    table: pa.Table
    geoms: np.ndarray | None  # object array of shapely geometries / None
    geom_problem: np.ndarray | None = None  # object array of str / None
    invalid_rows: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)


class Reader(ABC):
    def __init__(self, src: SourceFile, manifest: Manifest) -> None:
        self.src = src
        self.manifest = manifest

    @abstractmethod
    def info(self) -> LayerInfo: ...

    @abstractmethod
    def batches(self, batch_size: int, columns: list[str] | None = None,
                geometry: bool = True) -> Iterator[Batch]: ...


READERS: dict[str, type[Reader]] = {}


def register(*formats: str):  # type: ignore[no-untyped-def]
    def deco(cls: type[Reader]) -> type[Reader]:
        for f in formats:
            READERS[f] = cls
        return cls
    return deco


def reader_for(src: SourceFile, manifest: Manifest) -> Reader:
    try:
        return READERS[src.format](src, manifest)
    except KeyError:
        raise SourceError(f"{src.label}: no reader for format {src.format!r}; known: "
                          f"{', '.join(sorted(READERS))}") from None


def _string_like(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


@register("geojson", "shapefile", "gpkg", "kml", "kmz", "flatgeobuf")
class OgrReader(Reader):
    """Every format GDAL reads, through pyogrio's Arrow stream."""

    def __init__(self, src: SourceFile, manifest: Manifest) -> None:
        super().__init__(src, manifest)
        self.encoding: str | None = manifest.source.encoding
        self.encoding_how = "manifest" if self.encoding else None
        if not self.encoding and src.format == "shapefile":
            self.encoding, self.encoding_how = detect_dbf_encoding(src)
        try:
            self.layers = [str(x[0]) for x in pyogrio.list_layers(src.gdal_path)]
        except Exception as exc:  # pyogrio raises DataSourceError and friends
            raise SourceError(f"{src.label}: GDAL cannot open it as {src.format}: {exc}") from None
        layer = manifest.source.layer
        if layer is not None and layer not in self.layers:
            raise SourceError(f"{src.label}: no layer {layer!r}; layers: {', '.join(self.layers)}")
        if layer is None and len(self.layers) > 1:
            if src.format in ("kml", "kmz"):
                self.read_layers = self.layers  # one folder per category: read them all
            else:
                raise SourceError(f"{src.label} has {len(self.layers)} layers "
                                  f"({', '.join(self.layers)}); choose one with `source.layer`")
        else:
            self.read_layers = [layer or self.layers[0]]

    def _open_kwargs(self) -> dict[str, object]:
        return {"encoding": self.encoding} if self.encoding else {}

    def info(self) -> LayerInfo:
        first = self.read_layers[0]
        meta = pyogrio.read_info(self.src.gdal_path, layer=first, force_feature_count=True,
                                 **self._open_kwargs())
        count = sum(int(pyogrio.read_info(self.src.gdal_path, layer=lyr,
                                          force_feature_count=True)["features"])
                    for lyr in self.read_layers) if len(self.read_layers) > 1 \
            else int(meta["features"])
        with pyogrio.open_arrow(self.src.gdal_path, layer=first, batch_size=1,
                                use_pyarrow=True, datetime_as_string=True,
                                **self._open_kwargs()) as (m, reader):
            schema = reader.schema
            geom_name = m["geometry_name"] or "wkb_geometry"
        columns = [(f.name, f.type) for f in schema if f.name != geom_name]
        if len(self.read_layers) > 1:
            columns.append(("layer", pa.string()))
        return LayerInfo(crs=meta["crs"], columns=columns, geometry_type=meta["geometry_type"],
                         feature_count=count, encoding=self.encoding or "utf-8",
                         encoding_how=self.encoding_how or "GDAL (UTF-8)")

    def batches(self, batch_size: int, columns: list[str] | None = None,
                geometry: bool = True) -> Iterator[Batch]:
        for lyr in self.read_layers:
            cols = [c for c in columns if c != "layer"] if columns is not None else None
            with pyogrio.open_arrow(self.src.gdal_path, layer=lyr, columns=cols,
                                    read_geometry=geometry, batch_size=batch_size,
                                    use_pyarrow=True, datetime_as_string=True,
                                    **self._open_kwargs()) as (meta, reader):
                geom_name = meta["geometry_name"] or "wkb_geometry"
                for rb in reader:
                    table = pa.Table.from_batches([rb])
                    geoms = None
                    if geometry and geom_name in table.column_names:
                        geoms = shapely.from_wkb(table[geom_name].to_numpy(zero_copy_only=False),
                                                 on_invalid="ignore")
                        table = table.drop_columns([geom_name])
                    if len(self.read_layers) > 1 and (columns is None or "layer" in columns):
                        table = table.append_column("layer", pa.array([lyr] * len(table)))
                    yield Batch(table=table, geoms=geoms)


@register("csv")
class CsvReader(Reader):
    """Delimited text with lon/lat, projected x/y or WKT columns, read by pyarrow in blocks.

    Everything is read as text; types come from the values later. Rows with the wrong number
    of fields are kept as rejects with their line, not dropped."""

    def __init__(self, src: SourceFile, manifest: Manifest) -> None:
        super().__init__(src, manifest)
        spec = manifest.source.csv
        if spec is None:
            raise SourceError(f"{manifest.path}: a CSV source needs `source.csv` saying where "
                              "the geometry is (lon+lat, x+y with crs, or wkt)")
        self.spec = spec
        head = read_head(src)
        if manifest.source.encoding:
            self.encoding, self.encoding_how = manifest.source.encoding, "manifest"
        else:
            self.encoding, self.encoding_how = guess_encoding(head, default="cp1256"), "detected"
        text = head.decode(self.encoding, errors="replace")
        lines = text.splitlines()[spec.skip_rows:]
        if not lines:
            raise SourceError(f"{src.label}: the file is empty")
        self.delimiter = spec.delimiter or _sniff_delimiter(lines[:50])
        header = next(csv.reader([lines[0]], delimiter=self.delimiter))
        self.names = _unique_names([h.strip().lstrip("\ufeff") for h in header])
        self.geom_cols = [c for c in (spec.lon, spec.lat, spec.x, spec.y, spec.wkt) if c]
        missing = [c for c in self.geom_cols if c not in self.names]
        if missing:
            raise SourceError(f"{src.label}: geometry column(s) {', '.join(missing)} not in the "
                              f"header; columns are: {', '.join(self.names)}")

    def info(self) -> LayerInfo:
        cols = [(n, pa.string()) for n in self.names if n not in self.geom_cols]
        crs = self.manifest.source.crs or ("EPSG:4326" if self.spec.lon or self.spec.wkt
                                           else None)
        gtype = "Point" if not self.spec.wkt else None
        return LayerInfo(crs=crs, columns=cols, geometry_type=gtype, feature_count=None,
                         encoding=self.encoding, encoding_how=self.encoding_how)

    def _stream(self, invalid: list[tuple[int, str, dict[str, str]]]) -> pacsv.CSVStreamingReader:
        expected = len(self.names)

        def on_invalid(row: pacsv.InvalidRow) -> str:
            line = (row.number or 0)
            invalid.append((line, f"line {line}: expected {expected} fields, found "
                            f"{row.actual_columns}", {"line": row.text}))
            return "skip"

        return pacsv.open_csv(
            self._raw,
            read_options=pacsv.ReadOptions(column_names=self.names,
                                           skip_rows=self.spec.skip_rows + 1,
                                           encoding=self.encoding, block_size=8 << 20),
            parse_options=pacsv.ParseOptions(delimiter=self.delimiter,
                                             invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in self.names},
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )

    def _open_binary(self) -> io.BufferedIOBase:
        if self.src.member:
            return zipfile.ZipFile(self.src.path).open(self.src.member)  # type: ignore[return-value]
        return self.src.path.open("rb")

    def batches(self, batch_size: int, columns: list[str] | None = None,
                geometry: bool = True) -> Iterator[Batch]:
        invalid: list[tuple[int, str, dict[str, str]]] = []
        self._raw = self._open_binary()
        try:
            for rb in self._stream(invalid):
                yield from self._emit(pa.Table.from_batches([rb]), columns, geometry, invalid)
                invalid.clear()  # each bad line is reported once, with the batch read after it
        except pa.ArrowInvalid as exc:
            raise SourceError(f"{self.src.label}: cannot parse as CSV "
                              f"(delimiter {self.delimiter!r}, encoding {self.encoding}): {exc}"
                              ) from None
        finally:
            self._raw.close()

    def _emit(self, table: pa.Table, columns: list[str] | None, geometry: bool,
              invalid: list[tuple[int, str, dict[str, str]]]) -> Iterator[Batch]:
        geoms = problem = None
        if geometry:
            geoms, problem = self._geometry(table)
        keep = [n for n in table.column_names if n not in self.geom_cols
                and (columns is None or n in columns)]
        yield Batch(table=table.select(keep), geoms=geoms, geom_problem=problem,
                    invalid_rows=list(invalid))

    def _number(self, arr: pa.ChunkedArray) -> np.ndarray:
        text = pc.utf8_trim_whitespace(fold_digits_array(arr.combine_chunks()))
        if self.spec.decimal == ",":
            text = pc.replace_substring(text, ",", ".")
        ok = pc.match_substring_regex(text, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
        text = pc.if_else(ok, text, pa.scalar(None, pa.string()))
        return pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)

    def _geometry(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        n = len(table)
        problem = np.full(n, None, dtype=object)
        if self.spec.wkt:
            text = table[self.spec.wkt].combine_chunks()
            geoms = shapely.from_wkt(text.to_numpy(zero_copy_only=False), on_invalid="ignore")
            has_text = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0)
            has_text = has_text.to_numpy(zero_copy_only=False)
            bad = has_text & shapely.is_missing(geoms)
            problem[bad] = [f"{self.spec.wkt}: not valid WKT ({s[:60]!r})"
                            for s in text.filter(pa.array(bad)).to_pylist()]
            problem[~has_text] = f"{self.spec.wkt} is empty"
            return geoms, problem
        xcol, ycol = (self.spec.lon, self.spec.lat) if self.spec.lon else (self.spec.x, self.spec.y)
        x, y = self._number(table[xcol]), self._number(table[ycol])
        bad = ~(np.isfinite(x) & np.isfinite(y))
        geoms = shapely.points(np.where(bad, 0, x), np.where(bad, 0, y)).astype(object)
        geoms[bad] = None
        if bad.any():
            raw_x = table[xcol].to_numpy(zero_copy_only=False)[bad]
            raw_y = table[ycol].to_numpy(zero_copy_only=False)[bad]
            problem[bad] = [f"{xcol}/{ycol} are empty" if not (a.strip() or b.strip())
                            else f"{xcol}/{ycol} are not numbers ({a!r}, {b!r})"
                            for a, b in zip(raw_x, raw_y, strict=True)]
        return geoms, problem


def _sniff_delimiter(lines: list[str]) -> str:
    sample = "\n".join(lines)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in ",;\t|"}
        return max(counts, key=counts.__getitem__) if max(counts.values()) else ","


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, n in enumerate(names):
        n = n or f"column_{i + 1}"
        if n in seen:
            seen[n] += 1
            n = f"{n}_{seen[n]}"
        else:
            seen[n] = 1
        out.append(n)
    return out
