"""What a client sends is checked before anything reads it (etl/uploads.py): the file type is
sniffed from real files' bytes, names that lie are refused, archives are checked for path
traversal, symlinks, encryption, member count and zip bombs (declared and real sizes), the
size limit is counted while copying, and URLs are fetched only from http(s) public hosts."""

from __future__ import annotations

import gzip
import io
import sqlite3
import stat
import zipfile
from pathlib import Path

import geopandas as gpd
import pytest
from publishing_support import FileServer
from shapely.geometry import Point

from etl.uploads import (
    Limits,
    UploadError,
    check_file,
    check_url,
    check_zip,
    copy_limited,
    fetch,
    sniff,
    unsafe_name,
)

BIG = Limits(max_bytes=50 << 20, max_unzipped_bytes=200 << 20)
GEOJSON = (b'{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
           b'{"id": 1}, "geometry": {"type": "Point", "coordinates": [51.4, 35.7]}}]}')
KML = (b'<?xml version="1.0" encoding="UTF-8"?>\n<kml xmlns="http://www.opengis.net/kml/2.2">'
       b"<Document><Placemark><Point><coordinates>51.4,35.7</coordinates></Point></Placemark>"
       b"</Document></kml>")


@pytest.fixture(scope="module")
def frame() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"id": [1, 2], "name": ["الف", "ب"]},
                            geometry=[Point(51.4, 35.7), Point(51.5, 35.8)], crs="EPSG:4326")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, frame: gpd.GeoDataFrame) -> dict[str, Path]:
    """Real files of every accepted kind, written by GDAL, plus a zipped Shapefile."""
    d = tmp_path_factory.mktemp("uploads")
    out = {
        "gpkg": d / "stops.gpkg", "flatgeobuf": d / "stops.fgb", "shp": d / "stops.shp",
        "geojson": d / "stops.geojson", "kml": d / "stops.kml", "csv": d / "stops.csv",
    }
    frame.to_file(out["gpkg"], driver="GPKG")
    frame.to_file(out["flatgeobuf"], driver="FlatGeobuf")
    frame.to_file(out["shp"])
    frame.to_file(out["geojson"], driver="GeoJSON")
    out["kml"].write_bytes(KML)
    out["csv"].write_text("id;name;lon;lat\n1;الف;51.4;35.7\n", encoding="utf-8")
    out["zip"] = d / "stops.zip"
    with zipfile.ZipFile(out["zip"], "w", zipfile.ZIP_DEFLATED) as zf:
        for part in sorted(d.glob("stops.*")):
            if part.suffix in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
                zf.write(part, f"data/{part.name}")
    return out


def head(path: Path) -> bytes:
    return path.read_bytes()[:65536]


@pytest.mark.parametrize("kind", ["gpkg", "flatgeobuf", "geojson", "kml", "csv", "zip"])
def test_accepted_kinds_are_sniffed_from_their_bytes(files: dict[str, Path], kind: str) -> None:
    assert sniff(head(files[kind])) == kind


def test_check_file_says_what_to_load(files: dict[str, Path]) -> None:
    shp = check_file(files["zip"], filename="stops.zip", limits=BIG)
    assert (shp.kind, shp.format, shp.member, shp.ext) == ("zip", "shapefile",
                                                          "data/stops.shp", ".zip")
    gpkg = check_file(files["gpkg"], filename="anything", limits=BIG)
    assert (gpkg.format, gpkg.member, gpkg.ext) == ("gpkg", None, ".gpkg")
    # No name at all: the content decides.
    assert check_file(files["flatgeobuf"], filename=None, limits=BIG).format == "flatgeobuf"


@pytest.mark.parametrize(("data", "says"), [
    (gzip.compress(b"a,b\n1,2\n"), "gzip"),
    (b"%PDF-1.7\n%\xe2\xe3", "PDF"),
    (b"<!DOCTYPE html><html><body>Not found</body></html>", "HTML page"),
    (b'<?xml version="1.0"?><gml:FeatureCollection/>', "XML but not KML"),
    (b'{"name": "not geojson", "rows": [1, 2]}', "JSON but not GeoJSON"),
    (b"just some words\nno delimiters here\n", "not CSV"),
    (b"   \n", "empty"),
    (b"\x01\x02\x00\x00binary\x00junk", "binary data"),
    (b"MZ\x90\x00\x03", "Windows program"),
])
def test_other_files_are_refused_with_what_they_look_like(data: bytes, says: str) -> None:
    with pytest.raises(UploadError) as e:
        sniff(data)
    assert e.value.status == 415
    assert says in str(e.value)
    assert "accepted" in str(e.value) or says in ("empty",)


def test_a_bare_shapefile_part_is_refused_with_advice(files: dict[str, Path]) -> None:
    with pytest.raises(UploadError, match=r"bare Shapefile .shp.*zip archive"):
        sniff(head(files["shp"]))
    with pytest.raises(UploadError, match=r"bare \.dbf"):
        sniff(head(files["shp"].with_suffix(".dbf")))


def test_sqlite_that_is_not_a_geopackage_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "x.gpkg"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (a int)")
    with pytest.raises(UploadError, match=r"SQLite database but not a GeoPackage"):
        check_file(db, filename="x.gpkg", limits=BIG)


def test_a_name_that_lies_about_the_content_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(UploadError) as e:
        check_file(files["zip"], filename="stops.geojson", limits=BIG)
    assert e.value.status == 415
    assert "'stops.geojson' is named like GeoJSON but its content is a zip archive" in str(e.value)
    with pytest.raises(UploadError, match=r"named like CSV text but its content is GeoJSON"):
        check_file(files["geojson"], filename="stops.csv", limits=BIG)


def test_the_manifests_declared_format_must_match(files: dict[str, Path]) -> None:
    with pytest.raises(UploadError, match=r"source.format is csv but the upload is gpkg"):
        check_file(files["gpkg"], filename="stops.gpkg", limits=BIG, declared_format="csv")
    ok = check_file(files["zip"], filename="s.zip", limits=BIG, declared_format="shapefile")
    assert ok.member == "data/stops.shp"


# ---- archives ----------------------------------------------------------------------------------

def make_zip(path: Path, members: dict[str, bytes], *,
             compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("name", ["../evil.csv", "data/../../evil.csv", "/etc/evil.csv",
                                  "C:\\evil.csv", "..\\..\\evil.csv"])
def test_path_traversal_in_an_archive_is_refused(tmp_path: Path, name: str) -> None:
    z = make_zip(tmp_path / "t.zip", {"ok.csv": b"a,b\n1,2\n", name: b"a,b\n"})
    assert unsafe_name(name) is not None
    with pytest.raises(UploadError) as e:
        check_zip(z, BIG)
    assert e.value.status == 422
    assert repr(name) in str(e.value) and "refused" in str(e.value)


def test_safe_names_pass() -> None:
    for name in ("a.csv", "data/b.shp", "x..y.csv", "deep/dir/c.gpkg"):
        assert unsafe_name(name) is None


def test_a_symlink_in_an_archive_is_refused(tmp_path: Path) -> None:
    z = tmp_path / "link.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("data.csv")
        info.create_system = 3  # unix
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UploadError, match=r"'data.csv' is a symbolic link"):
        check_zip(z, BIG)


def test_an_encrypted_member_is_refused(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "enc.zip", {"secret.csv": b"a,b\n1,2\n"})
    raw = bytearray(z.read_bytes())
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
        i = raw.index(sig)
        raw[i + flag_at] |= 0x1
    z.write_bytes(bytes(raw))
    with pytest.raises(UploadError, match=r"'secret.csv' is encrypted"):
        check_zip(z, BIG)


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "many.zip", {f"f{i}.csv": b"a,b\n" for i in range(6)})
    assert len(check_zip(z, Limits(1 << 20, 1 << 20, max_members=6))) == 6
    with pytest.raises(UploadError, match=r"has 6 members, more than the 5 accepted"):
        check_zip(z, Limits(1 << 20, 1 << 20, max_members=5))


def test_a_zip_bomb_is_refused_by_its_total_size(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "bomb.zip", {"zeros.csv": b"0" * (5 << 20)})
    assert z.stat().st_size < 100_000  # tiny on disk...
    with pytest.raises(UploadError, match=r"unpacks to more than 1 MB.*zip bomb"):
        check_zip(z, Limits(max_bytes=1 << 20, max_unzipped_bytes=1 << 20))


def test_a_zip_bomb_is_refused_by_its_ratio(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "ratio.zip", {"zeros.csv": b"0" * (4 << 20)})
    limits = Limits(max_bytes=1 << 20, max_unzipped_bytes=100 << 20, max_ratio=100,
                    ratio_floor=1 << 20)
    with pytest.raises(UploadError, match=r"unpacks to \d+ times its compressed size"):
        check_zip(z, limits)
    # The same data below the floor is fine (small files compress well, harmlessly).
    check_zip(z, Limits(1 << 20, 100 << 20, max_ratio=100, ratio_floor=8 << 20))


def test_an_archive_that_lies_about_its_sizes_is_refused(tmp_path: Path) -> None:
    """A bomb that declares small sizes in its headers: the real sizes are measured."""
    z = make_zip(tmp_path / "liar.zip", {"zeros.csv": b"0" * (3 << 20)})
    raw = bytearray(z.read_bytes())
    small = (1000).to_bytes(4, "little")
    for sig, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = raw.index(sig)
        raw[i + size_at:i + size_at + 4] = small
    z.write_bytes(bytes(raw))
    with zipfile.ZipFile(z) as zf:
        assert zf.infolist()[0].file_size == 1000
    with pytest.raises(UploadError, match=r"damaged|zip bomb"):
        check_zip(z, Limits(max_bytes=1 << 20, max_unzipped_bytes=2 << 20))


def test_a_damaged_archive_is_refused(tmp_path: Path, files: dict[str, Path]) -> None:
    cut = tmp_path / "cut.zip"
    cut.write_bytes(files["zip"].read_bytes()[:-200])
    with pytest.raises(UploadError, match=r"not a valid zip archive"):
        check_file(cut, filename="cut.zip", limits=BIG)


def test_the_member_to_load_must_be_unambiguous_and_complete(tmp_path: Path,
                                                            files: dict[str, Path]) -> None:
    two = make_zip(tmp_path / "two.zip", {"a.geojson": GEOJSON, "b.geojson": GEOJSON})
    with pytest.raises(UploadError, match=r"several data files .*source.member"):
        check_file(two, filename=None, limits=BIG)
    assert check_file(two, filename=None, limits=BIG, member="B.geojson").member == "b.geojson"
    with pytest.raises(UploadError, match=r"no member 'c.geojson'"):
        check_file(two, filename=None, limits=BIG, member="c.geojson")
    none = make_zip(tmp_path / "none.zip", {"readme.pdf": b"%PDF-1.4"})
    with pytest.raises(UploadError, match=r"no data file"):
        check_file(none, filename=None, limits=BIG)
    shp_only = make_zip(tmp_path / "shp.zip", {"p.shp": files["shp"].read_bytes()})
    with pytest.raises(UploadError, match=r"comes without its .shx and .dbf"):
        check_file(shp_only, filename=None, limits=BIG)
    fake = make_zip(tmp_path / "fake.zip", {"p.geojson": b"\x89PNG\r\n\x1a\n"})
    with pytest.raises(UploadError, match=r"PNG image"):
        check_file(fake, filename=None, limits=BIG)


def test_a_kmz_is_a_zip_with_kml_inside(tmp_path: Path) -> None:
    kmz = make_zip(tmp_path / "places.kmz", {"doc.kml": KML})
    got = check_file(kmz, filename="places.kmz", limits=BIG)
    assert (got.format, got.member) == ("kml", "doc.kml")


# ---- sizes and URLs ----------------------------------------------------------------------------

def test_copy_limited_counts_while_copying() -> None:
    out = io.BytesIO()
    assert copy_limited([b"a" * 600, b"b" * 424], out, 1024) == 1024
    out = io.BytesIO()
    with pytest.raises(UploadError) as e:
        copy_limited(iter([b"a" * 600, b"b" * 425, b"never read"]), out, 1024)
    assert e.value.status == 413 and "SHAHR_MAX_UPLOAD_MB" in str(e.value)
    assert len(out.getvalue()) == 600  # stopped at the chunk that crossed the limit


def test_check_file_refuses_a_file_over_the_limit(tmp_path: Path) -> None:
    f = tmp_path / "big.csv"
    f.write_bytes(b"a,b\n" + b"1,2\n" * 300_000)
    with pytest.raises(UploadError) as e:
        check_file(f, filename="big.csv", limits=Limits(max_bytes=1 << 20,
                                                        max_unzipped_bytes=1 << 20))
    assert e.value.status == 413


@pytest.mark.parametrize(("url", "says"), [
    ("ftp://example.org/a.zip", "only http:// and https://"),
    ("file:///etc/passwd", "only http:// and https://"),
    ("/relative/path.csv", "relative URL"),
    ("http://127.0.0.1:8000/x.csv", "private, loopback or reserved"),
    ("http://10.1.2.3/x.csv", "private, loopback or reserved"),
    ("http://169.254.169.254/latest/meta-data", "private, loopback or reserved"),
    ("http://[::1]/x.csv", "private, loopback or reserved"),
])
def test_urls_are_refused_unless_http_and_public(url: str, says: str) -> None:
    with pytest.raises(UploadError) as e:
        check_url(url)
    assert e.value.status == 400 and says in str(e.value)


def test_private_hosts_can_be_allowed() -> None:
    assert check_url("http://127.0.0.1:8000/x.csv", allow_private=True).port == 8000


def test_fetch_keeps_the_limit_and_checks_redirects(tmp_path: Path) -> None:
    server = FileServer()
    try:
        server.files["/small.geojson"] = GEOJSON
        server.files["/big.csv"] = b"a,b\n" + b"1,2\n" * 1000
        got = fetch(f"{server.base}/small.geojson", tmp_path, BIG, allow_private=True)
        assert got.path.read_bytes() == GEOJSON and got.filename == "small.geojson"
        assert sniff(got.path.read_bytes()) == "geojson"
        with pytest.raises(UploadError) as e:
            fetch(f"{server.base}/big.csv", tmp_path / "big", Limits(2000, 2000),
                  allow_private=True)
        assert e.value.status == 413
        assert not list((tmp_path / "big").iterdir())  # the partial download is gone
        moved = fetch(f"{server.base}/redirect?to=/small.geojson", tmp_path, BIG,
                      allow_private=True)
        assert moved.url.endswith("/small.geojson")
        with pytest.raises(UploadError, match=r"HTTP 404"):
            fetch(f"{server.base}/missing.csv", tmp_path, BIG, allow_private=True)
        # Not allowed to reach loopback: refused before any connection is made.
        with pytest.raises(UploadError, match=r"private, loopback"):
            fetch(f"{server.base}/small.geojson", tmp_path, BIG)
    finally:
        server.close()
