"""`shahr analyze ...`: the analyses of /analytics/* from the command line, writing GeoJSON or
CSV to a file or to stdout. The options are the API's parameters (`--zones-filter` is
`zones-filter`), checked by the same code (api.analytics_params), so the answers and the
errors are the same; an error names the option and exits with status 1."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any

import psycopg
import typer
from rich.console import Console

from api import analytics_run as run
from api.analytics_params import Job, parse
from api.problems import Problem
from catalog.bootstrap import resolve_database
from catalog.collections import load_collections
from catalog.database import DatabaseUnavailable, libpq_dsn
from catalog.settings import get_settings

analyze_app = typer.Typer(help="Spatial analyses (as /analytics/*): GeoJSON or CSV.",
                          no_args_is_help=True)
err = Console(stderr=True)

# API parameter -> the option that sets it (for error messages).
OPTIONS = {"f": "--format", "output": "--catchment", "kind": "KIND", "n": "-n"}

Layer = Annotated[str, typer.Option("--layer", "-l", help="The analysed dataset's slug")]
Zones = Annotated[str, typer.Option(help="A polygon dataset's slug (the zones)")]
OptZones = Annotated[str | None, typer.Option(
    help="A polygon dataset's slug: summarise per zone instead of per feature")]
Facilities = Annotated[str, typer.Option(help="The facilities' dataset slug")]
Field = Annotated[str | None, typer.Option(help="A numeric property of the layer to sum")]
Filter = Annotated[str | None, typer.Option("--filter", help="CQL2 filter on the layer")]
ZonesFilter = Annotated[str | None, typer.Option(help="CQL2 filter on the zones")]
FacilitiesFilter = Annotated[str | None, typer.Option(help="CQL2 filter on the facilities")]
FilterLang = Annotated[str | None, typer.Option(help="cql2-text (default) or cql2-json")]
Output = Annotated[Path | None, typer.Option(
    "--output", "-o", help="File to write (default: stdout)")]
Format = Annotated[str | None, typer.Option(
    "--format", help="geojson or csv (default: from the file's extension, else geojson)")]


def _format(fmt: str | None, output: Path | None) -> str:
    if fmt is not None:
        if fmt not in ("geojson", "csv"):
            _fail(f"--format: {fmt!r} is not accepted; accepted: geojson, csv")
        return fmt
    if output is not None and output.suffix.lower() == ".csv":
        return "csv"
    return "geojson"


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(1)


@contextmanager
def _target(output: Path | None) -> Iterator[IO[bytes]]:
    if output is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    tmp = output.with_name(f".{output.name}.part")
    try:
        with tmp.open("wb") as fh:
            yield fh
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)


def analyze(name: str, params: dict[str, Any], output: Path | None, fmt: str | None) -> None:
    """Check the parameters, run the analysis and write its answer."""
    given = {k: str(v) for k, v in params.items() if v is not None and v is not False}
    given["f"] = _format(fmt, output)
    settings = get_settings()
    try:
        url = resolve_database(settings, start=False).url
        with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
            job = parse(name, given, load_collections(conn))
            with _target(output) as out:
                _write(conn, job, out)
    except Problem as exc:
        param = exc.extra.get("parameter")
        option = OPTIONS.get(param, f"--{param}") if param else None
        detail = exc.detail
        if option and param and detail.startswith(f"{param}:"):
            detail = detail[len(param) + 1:].strip()
        _fail(f"{option}: {detail}" if option else detail)
    except DatabaseUnavailable as exc:
        _fail(str(exc))
    except psycopg.OperationalError as exc:
        _fail(f"the database is not reachable: {exc}")
    except (psycopg.errors.DataError, psycopg.errors.InternalError_) as exc:
        _fail(f"the database could not run this analysis: {exc.diag.message_primary or exc}")
    if output is not None:
        err.print(f"{name}: wrote {output}", highlight=False)


def _write(conn: psycopg.Connection[Any], job: Job, out: IO[bytes]) -> None:
    if job.stream:
        sqls = run.statements(job)
        for i, (sql, params) in enumerate(sqls[:-1]):
            run.check(job, i, conn.execute(sql, params).fetchone())
        statement = run.copy_statement(job, job.fmt, psycopg.ClientCursor(conn).mogrify)
        with conn.cursor().copy(statement) as copy:
            for block in run.framed(job, job.fmt, (bytes(b) for b in copy)):
                out.write(block)
        return
    result = run.add_hotspots(run.fetch_sync(conn, job))
    out.write(run.csv_bytes(result) if job.fmt == "csv" else run.geojson_bytes(result))


def _command(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return analyze_app.command(name)


@_command("aggregate")
def aggregate(layer: Layer, zones: Zones, field: Field = None, filter_: Filter = None,
              zones_filter: ZonesFilter = None, filter_lang: FilterLang = None,
              output: Output = None, fmt: Format = None) -> None:
    """Count (and sum --field) the layer's features in each zone, with density per km²."""
    analyze("aggregate", {"layer": layer, "zones": zones, "field": field, "filter": filter_,
                          "zones-filter": zones_filter, "filter-lang": filter_lang},
            output, fmt)


@_command("coverage")
def coverage(layer: Layer, facilities: Facilities,
             distance: Annotated[float, typer.Option(help="Metres")],
             zones: OptZones = None, field: Field = None,
             catchment: Annotated[bool, typer.Option(
                 help="Write the catchment areas instead of the zones' shares")] = False,
             filter_: Filter = None, zones_filter: ZonesFilter = None,
             facilities_filter: FacilitiesFilter = None, filter_lang: FilterLang = None,
             output: Output = None, fmt: Format = None) -> None:
    """Share of the layer (features, or the sum of --field) within --distance metres of a
    facility, per zone; or, with --catchment, the catchment areas."""
    analyze("coverage", {"layer": layer, "zones": zones, "facilities": facilities,
                         "distance": distance, "field": field,
                         "output": "catchment" if catchment else None, "filter": filter_,
                         "zones-filter": zones_filter, "facilities-filter": facilities_filter,
                         "filter-lang": filter_lang}, output, fmt)


@_command("nearest")
def nearest(layer: Layer, facilities: Facilities, zones: OptZones = None,
            filter_: Filter = None, zones_filter: ZonesFilter = None,
            facilities_filter: FacilitiesFilter = None, filter_lang: FilterLang = None,
            output: Output = None, fmt: Format = None) -> None:
    """The nearest facility of each feature and the distance in metres; with --zones, the
    distances' statistics per zone."""
    analyze("nearest", {"layer": layer, "facilities": facilities, "zones": zones,
                        "filter": filter_, "zones-filter": zones_filter,
                        "facilities-filter": facilities_filter, "filter-lang": filter_lang},
            output, fmt)


@_command("landuse-mix")
def landuse_mix(layer: Layer, zones: Zones,
                field: Annotated[str | None, typer.Option(
                    help="The land-use property (default: landuse, use or zoning)")] = None,
                categories: Annotated[str | None, typer.Option(
                    help="Land uses to count, comma separated (default: all)")] = None,
                filter_: Filter = None, zones_filter: ZonesFilter = None,
                filter_lang: FilterLang = None, output: Output = None,
                fmt: Format = None) -> None:
    """Land-use mix per zone: the normalised Shannon entropy of land-use areas (0..1)."""
    analyze("landuse-mix", {"layer": layer, "zones": zones, "field": field,
                            "categories": categories, "filter": filter_,
                            "zones-filter": zones_filter, "filter-lang": filter_lang},
            output, fmt)


@_command("hexbin")
def hexbin(layer: Layer, size: Annotated[float, typer.Option(help="Hexagon edge, metres")],
           field: Field = None, filter_: Filter = None, filter_lang: FilterLang = None,
           output: Output = None, fmt: Format = None) -> None:
    """Count (and sum --field) the layer's features in hexagons of --size metres."""
    analyze("hexbin", {"layer": layer, "size": size, "field": field, "filter": filter_,
                       "filter-lang": filter_lang}, output, fmt)


@_command("traffic")
def traffic(kind: Annotated[str, typer.Argument(help="top-roads or hotspots")], layer: Layer,
            by: Annotated[str | None, typer.Option(
                help="top-roads: volume or vc; hotspots: hex or segment")] = None,
            volume: Annotated[str | None, typer.Option(help="Volume property")] = None,
            capacity: Annotated[str | None, typer.Option(help="Capacity property")] = None,
            k_factor: Annotated[float | None, typer.Option(
                help="v/c = volume × k-factor / capacity")] = None,
            n: Annotated[int | None, typer.Option("-n", help="How many roads")] = None,
            size: Annotated[float | None, typer.Option(help="Hexagon edge, metres")] = None,
            roads: Annotated[str | None, typer.Option(help="Road segments' slug")] = None,
            roads_filter: Annotated[str | None, typer.Option(help="CQL2 filter on roads")] = None,
            distance: Annotated[float | None, typer.Option(
                help="Segment buffer, metres")] = None,
            significance: Annotated[bool, typer.Option(
                help="Getis-Ord Gi* z-scores and p-values")] = False,
            band: Annotated[float | None, typer.Option(help="Gi* distance band, metres")] = None,
            permutations: Annotated[int | None, typer.Option(help="Gi* permutations")] = None,
            filter_: Filter = None, filter_lang: FilterLang = None, output: Output = None,
            fmt: Format = None) -> None:
    """Top road segments by volume or v/c (top-roads), or crash counts per hexagon or road
    segment with Getis-Ord Gi* on request (hotspots)."""
    analyze("traffic", {"kind": kind, "layer": layer, "by": by, "volume": volume,
                        "capacity": capacity, "k-factor": k_factor, "n": n, "size": size,
                        "roads": roads, "roads-filter": roads_filter, "distance": distance,
                        "significance": "true" if significance else None, "band": band,
                        "permutations": permutations, "filter": filter_,
                        "filter-lang": filter_lang}, output, fmt)
