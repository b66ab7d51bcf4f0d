"""ETL job manifests: one YAML file per dataset, saying where its data comes from and what
it means. Validated with pydantic so a mistake is reported with the file and the key."""

from __future__ import annotations

import hashlib
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

THEMES = ("land-use", "housing", "infrastructure", "traffic", "boundaries")
FIELD_TYPES = ("string", "integer", "number", "boolean", "date", "datetime")
FORMATS = ("geojson", "shapefile", "gpkg", "kml", "kmz", "csv", "flatgeobuf")
FREQUENCIES = (
    "continuous", "daily", "weekly", "monthly", "quarterly", "biannual", "annual",
    "irregular", "never", "unknown",
)
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,54}$")
# How often a URL source is reloaded by the worker (`refresh`, else `update_frequency`).
REFRESH_WORDS = {
    "daily": timedelta(days=1), "weekly": timedelta(weeks=1), "monthly": timedelta(days=30),
    "quarterly": timedelta(days=91), "biannual": timedelta(days=182),
    "annual": timedelta(days=365),
}
MIN_REFRESH = timedelta(minutes=1)


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Bilingual(_Strict):
    """Text in Persian and English; either may be missing, not both."""

    fa: str | None = None
    en: str | None = None

    @model_validator(mode="after")
    def _one_language(self) -> Bilingual:
        if not (self.fa or self.en):
            raise ValueError("give the text in Persian (fa), English (en) or both")
        return self


def _check_slug(v: str) -> str:
    if not SLUG_RE.match(v):
        raise ValueError("use lower-case letters, digits and '-' (at most 55 characters)")
    return v


Slug = Annotated[str, AfterValidator(_check_slug)]


def parse_refresh(v: str) -> timedelta | None:
    """A refresh period: a word (daily ... annual), `never`, or an ISO 8601 duration (P1D,
    PT6H; at least PT1M). None means never."""
    word = v.strip().lower()
    if word in ("never", "off", "none"):
        return None
    if word in REFRESH_WORDS:
        return REFRESH_WORDS[word]
    try:
        period = TypeAdapter(timedelta).validate_python(v.strip().upper())
    except ValidationError:
        period = None
    if not v.strip().upper().startswith("P") or period is None:
        raise ValueError(f"use one of {', '.join(REFRESH_WORDS)}, never, or an ISO 8601 "
                         "duration such as PT6H or P1D")
    if period < MIN_REFRESH:
        raise ValueError("the shortest refresh period is PT1M (one minute)")
    return period


def _check_refresh(v: str | None) -> str | None:
    if v is not None:
        parse_refresh(v)
    return v


Refresh = Annotated[str | None, AfterValidator(_check_refresh)]


class Organisation(_Strict):
    slug: Slug
    name: Bilingual
    url: str | None = None
    email: str | None = None


class Contact(_Strict):
    name: str | None = None
    email: str | None = None


class Temporal(_Strict):
    start: date | None = None
    end: date | None = None


class DatasetMeta(_Strict):
    """Catalogue metadata of the dataset the job publishes."""

    slug: Slug
    title: Bilingual
    description: Bilingual | None = None
    theme: Literal["land-use", "housing", "infrastructure", "traffic", "boundaries"]
    keywords: list[str] = Field(default_factory=list)
    licence: str = Field(default="CC-BY-4.0", description="SPDX licence id")
    organisation: Organisation
    publisher: str | None = None
    contact: Contact | None = None
    update_frequency: Literal[
        "continuous", "daily", "weekly", "monthly", "quarterly", "biannual", "annual",
        "irregular", "never", "unknown",
    ] = "unknown"
    temporal: Temporal | None = None
    synthetic: bool = Field(default=False, description="Generated, not real data (the demo).")


class CsvGeometry(_Strict):
    """How a CSV carries its geometry: lon/lat, projected x/y (with `crs`), or WKT."""

    lon: str | None = None
    lat: str | None = None
    x: str | None = None
    y: str | None = None
    wkt: str | None = None
    delimiter: str | None = Field(default=None, description="Default: sniffed (, ; tab |)")
    decimal: str = Field(default=".", description="Decimal mark of numbers, '.' or ','")
    skip_rows: int = Field(default=0, ge=0, description="Lines before the header row")

    @model_validator(mode="after")
    def _one_kind(self) -> CsvGeometry:
        kinds = [bool(self.lon or self.lat), bool(self.x or self.y), bool(self.wkt)]
        if sum(kinds) != 1:
            raise ValueError("name exactly one of: lon+lat, x+y, or wkt")
        if (self.lon or self.lat) and not (self.lon and self.lat):
            raise ValueError("lon and lat go together")
        if (self.x or self.y) and not (self.x and self.y):
            raise ValueError("x and y go together")
        if self.decimal not in (".", ","):
            raise ValueError("decimal must be '.' or ','")
        return self


class Source(_Strict):
    """Where the data is read from."""

    path: str | None = Field(default=None, description="File path, relative to the manifest")
    url: str | None = Field(default=None, description="http(s) URL, downloaded to the cache")
    format: Literal["geojson", "shapefile", "gpkg", "kml", "kmz", "csv", "flatgeobuf"] | None = (
        None
    )
    layer: str | None = None
    member: str | None = Field(default=None, description="File inside a zip archive")
    encoding: str | None = Field(default=None, description="Override the detected encoding")
    crs: str | None = Field(default=None, description="Override or supply the source CRS")
    csv: CsvGeometry | None = None

    @model_validator(mode="after")
    def _where(self) -> Source:
        if bool(self.path) == bool(self.url):
            raise ValueError("give exactly one of `path` or `url`")
        if self.url and not re.match(r"^https?://", self.url):
            raise ValueError("`url` must start with http:// or https://")
        if self.csv and self.csv.x and not self.crs:
            raise ValueError("projected x/y columns need the source `crs` (e.g. EPSG:32639)")
        return self


class FieldSpec(_Strict):
    """One column: how to find it in the source, what type it must have, what it means."""

    source: str = Field(description="Column name in the source file")
    name: str | None = Field(default=None, description="Column name once published")
    type: Literal["string", "integer", "number", "boolean", "date", "datetime"] | None = None
    calendar: Literal["gregorian", "jalali"] = "gregorian"
    date_format: str | None = Field(default=None, description="strptime format, if unusual")
    null_values: list[str] = Field(default_factory=list, description="Values meaning unknown")
    unit: str | None = None
    label: Bilingual | None = None
    description: Bilingual | None = None

    @model_validator(mode="after")
    def _jalali_is_a_date(self) -> FieldSpec:
        if self.calendar == "jalali" and self.type not in ("date", "datetime"):
            raise ValueError("calendar: jalali needs type: date or datetime")
        return self


class Manifest(_Strict):
    """A whole job."""

    dataset: DatasetMeta
    source: Source
    key: str | None = Field(default=None, description="Source column that identifies a feature")
    geometry_type: Literal["point", "line", "polygon"] | None = None
    fields: list[FieldSpec] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list, description="Source columns not loaded")
    max_rejected: float = Field(
        default=0.5, ge=0, le=1,
        description="Fail the run when more than this share of rows is rejected",
    )
    refresh: Refresh = Field(
        default=None,
        description="How often `shahr worker` reloads a `source.url`: daily, weekly, monthly, "
        "quarterly, biannual, annual, never, or an ISO 8601 duration (PT6H). Default: "
        "dataset.update_frequency when it is one of those words.",
    )

    # Set by load_manifest, not read from YAML.
    path: Path | None = Field(default=None, exclude=True)
    text_sha256: str = Field(default="", exclude=True)

    @property
    def name(self) -> str:
        """The job's name: the manifest file's stem."""
        return self.path.stem if self.path else self.dataset.slug

    def resolve_path(self) -> Path:
        """The source path, relative paths taken from the manifest's folder."""
        assert self.source.path is not None
        p = Path(self.source.path).expanduser()
        if not p.is_absolute() and self.path is not None:
            p = self.path.parent / p
        return p

    def field_for(self, source_name: str) -> FieldSpec | None:
        for f in self.fields:
            if f.source == source_name or f.source.lower() == source_name.lower():
                return f
        return None

    def refresh_period(self) -> timedelta | None:
        """How often the worker reloads this job, or None: only a `source.url` is refreshed,
        every `refresh`, else every `dataset.update_frequency` when that is a period."""
        if not self.source.url:
            return None
        if self.refresh is not None:
            return parse_refresh(self.refresh)
        return REFRESH_WORDS.get(self.dataset.update_frequency)


def load_manifest(path: Path) -> Manifest:
    """Read and validate one manifest, with errors that say which file and which key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from exc
    m = parse_manifest(data, where=str(path))
    m.path = path.resolve()
    m.text_sha256 = hashlib.sha256(text.encode()).hexdigest()
    return m


def parse_manifest(data: object, *, where: str) -> Manifest:
    """Validate a manifest given as data (YAML or a JSON body); errors name `where` and keys."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: a manifest is a mapping with `dataset` and `source` keys")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {loc}: {err['msg']}")
        raise ManifestError(f"{where}: invalid manifest\n" + "\n".join(lines)) from None


def find_manifests(dirs: list[Path]) -> dict[str, Path]:
    """Job name -> manifest path, for every *.yaml / *.yml in the given folders."""
    found: dict[str, Path] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        for p in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
            found.setdefault(p.stem, p)
    return found
