"""Checking what a client sends before anything reads it: the size (counted while streaming),
the file type (sniffed from magic bytes, never trusted from the name), and archives (no path
traversal, symlinks, encryption, too many members, or zip bombs — sizes are verified by
decompressing, not taken from the archive's own directory). Also fetching a URL with the same
limits. Pure functions over bytes and paths, so each rule is tested on its own."""

from __future__ import annotations

import ipaddress
import re
import socket
import stat
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import httpx

from catalog.settings import Settings

# What a sniffed kind means for a job manifest's `source.format` (None: an archive).
KIND_FORMAT = {"zip": None, "gpkg": "gpkg", "flatgeobuf": "flatgeobuf", "geojson": "geojson",
               "kml": "kml", "csv": "csv"}
KIND_EXT = {"zip": ".zip", "gpkg": ".gpkg", "flatgeobuf": ".fgb", "geojson": ".geojson",
            "kml": ".kml", "csv": ".csv"}
KIND_LABEL = {"zip": "a zip archive", "gpkg": "a GeoPackage", "flatgeobuf": "a FlatGeobuf file",
              "geojson": "GeoJSON", "kml": "KML", "csv": "CSV text", "shp": "a bare .shp file",
              "dbf": "a bare .dbf table"}
NAME_KIND = {".zip": "zip", ".kmz": "zip", ".gpkg": "gpkg", ".fgb": "flatgeobuf",
             ".geojson": "geojson", ".json": "geojson", ".kml": "kml", ".csv": "csv",
             ".tsv": "csv", ".txt": "csv", ".shp": "shp", ".dbf": "dbf"}
# Data files looked for inside an archive, and the manifest format each one is.
MEMBER_FORMAT = {".shp": "shapefile", ".gpkg": "gpkg", ".geojson": "geojson",
                 ".json": "geojson", ".kml": "kml", ".csv": "csv", ".tsv": "csv",
                 ".fgb": "flatgeobuf"}
ACCEPTED = ("GeoJSON, GeoPackage, FlatGeobuf, KML, CSV, or a zip archive holding one of these "
            "or a Shapefile (.shp with its .shx and .dbf)")
# Recognisable files that are not accepted, with what to do instead.
REFUSED_MAGIC: list[tuple[bytes, str]] = [
    (b"\x1f\x8b", "a gzip file; unpack it, or send a zip archive"),
    (b"Rar!", "a RAR archive; send a zip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive; send a zip archive"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"PAR1", "a Parquet file"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (xls/doc)"),
    (b"MZ", "a Windows program"),
    (b"\x7fELF", "a program"),
]
GEOJSON_TYPE = re.compile(
    rb'"type"\s*:\s*"(FeatureCollection|Feature|Point|MultiPoint|LineString|MultiLineString|'
    rb'Polygon|MultiPolygon|GeometryCollection)"')
SNIFF_BYTES = 64 * 1024


class UploadError(ValueError):
    """An upload that is refused; `status` is the HTTP status that says why (413 too large,
    415 not an accepted type, 422 an unsafe or unusable archive, 400 a bad URL)."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_unzipped_bytes: int
    max_members: int = 1000
    max_ratio: float = 200.0
    ratio_floor: int = 16 << 20  # the ratio rule applies above this much uncompressed data

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(max_bytes=settings.max_upload_mb << 20,
                   max_unzipped_bytes=settings.max_unzipped_mb << 20)


@dataclass(frozen=True)
class Accepted:
    """What an accepted file is: its kind, the manifest format, and the archive member."""

    kind: str
    format: str
    member: str | None = None

    @property
    def ext(self) -> str:
        return KIND_EXT[self.kind]


def _mb(n: int) -> str:
    return f"{n / (1 << 20):g} MB"


# ---- sizes -------------------------------------------------------------------------------------

def copy_limited(chunks: Iterable[bytes], out: BinaryIO, limit: int) -> int:
    """Write chunks to `out`, refusing (413) as soon as more than `limit` bytes came."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        out.write(chunk)
    return total


def too_large(limit: int) -> UploadError:
    return UploadError(f"the upload is larger than the limit of {_mb(limit)} "
                       "(SHAHR_MAX_UPLOAD_MB)", status=413)


# ---- sniffing ----------------------------------------------------------------------------------

def sniff(head: bytes) -> str:
    """The kind of a file from its first bytes: zip, gpkg, flatgeobuf, geojson, kml or csv;
    anything else is refused (415) with what it looks like and what is accepted."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"SQLite format 3\x00"):
        if head[68:72] in (b"GPKG", b"GP10", b"GP11"):
            return "gpkg"
        raise UploadError("the file is an SQLite database but not a GeoPackage (its "
                          f"application id is not GPKG); accepted: {ACCEPTED}", status=415)
    if head[:3] == b"fgb" and head[4:7] == b"fgb":
        return "flatgeobuf"
    if head[:4] == b"\x00\x00\x27\x0a":
        raise UploadError("the file is a bare Shapefile .shp; send the .shp together with its "
                          ".shx, .dbf (and .prj, .cpg) in one zip archive", status=415)
    for magic, what in REFUSED_MAGIC:
        if head.startswith(magic):
            raise UploadError(f"the file is {what}; accepted: {ACCEPTED}", status=415)
    if not head.strip():
        raise UploadError("the file is empty", status=415)
    if b"\x00" in head:
        if head[:1] in (b"\x03", b"\x83", b"\x8b", b"\xf5", b"\x30"):
            raise UploadError("the file looks like a bare .dbf table; send the Shapefile's "
                              ".shp, .shx and .dbf together in one zip archive", status=415)
        raise UploadError(f"the file is binary data of an unknown kind; accepted: {ACCEPTED}",
                          status=415)
    return _sniff_text(head)


def _sniff_text(head: bytes) -> str:
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    lower = text[:4096].lower()
    if text.startswith(b"<"):
        if b"<kml" in lower:
            return "kml"
        if b"<html" in lower or b"<!doctype html" in lower:
            raise UploadError("the file is an HTML page, not data (did the link point to a web "
                              f"page rather than to the file?); accepted: {ACCEPTED}", status=415)
        raise UploadError(f"the file is XML but not KML; accepted: {ACCEPTED}", status=415)
    if text.startswith((b"{", b"[")):
        if GEOJSON_TYPE.search(text):
            return "geojson"
        raise UploadError('the file is JSON but not GeoJSON (no "type": "FeatureCollection", '
                          f'"Feature" or geometry type); accepted: {ACCEPTED}', status=415)
    first = text.split(b"\n", 1)[0]
    if any(d in first for d in (b",", b";", b"\t", b"|")):
        return "csv"
    raise UploadError("the file is text but not CSV (its first line has no , ; tab or | "
                      f"delimiter); accepted: {ACCEPTED}", status=415)


def kind_from_name(filename: str | None) -> str | None:
    if not filename:
        return None
    return NAME_KIND.get(PurePosixPath(filename.replace("\\", "/")).suffix.lower())


def check_name(filename: str | None, kind: str) -> None:
    """Refuse a file whose name says one type while its content is another."""
    claimed = kind_from_name(filename)
    if claimed is not None and claimed != kind:
        raise UploadError(
            f"{filename!r} is named like {KIND_LABEL.get(claimed, claimed)} but its content "
            f"is {KIND_LABEL[kind]}; rename it or send the right file", status=415)


# ---- archives ----------------------------------------------------------------------------------

def unsafe_name(name: str) -> str | None:
    """Why an archive member name is unsafe to extract anywhere, or None."""
    if "\x00" in name:
        return "contains a NUL character"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        return "is an absolute path"
    if ".." in PurePosixPath(norm).parts:
        return "climbs out of the archive with '..'"
    return None


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def check_zip(path: Path, limits: Limits) -> list[zipfile.ZipInfo]:
    """The archive's members, once it is known safe: names, types, count, and sizes (the
    declared ones, then the real ones by decompressing every member with a running cap)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadError(f"the file is not a valid zip archive ({exc})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise UploadError(f"the archive has {len(infos)} members, more than the "
                              f"{limits.max_members} accepted")
        declared = 0
        for info in infos:
            why = unsafe_name(info.filename)
            if why:
                raise UploadError(f"archive member {info.filename!r} {why}; refused")
            if _is_symlink(info):
                raise UploadError(f"archive member {info.filename!r} is a symbolic link; "
                                  "refused")
            if info.flag_bits & 0x1:
                raise UploadError(f"archive member {info.filename!r} is encrypted; send an "
                                  "archive without a password")
            declared += info.file_size
        _check_total(declared, limits)
        compressed = sum(i.compress_size for i in infos)
        _check_ratio(declared, compressed, limits)
        actual = 0
        try:
            for info in infos:
                if info.is_dir():
                    continue
                with zf.open(info) as fh:
                    while chunk := fh.read(1 << 20):
                        actual += len(chunk)
                        _check_total(actual, limits)
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:
            raise UploadError(f"the archive is damaged or uses an unsupported compression "
                              f"({exc})") from None
        _check_ratio(actual, compressed, limits)
    return infos


def _check_total(total: int, limits: Limits) -> None:
    if total > limits.max_unzipped_bytes:
        raise UploadError(f"the archive unpacks to more than {_mb(limits.max_unzipped_bytes)} "
                          "(SHAHR_MAX_UNZIPPED_MB); refused as a possible zip bomb")


def _check_ratio(total: int, compressed: int, limits: Limits) -> None:
    ratio = total / max(compressed, 1)
    if total > limits.ratio_floor and ratio > limits.max_ratio:
        raise UploadError(f"the archive unpacks to {ratio:.0f} times its compressed size (more "
                          f"than {limits.max_ratio:.0f}); refused as a possible zip bomb")


def choose_member(path: Path, infos: list[zipfile.ZipInfo], *, member: str | None,
                  declared_format: str | None) -> Accepted:
    """The data file to load from a checked archive, sniffed like an upload of its own."""
    names = [i.filename for i in infos if not i.is_dir() and "__MACOSX" not in i.filename
             and not PurePosixPath(i.filename).name.startswith(".")]
    lower = {n.lower(): n for n in names}
    if member:
        found = lower.get(member.lower())
        if found is None:
            raise UploadError(f"the archive has no member {member!r} (source.member); it holds: "
                              f"{', '.join(names[:20]) or 'nothing'}")
        candidates = [found]
    else:
        candidates = [n for n in names if PurePosixPath(n).suffix.lower() in MEMBER_FORMAT
                      and (declared_format is None
                           or MEMBER_FORMAT[PurePosixPath(n).suffix.lower()] == declared_format)]
    if len(candidates) != 1:
        listing = ", ".join(names[:20]) or "nothing"
        what = "no data file" if not candidates else "several data files"
        raise UploadError(f"the archive holds {what} ({listing}); send one, or name the one to "
                          "load in the dataset's source.member")
    chosen = candidates[0]
    suffix = PurePosixPath(chosen).suffix.lower()
    fmt = MEMBER_FORMAT.get(suffix)
    if fmt is None:
        raise UploadError(f"archive member {chosen!r} is not a data file this service reads; "
                          f"accepted: {ACCEPTED}", status=415)
    with zipfile.ZipFile(path) as zf:
        head = zf.open(lower[chosen.lower()]).read(SNIFF_BYTES)
        if fmt == "shapefile":
            if head[:4] != b"\x00\x00\x27\x0a":
                raise UploadError(f"archive member {chosen!r} is not a Shapefile", status=415)
            stem = str(PurePosixPath(chosen).with_suffix("")).lower()
            missing = [ext for ext in (".shx", ".dbf") if stem + ext not in lower]
            if missing:
                raise UploadError(f"the Shapefile {chosen!r} comes without its "
                                  f"{' and '.join(missing)} in the archive; send them together")
        else:
            kind = sniff(head)
            if KIND_FORMAT.get(kind) != fmt:
                raise UploadError(f"archive member {chosen!r} is named like {fmt} but its "
                                  f"content is {KIND_LABEL[kind]}", status=415)
    return Accepted("zip", fmt, chosen)


def check_file(path: Path, *, filename: str | None, limits: Limits,
               declared_format: str | None = None, member: str | None = None) -> Accepted:
    """Everything about a received file, in order: size, sniffed type, name agreement, the
    manifest's declared format, and (for archives) safety and the member to load."""
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise too_large(limits.max_bytes)
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    kind = sniff(head)
    check_name(filename, kind)
    if kind == "zip":
        infos = check_zip(path, limits)
        accepted = choose_member(path, infos, member=member,
                                 declared_format=declared_format)
    else:
        fmt = KIND_FORMAT[kind]
        assert fmt is not None
        accepted = Accepted(kind, fmt)
    if declared_format and accepted.format != declared_format \
            and not (declared_format == "kmz" and accepted.format == "kml"):
        raise UploadError(f"the dataset's source.format is {declared_format} but the upload "
                          f"is {accepted.format}; send a {declared_format} file or change "
                          "source.format (PATCH /datasets/{slug})", status=415)
    return accepted


# ---- URLs --------------------------------------------------------------------------------------

def check_url(url: str, *, allow_private: bool = False) -> httpx.URL:
    """An http(s) URL whose host is a public address (unless private ones are allowed)."""
    try:
        u = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UploadError(f"url: not a valid URL ({exc})", status=400) from None
    if u.scheme not in ("http", "https"):
        raise UploadError(f"url: only http:// and https:// URLs are fetched, not "
                          f"{u.scheme or 'a relative URL'}", status=400)
    if not u.host:
        raise UploadError("url: the URL has no host", status=400)
    if not allow_private:
        try:
            addrs = {a[4][0] for a in socket.getaddrinfo(u.host, u.port or 443)}
        except socket.gaierror:
            raise UploadError(f"url: the host {u.host!r} does not resolve", status=400) from None
        for a in addrs:
            ip = ipaddress.ip_address(a.split("%")[0])
            if not ip.is_global:
                raise UploadError(f"url: the host {u.host!r} is a private, loopback or "
                                  "reserved address; only public hosts are fetched", status=400)
    return u


@dataclass(frozen=True)
class Fetched:
    path: Path
    filename: str
    size: int
    url: str


def fetch(url: str, folder: Path, limits: Limits, *, allow_private: bool = False,
          timeout: float = 60.0, max_redirects: int = 5) -> Fetched:
    """Download `url` into `folder` with the upload size limit, checking every redirect's
    target like the first URL. The caller checks the file (check_file) afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"fetch-{uuid.uuid4().hex}.part"
    current = check_url(url, allow_private=allow_private)
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for _ in range(max_redirects + 1):
            try:
                with client.stream("GET", current) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location", "")
                        current = check_url(str(current.join(location)),
                                            allow_private=allow_private)
                        continue
                    if resp.status_code >= 400:
                        raise UploadError(f"url: the server answered HTTP {resp.status_code}",
                                          status=400)
                    length = resp.headers.get("content-length")
                    if length and length.isdigit() and int(length) > limits.max_bytes:
                        raise too_large(limits.max_bytes)
                    try:
                        with target.open("wb") as out:
                            size = copy_limited(resp.iter_bytes(1 << 20), out, limits.max_bytes)
                    except UploadError:
                        target.unlink(missing_ok=True)
                        raise
                    name = PurePosixPath(current.path).name or "download"
                    return Fetched(target, name, size, str(current))
            except httpx.HTTPError as exc:
                target.unlink(missing_ok=True)
                raise UploadError(f"url: download failed ({exc})", status=400) from None
    raise UploadError(f"url: more than {max_redirects} redirects", status=400)
