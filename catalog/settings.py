"""Runtime configuration, read from `SHAHR_*` environment variables (and `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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
        "low-zoom tile overviews at load (small features merged per cell up to zoom 13); "
        "0: never.")
    base_url: str | None = Field(default=None, description="Public URL prefix for links "
                                 "(default: taken from each request).")

    @property
    def postgres_dir(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"


@lru_cache
def get_settings() -> Settings:
    return Settings()
