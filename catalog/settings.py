"""Runtime configuration, read from `SHAHR_*` environment variables (and `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob Shahr has. Defaults suit a developer's checkout."""

    model_config = SettingsConfigDict(env_prefix="SHAHR_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the PostGIS database. Unset: the local server on "
        "127.0.0.1:5432 (database `shahr`), else a private cluster under data_dir/postgres.",
    )
    data_dir: Path = Field(default=Path(".data"), description="Working files: demo city, "
                           "downloads cache, private database cluster.")
    jobs_dirs: list[Path] = Field(
        default_factory=lambda: [Path(".data/demo")],
        description="Folders searched for ETL job manifests (*.yaml).",
    )
    host: str = Field(default="127.0.0.1", description="Address `shahr serve` binds.")
    port: int = Field(default=8000, description="Port `shahr serve` binds.")
    keep_versions: int = Field(default=3, ge=1, description="Versions kept per dataset.")
    etl_batch_size: int = Field(default=65_536, ge=1000, description="Rows per ETL batch.")
    demo_seed: int = Field(default=1402, description="Seed of the demo-city generator.")
    pool_size: int = Field(default=10, ge=1, description="Database connections per worker.")
    statement_timeout_ms: int = Field(default=30_000, ge=100,
                                      description="Longest a public query may run.")
    max_limit: int = Field(default=10_000, ge=1, description="Largest `limit` of an items page.")
    default_limit: int = Field(default=10, ge=1, description="`limit` when none is given.")
    tile_overview_min_features: int = Field(
        default=100_000, ge=0, description="Layers with at least this many features get "
        "low-zoom tile overviews at load (small features merged per cell up to zoom 13, or "
        "up to 15 for layers of very small features); "
        "0: never.")
    base_url: str | None = Field(default=None, description="Public URL prefix for links "
                                 "(default: taken from each request).")
    # Write access: uploads, the job worker (see docs/publishing.md).
    max_upload_mb: int = Field(default=200, ge=1, description="Largest upload (or fetched "
                               "URL) in MB; larger ones are refused with 413.")
    max_unzipped_mb: int = Field(default=2000, ge=1, description="Largest total uncompressed "
                                 "size of an uploaded archive in MB (zip-bomb guard).")
    job_timeout_s: int = Field(default=3600, ge=1, description="Longest an ETL job may run in "
                               "the worker before it is killed and marked failed.")
    worker_heartbeat_s: float = Field(default=10.0, gt=0, description="How often the worker "
                                      "reports a running job alive; 3 missed = worker died.")
    fetch_private_hosts: bool = Field(default=False, description="Let URL uploads fetch from "
                                      "loopback/private addresses (off: SSRF guard).")
    basemap: str = Field(default="osm", description="Map background: `osm` (OpenStreetMap "
                         "tiles), `none` (offline installations), or an XYZ URL template "
                         "with {z}/{x}/{y}.")
    map_feature_threshold: int = Field(default=5000, ge=1, description="Above this many "
                                       "features a map draws the layer from vector tiles.")
    # Limits and operations (see docs/operations.md).
    rate_limit_per_minute: int = Field(default=1200, ge=0, description="Requests a minute "
                                       "per client address (0: no limit).")
    rate_limit_key_per_minute: int = Field(default=6000, ge=0, description="Requests a "
                                           "minute per API key (0: no limit).")
    rate_limit_exempt: list[str] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        description="Client addresses or networks that are never rate limited.")
    trusted_proxies: list[str] = Field(default_factory=list, description="Proxy addresses or "
                                       "networks whose X-Forwarded-For is believed.")
    cors_origins: list[str] = Field(default_factory=lambda: ["*"], description="Origins whose "
                                    "pages may call the API from a browser (`*`: any).")
    max_filter_bytes: int = Field(default=65_536, ge=256, description="Longest filter or "
                                  "intersects parameter in a URL, in bytes.")
    max_vertices: int = Field(default=10_000, ge=5, description="Most vertices in the "
                              "geometries of one request's filter or intersects.")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest request body "
                                "(POST search, CKAN actions), in bytes; uploads have their own.")
    reader_role: str = Field(default="shahr_reader", pattern="^([a-z_][a-z0-9_]*)?$",
                             description="Read-only database role the public queries run "
                             "as (empty: the connecting user).")
    reader_database_url: str | None = Field(default=None, description="A separate login for "
                                            "public queries (a member of the reader role).")
    pool_timeout_s: float = Field(default=10.0, gt=0, description="Longest a request waits for "
                                  "a database connection before a 503.")
    log_format: str = Field(default="text", pattern="^(text|json)$", description="Log lines "
                            "as `text` or `json` (one object a line).")
    log_level: str = Field(default="info", pattern="^(debug|info|warning|error)$",
                           description="Least severe log level written.")
    default_lang: Literal["fa", "en"] = Field(default="fa", description="Language of the web "
                                              "pages when neither ?lang=, the cookie nor "
                                              "Accept-Language chooses one.")
    # Citizen participation: dataset requests and reports (see docs/participation.md).
    secret_key: str | None = Field(default=None, description="Secret that signs the "
                                   "supporter cookie (unset: one is generated once into "
                                   "data_dir/secret_key and reused).")
    submissions_per_minute: int = Field(default=5, ge=0, description="Requests, reports "
                                        "and supports a client address may send a minute "
                                        "(0: no limit); addresses in rate_limit_exempt are "
                                        "not limited.")

    @property
    def postgres_dir(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"


@lru_cache
def get_settings() -> Settings:
    return Settings()
