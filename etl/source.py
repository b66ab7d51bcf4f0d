"""Getting a job's source onto disk and knowing what it is: download (http/https) into the
cache, look inside zip archives, find the files that make up a Shapefile, fingerprint them
(so an unchanged input is skipped), and detect text encodings."""

from __future__ import annotations

import codecs
import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import httpx
from charset_normalizer import from_bytes

from etl.manifest import Manifest

EXT_FORMAT = {
    ".geojson": "geojson", ".json": "geojson", ".shp": "shapefile", ".gpkg": "gpkg",
    ".kml": "kml", ".kmz": "kmz", ".csv": "csv", ".tsv": "csv", ".txt": "csv",
    ".fgb": "flatgeobuf",
}
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")
# DBF "language driver" ids that name one code page (0x57/0x03 "ANSI" mean the writer's
# system code page, which tells nothing).
LDID_ENCODING = {
    0x01: "cp437", 0x02: "cp850", 0x64: "cp852", 0x65: "cp866", 0x66: "cp865", 0x13: "cp932",
    0x4D: "cp936", 0x4E: "cp949", 0x4F: "cp950", 0x78: "cp950", 0x79: "cp949", 0x7A: "cp936",
    0x7B: "cp932", 0x7C: "cp874", 0x7D: "cp1255", 0x7E: "cp1256", 0xC8: "cp1250",
    0xC9: "cp1251", 0xCA: "cp1254", 0xCB: "cp1253", 0xCC: "cp1257",
}
LEGACY_CANDIDATES = ["cp1256", "cp1252", "cp1251", "cp1250", "cp1253", "cp1254", "cp1255",
                     "cp1257", "cp874"]


class SourceError(ValueError):
    """The source cannot be read; the message names the file and what to do."""


@dataclass
class SourceFile:
    """What a reader opens, and what was fingerprinted."""

    label: str  # for messages: the manifest's path or URL (and zip member)
    path: Path  # the file on disk (a zip archive when `member` is set)
    format: str
    member: str | None = None  # file inside the zip archive
    checksum: str = ""
    files: list[Path] = field(default_factory=list)

    @property
    def gdal_path(self) -> str:
        if self.member:
            return f"/vsizip/{self.path}/{self.member}"
        return str(self.path)


def materialise(manifest: Manifest, cache_dir: Path) -> SourceFile:
    """Resolve the manifest's source to local files (downloading a URL) and fingerprint it."""
    src = manifest.source
    if src.url:
        path = download(src.url, cache_dir)
        label = src.url
    else:
        path = manifest.resolve_path()
        label = str(path)
        if not path.exists():
            raise SourceError(f"{manifest.path}: source file {path} does not exist")
    member = src.member
    if path.suffix.lower() == ".zip":
        member = member or _pick_member(path, src.format)
        fmt = src.format or EXT_FORMAT.get(PurePosixPath(member).suffix.lower())
        label = f"{label}!{member}"
    else:
        fmt = src.format or EXT_FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise SourceError(f"{label}: cannot tell the format from the name; set `source.format` "
                          f"to one of geojson, shapefile, gpkg, kml, kmz, csv, flatgeobuf")
    files = [path]
    if fmt == "shapefile" and not member:
        files = shapefile_parts(path)
    sf = SourceFile(label=label, path=path, format=fmt, member=member, files=files)
    sf.checksum = fingerprint(files)
    return sf


def download(url: str, cache_dir: Path) -> Path:
    """Stream a URL into the cache (named after its last path segment)."""
    name = PurePosixPath(httpx.URL(url).path).name or "download"
    target = cache_dir / hashlib.sha256(url.encode()).hexdigest()[:16] / name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as resp:
            if resp.status_code >= 400:
                raise SourceError(f"{url}: the server answered HTTP {resp.status_code}")
            with tmp.open("wb") as fh:
                for chunk in resp.iter_bytes(1 << 20):
                    fh.write(chunk)
    except httpx.HTTPError as exc:
        raise SourceError(f"{url}: download failed ({exc})") from None
    tmp.replace(target)
    return target


def _pick_member(path: Path, fmt: str | None) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")
                     and not PurePosixPath(n).name.startswith(".")
                     and "__MACOSX" not in n]
    except zipfile.BadZipFile:
        raise SourceError(f"{path}: not a valid zip archive") from None
    wanted = [n for n in names if (fmt and EXT_FORMAT.get(PurePosixPath(n).suffix.lower()) == fmt)
              or (not fmt and PurePosixPath(n).suffix.lower() in EXT_FORMAT
                  and PurePosixPath(n).suffix.lower() not in (".txt", ".json"))]
    if not wanted:
        wanted = [n for n in names if PurePosixPath(n).suffix.lower() in EXT_FORMAT]
    if len(wanted) != 1:
        listing = ", ".join(names[:20]) or "nothing"
        raise SourceError(
            f"{path}: {'no' if not wanted else 'several'} data files in the archive "
            f"({listing}); name the one to load with `source.member`")
    return wanted[0]


def shapefile_parts(shp: Path) -> list[Path]:
    """The .shp and its sidecar files that exist, whatever the case of their extensions."""
    stem = shp.stem.lower()
    return sorted(p for p in shp.parent.iterdir()
                  if p.stem.lower() == stem and p.suffix.lower() in SHAPEFILE_PARTS)


def fingerprint(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.name.lower()):
        h.update(f.name.lower().encode())
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


# ---- encodings -----------------------------------------------------------------------------

def normalise_encoding(name: str) -> str | None:
    """A Python codec name from what .cpg files and users write ('UTF-8', '1256', 'ANSI 1256')."""
    n = name.strip().lower().replace("ansi", "").strip()
    if n in ("65001", "utf8", "utf-8"):
        return "utf-8"
    if n.isdigit():
        n = f"cp{n}"
    try:
        return codecs.lookup(n).name
    except LookupError:
        return None


def decodes_as_utf8(sample: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return True
    except UnicodeDecodeError:
        return False


def guess_encoding(sample: bytes, default: str = "cp1256") -> str:
    """UTF-8 when the bytes decode as UTF-8 (or are ASCII), else the likeliest legacy code
    page (Arabic-script cp1256 first for ties), else `default`."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if decodes_as_utf8(sample):
        return "utf-8"
    best = from_bytes(sample[:200_000], cp_isolation=LEGACY_CANDIDATES).best()
    return codecs.lookup(best.encoding).name if best is not None else default


def _dbf_records_sample(data: bytes) -> bytes:
    header_len = int.from_bytes(data[8:10], "little") if len(data) >= 32 else 0
    return data[header_len:]


def detect_dbf_encoding(src: SourceFile) -> tuple[str, str]:
    """(encoding, how it was found) for a Shapefile's DBF: .cpg, LDID, content, cp1256."""
    cpg_text, dbf_head = _shapefile_sidecars(src)
    if cpg_text is not None:
        enc = normalise_encoding(cpg_text)
        if enc:
            return enc, ".cpg file"
    if dbf_head is None:
        return "utf-8", "no .dbf"
    ldid = dbf_head[29] if len(dbf_head) > 29 else 0
    if ldid in LDID_ENCODING:
        return LDID_ENCODING[ldid], f"DBF language driver id 0x{ldid:02X}"
    sample = _dbf_records_sample(dbf_head)
    if decodes_as_utf8(sample):
        return "utf-8", "content decodes as UTF-8"
    return guess_encoding(sample), "guessed from content"


def _shapefile_sidecars(src: SourceFile) -> tuple[str | None, bytes | None]:
    """The .cpg text and the first 4 MB of the .dbf, from a folder or a zip archive."""
    limit = 4 << 20
    if src.member:
        stem = str(PurePosixPath(src.member).with_suffix("")).lower()
        with zipfile.ZipFile(src.path) as zf:
            by_name = {n.lower(): n for n in zf.namelist()}
            cpg = by_name.get(stem + ".cpg")
            dbf = by_name.get(stem + ".dbf")
            cpg_text = zf.read(cpg).decode("ascii", "replace") if cpg else None
            dbf_head = zf.open(dbf).read(limit) if dbf else None
        return cpg_text, dbf_head
    parts = {p.suffix.lower(): p for p in shapefile_parts(src.path)}
    cpg_text = parts[".cpg"].read_text("ascii", "replace") if ".cpg" in parts else None
    dbf_head = None
    if ".dbf" in parts:
        with parts[".dbf"].open("rb") as fh:
            dbf_head = fh.read(limit)
    return cpg_text, dbf_head


def read_head(src: SourceFile, limit: int = 4 << 20) -> bytes:
    """The first bytes of a (possibly zipped) text file, for sniffing."""
    if src.member:
        with zipfile.ZipFile(src.path) as zf:
            return zf.open(src.member).read(limit)
    with src.path.open("rb") as fh:
        return fh.read(limit)
