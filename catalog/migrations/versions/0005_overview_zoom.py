"""versions.tile_overview_zoom: the highest zoom a dense layer's tile overview covers

The loader decides it from the layer's feature sizes (geo/overview.py `top_zoom`); NULL for
a version without an overview. Versions loaded before this column existed and that have an
overview read as zoom 13, the only top zoom there was.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 00:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('versions', sa.Column('tile_overview_zoom', sa.SmallInteger(), nullable=True),
                  schema='catalog')


def downgrade() -> None:
    op.drop_column('versions', 'tile_overview_zoom', schema='catalog')
