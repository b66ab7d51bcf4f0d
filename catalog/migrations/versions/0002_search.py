"""catalogue search: datasets.search_text and its full-text index

The column holds the folded words of a dataset's metadata and data dictionary (see
catalog.search.search_document); the GIN index answers `to_tsvector('simple', search_text)
@@ to_tsquery(...)`, prefix terms included, so no pg_trgm is needed. Existing datasets are
backfilled here from plain rows (not the ORM models, which may change after this revision).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 02:00:00
"""
from collections.abc import Sequence
from types import SimpleNamespace

import sqlalchemy as sa
from alembic import op

from catalog.search import search_document

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

INDEX = 'ix_datasets_search_text'


def upgrade() -> None:
    op.add_column('datasets', sa.Column('search_text', sa.Text(), nullable=True),
                  schema='catalog')
    _backfill()
    op.create_index(INDEX, 'datasets', [sa.text("to_tsvector('simple'::regconfig, search_text)")],
                    schema='catalog', postgresql_using='gin')


def _backfill() -> None:
    conn = op.get_bind()
    datasets = conn.execute(sa.text(
        "SELECT d.id, d.slug, d.title_fa, d.title_en, d.description_fa, d.description_en, "
        "d.theme, d.keywords, o.slug AS org_slug, o.name_fa AS org_name_fa, "
        "o.name_en AS org_name_en FROM catalog.datasets d "
        "JOIN catalog.organisations o ON o.id = d.organisation_id")).mappings().all()
    for d in datasets:
        fields = conn.execute(sa.text(
            "SELECT name, label_fa, label_en, description_fa, description_en "
            "FROM catalog.fields WHERE dataset_id = :id ORDER BY position"),
            {"id": d["id"]}).mappings().all()
        org = SimpleNamespace(slug=d["org_slug"], name_fa=d["org_name_fa"],
                              name_en=d["org_name_en"])
        ds = SimpleNamespace(**{k: d[k] for k in (
            "slug", "title_fa", "title_en", "description_fa", "description_en", "theme",
            "keywords")}, organisation=org)
        doc = search_document(ds, [SimpleNamespace(**f) for f in fields])
        conn.execute(sa.text("UPDATE catalog.datasets SET search_text = :doc WHERE id = :id"),
                     {"doc": doc, "id": d["id"]})


def downgrade() -> None:
    op.drop_index(INDEX, table_name='datasets', schema='catalog')
    op.drop_column('datasets', 'search_text', schema='catalog')
