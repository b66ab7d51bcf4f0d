"""Versions, changes between versions and the Frictionless data package, over real HTTP
against real loads: a private dataset is loaded from GeoJSON files written here, reloaded
with features added, removed and edited, and the change report must be exact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from frictionless import Package, Resource, Schema, validate

from catalog.settings import Settings
from etl.manifest import load_manifest
from etl.runner import RunResult, run_job
from etl.source import fingerprint
from support import write_manifest

FIELDS = [
    {"source": "code", "type": "integer", "label": {"fa": "کد", "en": "Code"}},
    {"source": "name", "type": "string", "label": {"fa": "نام", "en": "Name"},
     "description": {"fa": "نام محل", "en": "The place's name"}},
    {"source": "amount", "type": "number", "unit": "m2",
     "label": {"fa": "مقدار", "en": "Amount"}},
]

# Version 1: codes 1..6. Version 2: 2 and 5 removed, 7 and 8 added, 3 renamed, 4 moved,
# 6 renamed and resized, 1 unchanged but now last in the file (its fid changes, not it).
V1 = {c: {"name": f"محل {c}", "amount": c * 10.5, "kind": "a", "xy": (51.30 + c / 100, 35.70)}
      for c in range(1, 7)}
V2 = {
    3: {**V1[3], "name": "محل سه"},
    4: {**V1[4], "xy": (51.3401, 35.7001)},
    6: {**V1[6], "name": "Place six", "amount": 99.25},
    7: {"name": "محل 7", "amount": 70.0, "kind": "b", "xy": (51.37, 35.71)},
    8: {"name": "محل 8", "amount": 80.0, "kind": "b", "xy": (51.38, 35.71)},
    1: V1[1],
}


def write_geojson(path: Path, features: dict[int, dict[str, Any]], *,
                  drop: tuple[str, ...] = (), add: dict[str, Any] | None = None) -> Path:
    feats = []
    for code, f in features.items():
        props = {"code": code, **{k: v for k, v in f.items() if k != "xy" and k not in drop},
                 **(add or {})}
        feats.append({"type": "Feature", "properties": props,
                      "geometry": {"type": "Point", "coordinates": list(f["xy"])}})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats},
                               ensure_ascii=False), encoding="utf-8")
    return path


class Private:
    """A dataset of our own in the shared test database, reloaded at will."""

    def __init__(self, tmp: Path, settings: Settings, url: str, *, key: str | None = "code",
                 slug: str | None = None) -> None:
        self.src = tmp / "places.geojson"
        self.settings, self.url = settings, url
        write_geojson(self.src, V1)
        self.manifest_path = write_manifest(tmp, {"path": str(self.src)}, key=key,
                                            fields=FIELDS if key else None, slug=slug)
        self.slug = load_manifest(self.manifest_path).dataset.slug
        self.checksums: dict[int, str] = {}

    def load(self, settings: Settings | None = None) -> RunResult:
        r = run_job(load_manifest(self.manifest_path), url=self.url,
                    settings=settings or self.settings, force=True)
        assert r.status == "succeeded", r.error
        assert r.version is not None
        self.checksums[r.version] = fingerprint([self.src])
        return r


@pytest.fixture
def places(tmp_path: Path, settings: Settings, database_url: str) -> Private:
    ds = Private(tmp_path, settings, database_url)
    ds.load()
    write_geojson(ds.src, V2)
    ds.load()
    return ds


def get(http: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    r = http.get(path, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def problem(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    for w in words:
        assert w in body["detail"], body
    return body


# --- versions ---------------------------------------------------------------------------------


def test_versions_list_counts_checksums_and_runs(http: httpx.Client, places: Private) -> None:
    body = get(http, f"/datasets/{places.slug}/versions")
    assert body["dataset"] == places.slug and body["key_field"] == "code"
    assert body["current"] == 2 and body["keep_versions"] == 3
    v2, v1 = body["versions"]
    assert (v2["number"], v2["status"], v2["kept"], v2["feature_count"]) == (2, "current",
                                                                           True, 6)
    assert (v1["number"], v1["status"], v1["kept"], v1["feature_count"]) == (1, "previous",
                                                                           True, 6)
    assert v1["checksum"] == places.checksums[1] and v2["checksum"] == places.checksums[2]
    assert v1["checksum"] != v2["checksum"] and v2["checksum_algorithm"] == "sha256"
    assert v2["run"]["status"] == "succeeded" and v2["run"]["rows_loaded"] == 6
    assert v2["run"]["source"] == "places.geojson"  # no server folders
    assert v1["run"]["id"] < v2["run"]["id"]
    assert [f["name"] for f in v2["fields"]] == ["code", "name", "amount", "kind"]
    assert v2["geometry_type"] == "Point" and v2["extent"]["bbox"][0] == pytest.approx(51.31)
    changes = next(lk for lk in v2["links"] if lk["rel"] == "changes")
    assert changes["href"].endswith(f"/datasets/{places.slug}/changes?from=1&to=2")


def test_unknown_dataset_is_a_404(http: httpx.Client, demo_loaded: dict) -> None:
    problem(http.get("/datasets/landuse-parcelz/versions"), 404, "landuse-parcels")
    problem(http.get("/datasets/nope/changes"), 404, "nope")
    problem(http.get("/datasets/nope/datapackage.json"), 404, "nope")


# --- changes ------------------------------------------------------------------------------------


def test_changes_are_exact_after_a_reload(http: httpx.Client, places: Private) -> None:
    body = get(http, f"/datasets/{places.slug}/changes", **{"from": 1, "to": 2})
    assert body["key"] == "code"
    assert body["from"]["number"] == 1 and body["to"]["number"] == 2
    assert body["counts"] == {"added": 2, "removed": 2, "changed": 3, "unchanged": 1}
    assert body["added"] == [7, 8]
    assert body["removed"] == [2, 5]
    changed = {c["key"]: c for c in body["changed"]}
    assert list(changed) == [3, 4, 6]  # ordered by key
    assert changed[3]["fields"] == ["name"]
    assert changed[3]["values"] == {"name": {"old": "محل 3", "new": "محل سه"}}
    assert changed[4]["fields"] == ["geometry"]
    geo = changed[4]["values"]["geometry"]
    assert geo["old"]["coordinates"] == pytest.approx([51.34, 35.70])
    assert geo["new"]["coordinates"] == pytest.approx([51.3401, 35.7001])
    assert changed[6]["fields"] == ["amount", "name"]
    assert changed[6]["values"] == {"amount": {"old": 63.0, "new": 99.25},
                                    "name": {"old": "محل 6", "new": "Place six"}}
    assert body["columns"] == {"compared": ["name", "amount", "kind"], "added": [],
                               "removed": [], "retyped": []}
    assert not any(lk["rel"] == "next" for lk in body["links"])
    # The defaults are the current version and the kept one before it.
    assert get(http, f"/datasets/{places.slug}/changes")["counts"] == body["counts"]
    # Backwards, additions and removals swap.
    back = get(http, f"/datasets/{places.slug}/changes", **{"from": 2, "to": 1})
    assert (back["added"], back["removed"]) == ([2, 5], [7, 8])
    assert [c["key"] for c in back["changed"]] == [3, 4, 6]


def test_changes_page_by_key_and_filter_by_kind(http: httpx.Client, places: Private) -> None:
    path = f"/datasets/{places.slug}/changes"
    first = get(http, path, limit=1)
    assert (first["added"], first["removed"], [c["key"] for c in first["changed"]]) == \
        ([7], [2], [3])
    assert first["counts"]["changed"] == 3  # counts are never paged
    nxt = next(lk["href"] for lk in first["links"] if lk["rel"] == "next")
    second = httpx.get(nxt).json()
    assert (second["added"], second["removed"], [c["key"] for c in second["changed"]]) == \
        ([8], [5], [4])
    third = httpx.get(next(lk["href"] for lk in second["links"] if lk["rel"] == "next")).json()
    assert [c["key"] for c in third["changed"]] == [6] and third["added"] == []
    assert not any(lk["rel"] == "next" for lk in third["links"])
    only = get(http, path, kind="removed")
    assert only["removed"] == [2, 5] and "added" not in only and "changed" not in only


def test_schema_changes_compare_common_columns(http: httpx.Client, places: Private) -> None:
    # Version 3: column `kind` gone, `note` new, and code 1 edited in `kind` only (not
    # comparable any more) and in `note` (new): neither is a change of a common column.
    v3 = {**V2, 7: {**V2[7], "amount": 71.5}}
    write_geojson(places.src, v3, drop=("kind",), add={"note": "تازه"})
    places.load()
    body = get(http, f"/datasets/{places.slug}/changes", **{"from": 2, "to": 3})
    assert body["columns"] == {"compared": ["name", "amount"], "added": ["note"],
                               "removed": ["kind"], "retyped": []}
    assert body["counts"] == {"added": 0, "removed": 0, "changed": 1, "unchanged": 5}
    assert body["changed"] == [{"key": 7, "fields": ["amount"],
                                "values": {"amount": {"old": 70.0, "new": 71.5}}}]


def test_bad_change_requests(http: httpx.Client, places: Private, tmp_path: Path,
                             settings: Settings, database_url: str) -> None:
    path = f"/datasets/{places.slug}/changes"
    problem(http.get(path, params={"from": 9}), 404, "no version 9", "kept versions: 1, 2")
    problem(http.get(path, params={"from": "x"}), 400, "from")
    problem(http.get(path, params={"limit": 0}), 400, "limit")
    problem(http.get(path, params={"limit": 1001}), 400, "limit")
    problem(http.get(path, params={"kind": "moved"}), 400, "moved", "added, removed, changed")
    # Keeping two versions drops version 1's table: it is listed, but cannot be compared.
    write_geojson(places.src, V1)
    places.load(settings.model_copy(update={"keep_versions": 2}))
    versions = get(http, f"/datasets/{places.slug}/versions")["versions"]
    assert [(v["number"], v["status"], v["kept"]) for v in versions] == [
        (3, "current", True), (2, "previous", True), (1, "dropped", False)]
    assert versions[2]["checksum"] == places.checksums[1]  # still listed in full
    problem(http.get(path, params={"from": 1}), 404, "version 1", "dropped",
            "SHAHR_KEEP_VERSIONS", "kept versions: 2, 3")
    # v1 and v3 hold the same data: 3 -> 2 is the reverse of 1 -> 2.
    assert get(http, path, **{"from": 3, "to": 2})["added"] == [7, 8]

    # A dataset without a key field cannot say which feature is which.
    for sub in ("k", "s"):
        (tmp_path / sub).mkdir()
    keyless = Private(tmp_path / "k", settings, database_url, key=None)
    keyless.load()
    problem(http.get(f"/datasets/{keyless.slug}/changes"), 400, "no key field", "key:")
    # ... and a dataset with one version has nothing to compare it with.
    single = Private(tmp_path / "s", settings, database_url)
    single.load()
    problem(http.get(f"/datasets/{single.slug}/changes"), 400, "no version older than 1")


# --- the data package ---------------------------------------------------------------------------


def test_datapackage_describes_the_fields(http: httpx.Client, places: Private) -> None:
    pkg = get(http, f"/datasets/{places.slug}/datapackage.json")
    report = Package.validate_descriptor(pkg)
    assert report.valid, report.flatten(["type", "note"])
    assert pkg["name"] == places.slug and pkg["profile"] == "tabular-data-package"
    assert pkg["titles"] == {"fa": "آزمون", "en": places.slug}
    assert pkg["version"] == "2"
    res = pkg["resources"][0]
    assert res["path"].endswith(f"/datasets/{places.slug}/download?format=csv")
    assert res["mediatype"] == "text/csv" and res["profile"] == "tabular-data-resource"
    schema = Schema.from_descriptor(res["schema"])  # frictionless reads it
    assert schema.primary_key == ["code"]
    fields = {f["name"]: f for f in res["schema"]["fields"]}
    # The CSV download's columns, in order: fid, the published fields, lon/lat (points).
    assert list(fields) == ["fid", "code", "name", "amount", "kind", "lon", "lat"]
    assert fields["code"]["type"] == "integer"
    assert fields["code"]["constraints"] == {"required": True, "unique": True}
    assert fields["name"] == {"name": "name", "type": "string", "format": "default",
                              "title": "Name", "description": "The place's name",
                              "titles": {"fa": "نام", "en": "Name"},
                              "descriptions": {"fa": "نام محل", "en": "The place's name"}}
    assert fields["amount"]["type"] == "number" and fields["amount"]["unit"] == "m2"
    assert fields["kind"] == {"name": "kind", "type": "string", "format": "default"}
    assert fields["lon"]["type"] == fields["lat"]["type"] == "number"


def _validate_download(http: httpx.Client, slug: str, folder: Path) -> None:
    """The package's schema against the very CSV the download serves."""
    pkg = get(http, f"/datasets/{slug}/datapackage.json")
    r = http.get(f"/datasets/{slug}/download", params={"format": "csv"})
    if r.status_code == 404 and "no resource at" in r.text:
        pytest.skip("the download endpoint is not part of this build")
    assert r.status_code == 200, r.text
    (folder / f"{slug}.csv").write_bytes(r.content)
    descriptor = {**pkg["resources"][0], "path": f"{slug}.csv"}
    report = validate(Resource(descriptor, basepath=str(folder)))
    assert report.valid, (slug, report.flatten(["rowNumber", "fieldName", "type", "note"]))


def test_datapackage_matches_the_csv_download(http: httpx.Client, places: Private,
                                              tmp_path: Path) -> None:
    _validate_download(http, places.slug, tmp_path)


def test_demo_datapackages_are_valid(http: httpx.Client, demo_loaded: dict,
                                     tmp_path: Path) -> None:
    for slug in ("buildings", "traffic-sensors", "districts", "crashes"):
        pkg = get(http, f"/datasets/{slug}/datapackage.json")
        report = Package.validate_descriptor(pkg)
        assert report.valid, (slug, report.flatten(["type", "note"]))
        _validate_download(http, slug, tmp_path)
    pkg = get(http, "/datasets/buildings/datapackage.json")
    fields = {f["name"]: f for f in pkg["resources"][0]["schema"]["fields"]}
    assert fields["units"]["unit"] == "dwellings"
    assert fields["units"]["titles"] == {"fa": "واحدهای مسکونی", "en": "Housing units"}
    assert fields["geometry"]["type"] == "string"  # WKT: buildings are polygons
    assert pkg["resources"][0]["schema"]["primaryKey"] == ["building_id"]
    assert pkg["licenses"][0]["name"] == "CC-BY-4.0"
