"""Helpers shared by test modules (importable as `support`; see pytest's pythonpath)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import yaml

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def write_manifest(folder: Path, source: dict[str, Any], *, slug: str | None = None,
                   **extra: Any) -> Path:
    slug = slug or f"t-{uuid.uuid4().hex[:10]}"
    data = {
        "dataset": {"slug": slug, "title": {"en": slug, "fa": "آزمون"}, "theme": "land-use",
                    "organisation": {"slug": "test-org", "name": {"en": "Test", "fa": "آزمون"}}},
        "source": source,
        **{k: v for k, v in extra.items() if v is not None},
    }
    path = folder / f"{slug}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def current_table(db: psycopg.Connection, slug: str) -> str:
    row = db.execute("""SELECT v.table_name FROM catalog.datasets d
                        JOIN catalog.versions v ON v.id = d.current_version_id
                        WHERE d.slug = %s""", [slug]).fetchone()
    assert row, f"{slug} has no current version"
    return f'data."{row[0]}"'
