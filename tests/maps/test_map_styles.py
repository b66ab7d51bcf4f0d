"""Style choice from the data: the land-use palette for land-use-like columns (English and
Persian values), classed choropleths (quantiles vs natural breaks, from mapclassify),
clustered points, weighted lines, and clear errors for impossible specs."""

from __future__ import annotations

import random

import mapclassify
import pytest

from maps import palettes
from maps.spec import Field, Layer, MapSpec, SpecError
from maps.styles import choose_style

LANDUSE_EN = ["residential", "commercial", "industrial", "green space", "education", "mixed"]
LANDUSE_FA = ["مسکونی", "تجاری", "صنعتی", "فضای سبز", "آموزشی", "مختلط"]


def square(x: float, y: float, d: float = 0.001) -> dict:
    return {"type": "Polygon", "coordinates": [[[x, y], [x + d, y], [x + d, y + d], [x, y + d],
                                                [x, y]]]}


def polygons(props: list[dict], fields: tuple[Field, ...], slug: str = "parcels") -> Layer:
    feats = [{"type": "Feature", "id": i, "geometry": square(51 + i * 0.002, 35.7),
              "properties": p} for i, p in enumerate(props)]
    return Layer(slug=slug, title="Parcels", geometry="polygon", fields=fields,
                 bounds=(51, 35.7, 51 + len(props) * 0.002, 35.701),
                 features={"type": "FeatureCollection", "features": feats})


def points(props: list[dict], fields: tuple[Field, ...]) -> Layer:
    feats = [{"type": "Feature", "id": i,
              "geometry": {"type": "Point", "coordinates": [51 + i * 0.01, 35.7]},
              "properties": p} for i, p in enumerate(props)]
    return Layer(slug="pts", title="Points", geometry="point", fields=fields,
                 features={"type": "FeatureCollection", "features": feats})


def lines(props: list[dict], fields: tuple[Field, ...]) -> Layer:
    feats = [{"type": "Feature", "id": i,
              "geometry": {"type": "LineString",
                           "coordinates": [[51 + i * 0.01, 35.7], [51 + i * 0.01, 35.8]]},
              "properties": p} for i, p in enumerate(props)]
    return Layer(slug="roads", title="Roads", geometry="line", fields=fields,
                 features={"type": "FeatureCollection", "features": feats})


PARCEL_FIELDS = (Field("parcel_id", "integer", "شناسه", "Parcel id", is_key=True),
                 Field("owner", "string", "مالک", "Owner"),
                 Field("landuse", "string", "کاربری", "Land use"),
                 Field("area_m2", "number", "مساحت", "Area", unit="m2"))


def parcel_rows(n: int = 60, seed: int = 7, values: list[str] = LANDUSE_EN) -> list[dict]:
    rng = random.Random(seed)
    return [{"parcel_id": i, "owner": rng.choice(["public", "private", "waqf"]),
             "landuse": values[i % len(values)], "area_m2": rng.lognormvariate(6, 1)}
            for i in range(n)]


def test_landuse_column_gets_the_landuse_palette_automatically() -> None:
    style = choose_style(polygons(parcel_rows(), PARCEL_FIELDS), MapSpec())
    assert style.kind == "categories" and style.column == "landuse" and style.landuse
    colours = {cls.key: cls.color for cls in palettes.LANDUSE_CLASSES}
    assert style.color({"landuse": "residential"}) == colours["residential"]
    assert style.color({"landuse": "commercial"}) == colours["commercial"]
    assert style.color({"landuse": "green space"}) == colours["green"]
    assert style.color({"landuse": "something else"}) == palettes.OTHER_COLOR
    # the legend lists the classes present, in the palette's order, with their colours
    labels = [e.label for e in style.entries]
    assert labels == ["Residential", "Commercial", "Mixed use", "Industrial", "Green space",
                      "Education"]
    assert [e.color for e in style.entries][:2] == [colours["residential"],
                                                    colours["commercial"]]


def test_conventional_landuse_hues() -> None:
    """Residential yellow, commercial red, industrial purple, green space green, education
    blue: check the hue of each colour rather than trusting the table."""
    import colorsys

    def hue(hex_colour: str) -> float:
        r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
        return colorsys.rgb_to_hsv(r, g, b)[0] * 360

    by_key = {cls.key: cls.color for cls in palettes.LANDUSE_CLASSES}
    assert 40 <= hue(by_key["residential"]) <= 65  # yellow
    assert hue(by_key["commercial"]) <= 15 or hue(by_key["commercial"]) >= 345  # red
    assert 250 <= hue(by_key["industrial"]) <= 290  # purple
    assert 90 <= hue(by_key["green"]) <= 150  # green
    assert 200 <= hue(by_key["education"]) <= 235  # blue


def test_persian_landuse_values_and_letter_forms_map_to_the_same_colours() -> None:
    # Arabic yeh/kaf forms and a ZWNJ-less spelling, as exports from older software write them
    arabic = [v.replace("ی", "ي").replace("ک", "ك") for v in LANDUSE_FA]
    rows = parcel_rows(values=arabic)
    style = choose_style(polygons(rows, PARCEL_FIELDS), MapSpec(lang="fa"))
    assert style.landuse and style.column == "landuse"
    assert style.color({"landuse": "مسكوني"}) == palettes.landuse_class("residential").color
    assert style.color({"landuse": "تجاري"}) == palettes.landuse_class("commercial").color
    assert [e.label for e in style.entries][:2] == ["مسکونی", "تجاری"]
    assert palettes.landuse_class("حمل‌ونقل") is palettes.landuse_class("حمل و نقل") \
        is palettes.landuse_class("Transport")


def test_other_categories_get_a_qualitative_palette_and_fa_labels_from_the_twin_column() -> None:
    fields = (Field("crash_id", "integer", is_key=True), Field("severity", "string"),
              Field("severity_fa", "string"), Field("injuries", "integer"))
    sev = [("fatal", "فوتی"), ("injury", "جرحی"), ("damage", "خسارتی")]
    rows = [{"crash_id": i, "severity": sev[i % 3][0], "severity_fa": sev[i % 3][1],
             "injuries": i % 4} for i in range(30)]
    style = choose_style(points(rows, fields), MapSpec(lang="fa"))
    assert style.kind == "categories" and style.column == "severity" and not style.landuse
    assert len({style.color({"severity": s}) for s, _ in sev}) == 3
    assert {e.label for e in style.entries} == {"فوتی", "جرحی", "خسارتی"}
    assert style.cluster, "embedded points are clustered by default"


@pytest.mark.filterwarnings("ignore:Numba not installed")
def test_quantiles_and_natural_breaks_follow_mapclassify() -> None:
    rows = parcel_rows(n=250, seed=3)
    y = [r["area_m2"] for r in rows]
    layer = polygons(rows, PARCEL_FIELDS)
    q = choose_style(layer, MapSpec(column="area_m2", classify="quantiles", k=5))
    nb = choose_style(layer, MapSpec(column="area_m2", classify="natural_breaks", k=5))
    assert q.kind == nb.kind == "choropleth"
    assert list(q.bins) == pytest.approx(list(mapclassify.Quantiles(y, k=5).bins))
    assert list(nb.bins) == pytest.approx(list(mapclassify.FisherJenks(y, k=5).bins))
    assert list(q.bins) != pytest.approx(list(nb.bins)), "skewed data: different breaks"
    # quantiles put about the same number of features in each class
    counts = [sum(1 for v in y if lo < v <= hi) for lo, hi in
              zip([float("-inf"), *q.bins[:-1]], q.bins, strict=True)]
    assert max(counts) - min(counts) <= 2
    assert len(q.entries) == len(q.colors) == 5
    assert q.color({"area_m2": min(y)}) == q.colors[0]
    assert q.color({"area_m2": max(y)}) == q.colors[-1]
    assert q.color({"area_m2": None}) == palettes.NO_DATA_COLOR


def test_natural_breaks_on_many_values_uses_an_even_sample_and_covers_the_range() -> None:
    rng = random.Random(11)
    rows = [{"parcel_id": i, "owner": "x", "landuse": "residential",
             "area_m2": rng.expovariate(1 / 500)} for i in range(6000)]
    style = choose_style(polygons(rows, PARCEL_FIELDS),
                         MapSpec(column="area_m2", classify="natural_breaks", k=4))
    assert len(style.bins) == 4
    assert style.bins[-1] == max(r["area_m2"] for r in rows)
    assert list(style.bins) == sorted(style.bins)


def test_fewer_distinct_values_than_classes_gives_one_class_each() -> None:
    rows = [{"parcel_id": i, "owner": "x", "landuse": "residential", "area_m2": float(i % 3)}
            for i in range(30)]
    style = choose_style(polygons(rows, PARCEL_FIELDS), MapSpec(column="area_m2", k=7))
    assert list(style.bins) == [0.0, 1.0, 2.0]
    assert [e.label for e in style.entries] == ["0", "1", "2"]


def test_persian_legend_numbers_use_persian_digits() -> None:
    rows = [{"parcel_id": i, "owner": "x", "landuse": "residential", "area_m2": 1000.0 * i}
            for i in range(1, 50)]
    style = choose_style(polygons(rows, PARCEL_FIELDS),
                         MapSpec(column="area_m2", k=3, lang="fa"))
    assert all(not any(c.isascii() and c.isdigit() for c in e.label) for e in style.entries)
    assert "۱" in style.entries[0].label


def test_lines_are_weighted_by_a_volume_column() -> None:
    fields = (Field("road_id", "integer", is_key=True), Field("lanes", "integer"),
              Field("aadt", "integer", "تردد", "AADT", unit="vehicles/day"))
    rows = [{"road_id": i, "lanes": 2 + i % 3, "aadt": 1000 * (i + 1) ** 2} for i in range(25)]
    style = choose_style(lines(rows, fields), MapSpec())
    assert style.weight_column == "aadt"
    assert style.column == "aadt" and style.kind == "choropleth"
    widths = [style.width(r) for r in rows]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    assert style.leaflet(rows[-1], "line")["weight"] == widths[-1]
    assert style.weight_entries and style.weight_entries[0].width < \
        style.weight_entries[-1].width


def test_colour_column_is_used_as_the_colour() -> None:
    fields = (Field("line_no", "integer", is_key=True), Field("name_en", "string"),
              Field("colour", "string"))
    rows = [{"line_no": 1, "name_en": "Line 1", "colour": "#e0301e"},
            {"line_no": 2, "name_en": "Line 2", "colour": "#1f77b4"}]
    style = choose_style(lines(rows, fields), MapSpec())
    assert style.column == "colour"
    assert style.color(rows[0]) == "#e0301e" and style.color(rows[1]) == "#1f77b4"
    assert [e.label for e in style.entries] == ["Line 1", "Line 2"]


def test_a_palette_and_style_can_be_forced() -> None:
    layer = polygons(parcel_rows(), PARCEL_FIELDS)
    blues = choose_style(layer, MapSpec(column="area_m2", palette="Blues", k=4))
    assert list(blues.colors) == palettes.colors("Blues", 4)
    plain = choose_style(layer, MapSpec(style="plain"))
    assert plain.kind == "plain" and plain.color({"landuse": "residential"}) == \
        palettes.PLAIN_COLOR
    owners = choose_style(layer, MapSpec(style="categories", column="owner"))
    assert owners.kind == "categories" and not owners.landuse and len(owners.entries) == 3


@pytest.mark.parametrize(("spec", "parameter"), [
    (MapSpec(column="nope"), "column"),
    (MapSpec(style="choropleth", column="owner"), "column"),
    (MapSpec(heat=True), "heat"),
    (MapSpec(cluster=True), "cluster"),
    (MapSpec(weight="area_m2"), "weight"),
    (MapSpec(column="area_m2", palette="landuse"), "palette"),
])
def test_impossible_specs_name_the_parameter(spec: MapSpec, parameter: str) -> None:
    with pytest.raises(SpecError) as err:
        choose_style(polygons(parcel_rows(), PARCEL_FIELDS), spec)
    assert err.value.parameter == parameter


@pytest.mark.parametrize(("params", "parameter"), [
    ({"style": "fancy"}, "style"), ({"classify": "jenks"}, "classify"), ({"k": "1"}, "k"),
    ({"k": "ten"}, "k"), ({"palette": "Rainbow"}, "palette"), ({"heat": "maybe"}, "heat"),
    ({"basemap": "ftp://x/{z}/{x}/{y}"}, "basemap"), ({"basemap": "https://t.org/a.png"},
                                                      "basemap"),
    ({"lang": "de"}, "lang"),
])
def test_bad_parameters_are_refused_with_what_is_accepted(params: dict, parameter: str) -> None:
    with pytest.raises(SpecError) as err:
        MapSpec.from_params(params, palettes=palettes.palette_names())
    assert err.value.parameter == parameter
    assert "accepted" in str(err.value)


def test_good_parameters_parse() -> None:
    spec = MapSpec.from_params({"style": "choropleth", "column": "area_m2",
                                "classify": "natural_breaks", "k": "7", "palette": "YlGnBu",
                                "heat": "true", "cluster": "false",
                                "basemap": "https://tiles.example.org/{z}/{x}/{y}.png"},
                               palettes=palettes.palette_names())
    assert (spec.style, spec.column, spec.classify, spec.k, spec.palette, spec.heat,
            spec.cluster) == ("choropleth", "area_m2", "natural_breaks", 7, "YlGnBu", True,
                              False)
    assert spec.basemap.startswith("https://tiles.example.org/")


def test_tiled_layers_are_styled_from_their_sample_and_the_js_function_matches() -> None:
    rows = parcel_rows()
    layer = Layer(slug="parcels", title="Parcels", geometry="polygon", fields=PARCEL_FIELDS,
                  tiles="http://127.0.0.1/collections/parcels/tiles/WebMercatorQuad/{z}/{x}/{y}",
                  sample=rows)
    style = choose_style(layer, MapSpec())
    assert style.landuse and not style.cluster
    js = style.js_function("polygon")
    for cls in palettes.LANDUSE_CLASSES:  # every palette colour reaches the tiles
        assert cls.color in js
    assert '"column": "landuse"' in js
