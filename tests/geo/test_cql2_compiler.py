"""The CQL2 compiler (geo/cql2.py) and the literal geometry helpers (geo/sql.py) on their own:
what each construct compiles to, that user text only ever travels as a bound parameter,
and that input able to crash or confuse the parser is refused first. (The same filters are
run against PostGIS in tests/api/test_cql2.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from sqlalchemy import BigInteger, Boolean, Date, Float, Text, column, table
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import BindParameter

from geo import cql2
from geo.sql import (
    GeometryError,
    envelope,
    geojson_geometry,
    ogc_crs,
    parse_geojson,
    parse_wkt,
    wkt_geometry,
)

T = table("crashes_v1", column("fid", BigInteger), column("severity", Text),
          column("vehicles", BigInteger), column("area", Float), column("date", Date),
          column("shelter", Boolean), column("geom"), schema="data")
QUERYABLES = {
    "severity": cql2.Queryable("severity", T.c.severity, "string"),
    "vehicles": cql2.Queryable("vehicles", T.c.vehicles, "integer"),
    "area": cql2.Queryable("area", T.c.area, "number"),
    "date": cql2.Queryable("date", T.c.date, "date"),
    "shelter": cql2.Queryable("shelter", T.c.shelter, "boolean"),
    "geometry": cql2.Queryable("geometry", T.c.geom, "geometry"),
    "id": cql2.Queryable("id", T.c.fid, "integer"),
}
CRS84 = ogc_crs("CRS84")


def compile_(text: str | dict[str, Any], lang: str | None = None) -> tuple[str, dict[str, Any]]:
    lang = lang or ("cql2-json" if isinstance(text, dict) else "cql2-text")
    expr = cql2.compile_filter(cql2.parse(text, lang), QUERYABLES,
                               geometry_sql=lambda g: geojson_geometry(g, CRS84),
                               bbox_sql=lambda b: envelope(b, CRS84))
    c = expr.compile(dialect=postgresql.psycopg.dialect(),
                     compile_kwargs={"render_postcompile": True})
    return str(c), dict(c.params)


def error(text: str | dict[str, Any], lang: str | None = None) -> str:
    with pytest.raises(cql2.FilterError) as exc:
        compile_(text, lang)
    return str(exc.value)


# ---- what things compile to ---------------------------------------------------------------

@pytest.mark.parametrize("text,sql_has", [
    ("severity = 'fatal'", "data.crashes_v1.severity = %(f"),
    ("vehicles > 2", "vehicles > %(f"),
    ("severity LIKE 'fat%'", "LIKE %(f"),
    ("CASEI(severity) = CASEI('X')", "lower(data.crashes_v1.severity) = lower(%(f"),
    ("vehicles IN (1, 2)", "vehicles IN (%(f"),
    ("vehicles BETWEEN 1 AND 3", "BETWEEN %(f"),
    ("date IS NULL", "date IS NULL"),
    ("NOT shelter", "NOT data.crashes_v1.shelter"),
    ("vehicles / 2 > 1", "AS FLOAT) / CAST(nullif(CAST("),
    ("vehicles % 2 = 1", "mod(CAST("),
    ("vehicles div 2 = 1", "div(CAST("),
    ("vehicles ^ 2 > 1", "power("),
    ("S_INTERSECTS(geometry, POINT(1 2))", "ST_Intersects(data.crashes_v1.geom, "
                                           "ST_SetSRID(ST_GeomFromGeoJSON(%(param_1)s"),
    ("S_WITHIN(geometry, BBOX(1, 2, 3, 4))", "ST_Within(data.crashes_v1.geom, ST_MakeEnvelope("),
    ("T_AFTER(date, DATE('2023-01-01'))", "::DATE < data.crashes_v1.date"),
    ("vehicles > area", "vehicles > data.crashes_v1.area"),
])
def test_constructs(text: str, sql_has: str) -> None:
    sql, _ = compile_(text)
    assert sql_has in sql, sql


def test_user_text_only_travels_as_parameters() -> None:
    evil = "x'); DROP TABLE catalog.datasets; --"
    for text in (f"severity = '{evil.replace(chr(39), chr(39) * 2)}'",
                 f"severity LIKE '{evil.replace(chr(39), chr(39) * 2)}%'",
                 f"severity IN ('a', '{evil.replace(chr(39), chr(39) * 2)}')"):
        sql, params = compile_(text)
        assert "DROP" not in sql and ";" not in sql
        assert any(evil in str(v) for v in params.values())
    sql, params = compile_({"op": "s_intersects", "args": [
        {"property": "geometry"}, {"type": "Point", "coordinates": [1, 2]}]})
    assert "coordinates" not in sql and any("coordinates" in str(v) for v in params.values())
    assert "unknown property" in error(f'"{evil}" = 1')


def test_whole_numbers_bind_as_bigint_for_the_index() -> None:
    expr = cql2.compile_filter(cql2.parse("id = 5"), QUERYABLES, geometry_sql=lambda g: g,
                               bbox_sql=lambda b: b)
    right = expr.right
    assert isinstance(right, BindParameter)
    assert right.value == 5 and isinstance(right.value, int)
    assert isinstance(right.type, BigInteger)
    expr = cql2.compile_filter(cql2.parse("area > 2.5"), QUERYABLES, geometry_sql=lambda g: g,
                               bbox_sql=lambda b: b)
    assert isinstance(expr.right.type, Float) and expr.right.value == 2.5


def test_literals_take_the_type_of_the_property() -> None:
    _, params = compile_("date <= '2023-01-31'")
    assert [str(v) for v in params.values()] == ["2023-01-31"]
    assert "is not a date" in error("date = 'soon'")
    assert "not a number" in error("vehicles = 'many'")
    assert "not true or false" in error("shelter = 'yes'")
    assert "cannot compare a date with a" in error("date = vehicles")
    assert "cannot compare a string with a number" in error("severity = 5")
    assert "does not order true and false" in error("shelter > TRUE")


@pytest.mark.parametrize("text,constant", [
    ("T_AFTER(date, INTERVAL('2020-01-01', '..'))", "false"),
    ("T_BEFORE(date, INTERVAL('..', '2020-01-01'))", "false"),
    ("T_CONTAINS(date, INTERVAL('2020-01-01', '2021-01-01'))", None),
    ("T_INTERSECTS(date, INTERVAL('..', '..'))", "IS NOT NULL"),
])
def test_open_interval_ends(text: str, constant: str | None) -> None:
    sql, _ = compile_(text)
    if constant == "false":
        assert "false" in sql.lower() and "date >" not in sql, sql
    elif constant:
        assert constant in sql, sql


def test_every_temporal_function_compiles() -> None:
    for op in cql2.TEMPORAL:
        for other in ("DATE('2023-01-01')", "INTERVAL('2023-01-01', '2023-02-01')",
                      "INTERVAL('..', '2023-02-01')", "INTERVAL(date, '..')"):
            compile_(f"{op.upper()}(date, {other})")
    assert "ends before it starts" in error("T_DURING(date, INTERVAL('2024-01-01', "
                                            "'2023-01-01'))")
    assert "needs dates" in error("T_AFTER(vehicles, DATE('2023-01-01'))")


def test_wrong_arity_and_shapes_are_filter_errors() -> None:
    for expr in ({"op": "not", "args": []},
                 {"op": "between", "args": [{"property": "vehicles"}, 1]},
                 {"op": "in", "args": [{"property": "vehicles"}]},
                 {"op": "isNull", "args": []},
                 {"op": "like", "args": [{"property": "severity"}]},
                 {"op": "s_within", "args": [{"property": "geometry"}]},
                 {"op": "t_after", "args": [{"property": "date"}]},
                 {"op": "t_after", "args": [{"property": "date"}, {"interval": ["2020-01-01"]}]},
                 {"op": "=", "args": [{"op": "+", "args": [1]}, 1]},
                 {"op": "=", "args": [{"op": "casei", "args": []}, "a"]},
                 {"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": [1, 2]}]},
                 {"op": "and", "args": []}, {"op": "=", "args": [1]},
                 {"op": "=", "args": [{"property": "vehicles"}, [1, 2]]},
                 {"op": "in", "args": [{"property": "vehicles"}, []]}):
        assert error(expr), expr


def test_geometry_literals_are_checked() -> None:
    assert "self-intersection" in error(
        "S_INTERSECTS(geometry, POLYGON((0 0, 1 0, 0 1, 1 1, 0 0)))").lower()
    assert "not a valid GeoJSON Polygon" in error({"op": "s_intersects", "args": [
        {"property": "geometry"}, {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}]})
    assert "minimum above" in error("S_INTERSECTS(geometry, BBOX(3, 0, 1, 1))")
    assert "spatial function" in error("geometry = 1")
    assert "is not a geometry" in error("S_INTERSECTS(vehicles, POINT(1 2))")


def test_unsupported_operators_name_what_is() -> None:
    msg = error("A_CONTAINS(severity, ('a'))")
    assert "not supported" in msg and "T_OVERLAPPEDBY" in msg and "S_CROSSES" in msg
    assert "ACCENTI" in error("ACCENTI(severity) = 'x'")


# ---- syntax errors and hostile input ------------------------------------------------------

def test_syntax_errors_give_line_and_column() -> None:
    assert "line 1, column 12" in error("severity = ")
    assert "line 1, column 11" in error("severity == 'x'")
    assert "line 1 column" in error('{"op": ', "cql2-json")
    assert "not a CQL2-JSON expression" in error({"foo": 1})
    assert "boolean expression" in error("5")
    assert "longer than" in error("severity = '" + "x" * 100_001 + "'")


def test_nesting_limits_count_structure_not_strings() -> None:
    # parentheses, operators and NOT inside a string literal are data
    compile_("severity = '" + "(" * 5000 + "NOT = + " * 500 + "'")
    # long flat lists and AND/OR chains stay allowed
    compile_("vehicles IN (" + ", ".join(["1"] * 5000) + ")")
    compile_(" OR ".join(["vehicles = 1"] * 3000))
    compile_("(" * 60 + "vehicles = 1" + ")" * 60)
    assert "more than 100 parentheses" in error("(" * 101 + "vehicles = 1" + ")" * 101)
    assert "nests too deeply" in error("NOT " * 600 + "vehicles = 1")
    assert "nests too deeply" in error("vehicles" + " + 1" * 600 + " = 1")
    deep: Any = {"op": "=", "args": [{"property": "vehicles"}, 1]}
    for _ in range(150):
        deep = {"op": "not", "args": [deep]}
    assert "nested too deeply" in error(deep)
    assert "nested too deeply" in error(json.dumps(deep), "cql2-json")


@pytest.mark.parametrize("text", [
    "(" * 3000 + "x = 1" + ")" * 3000,
    "NOT " * 12000 + "x = 1",
    "x" + "+1" * 12000 + " = 1",
    "x" + "=1" * 8000,
    "CASEI(" * 4000 + "x" + ")" * 4000 + " = 'a'",
    "A_CONTAINS(x, " + "(" * 3000 + "1" + ")" * 3000 + ")",
])
def test_parser_crashing_input_is_refused_before_parsing(text: str) -> None:
    """The cql2 parser dies with SIGSEGV on these (checked in a child process, so a
    regression fails this test instead of killing pytest)."""
    code = textwrap.dedent("""
        import sys
        from geo import cql2
        try:
            cql2.parse(sys.stdin.read(), "cql2-text")
        except cql2.FilterError as exc:
            print("refused:", exc)
    """)
    r = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, f"the process died ({r.returncode}): {r.stderr[-500:]}"
    assert r.stdout.startswith("refused:"), r.stdout


# ---- geometry literals and bboxes in other CRSs (geo/sql.py) ------------------------------

def _sql(expr: Any) -> str:
    return str(expr.compile(dialect=postgresql.psycopg.dialect()))


def test_projected_shapes_are_densified_before_reprojection() -> None:
    utm = ogc_crs("EPSG:32639")
    assert "ST_Segmentize" in _sql(envelope([520000, 3940000, 550000, 3960000], utm))
    assert "ST_Segmentize" not in _sql(envelope([51, 35, 52, 36], CRS84))
    assert "ST_Segmentize" not in _sql(envelope([35, 51, 36, 52], ogc_crs("EPSG:4326")))
    poly = {"type": "Polygon", "coordinates": [[[520000, 3940000], [550000, 3940000],
                                                [550000, 3960000], [520000, 3940000]]]}
    assert "ST_Segmentize" in _sql(geojson_geometry(poly, utm))
    assert "ST_FlipCoordinates" in _sql(geojson_geometry(
        {"type": "Point", "coordinates": [35.7, 51.4]}, ogc_crs("EPSG:4326")))
    assert "ST_Segmentize" in _sql(wkt_geometry("LINESTRING(520000 3940000, 550000 3960000)",
                                                utm))


def test_geometry_parsers_explain_what_is_wrong() -> None:
    with pytest.raises(GeometryError, match="not valid WKT"):
        parse_wkt("POLYGON((0 0, 1 1))")
    with pytest.raises(GeometryError, match="Self-intersection"):
        parse_wkt("POLYGON((0 0, 1 0, 0 1, 1 1, 0 0))")
    with pytest.raises(GeometryError, match="not a GeoJSON geometry"):
        parse_geojson([1, 2])
    with pytest.raises(GeometryError, match="not a valid GeoJSON Point"):
        parse_geojson({"type": "Point", "coordinates": "here"})
    assert parse_geojson({"type": "Point", "coordinates": [1, 2]}).x == 1
    assert parse_wkt("POINT EMPTY").is_empty
