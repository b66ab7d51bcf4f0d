"""citizen participation: dataset requests and their supporters, reports on data, contacts

Adds the tables behind docs/participation.md. The contacts table holds the e-mail addresses
citizens leave; catalog/roles.py keeps it away from the public read-only role.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 00:00:00
"""
from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

STATUSES = "('new', 'accepted', 'in_progress', 'done', 'declined')"
THEMES = "('land-use', 'housing', 'infrastructure', 'traffic', 'boundaries')"
CATEGORIES = "('wrong_value', 'wrong_location', 'missing_feature', 'outdated')"


def _now(name: str = 'created') -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text('now()'),
                     nullable=False)


def upgrade() -> None:
    op.create_table('dataset_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('theme', sa.String(length=32), nullable=False),
    sa.Column('area', geoalchemy2.types.Geometry(srid=4326, spatial_index=False,
                                                 from_text='ST_GeomFromEWKT',
                                                 name='geometry'), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='new', nullable=False),
    sa.Column('public_answer', sa.Text(), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('supporters', sa.Integer(), server_default='0', nullable=False),
    _now(),
    sa.CheckConstraint(f"status IN {STATUSES}", name=op.f('ck_dataset_requests_status')),
    sa.CheckConstraint(f"theme IN {THEMES}", name=op.f('ck_dataset_requests_theme')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_requests')),
    schema='catalog'
    )
    op.create_index(op.f('ix_dataset_requests_status'), 'dataset_requests', ['status'],
                    schema='catalog')
    op.create_table('request_supports',
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('supporter', sa.String(length=64), nullable=False),
    _now(),
    sa.ForeignKeyConstraint(['request_id'], ['catalog.dataset_requests.id'],
                            name=op.f('fk_request_supports_request_id_dataset_requests'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('request_id', 'supporter', name=op.f('pk_request_supports')),
    schema='catalog'
    )
    op.create_table('reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('feature_id', sa.Text(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=True),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('location', geoalchemy2.types.Geometry(geometry_type='POINT', srid=4326,
                                                     spatial_index=False,
                                                     from_text='ST_GeomFromEWKT',
                                                     name='geometry'), nullable=True),
    sa.Column('feature_point', geoalchemy2.types.Geometry(geometry_type='POINT', srid=4326,
                                                          spatial_index=False,
                                                          from_text='ST_GeomFromEWKT',
                                                          name='geometry'), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='new', nullable=False),
    sa.Column('public_answer', sa.Text(), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('fixed_version', sa.Integer(), nullable=True),
    _now(),
    sa.CheckConstraint(f"status IN {STATUSES}", name=op.f('ck_reports_status')),
    sa.CheckConstraint(f"category IN {CATEGORIES}", name=op.f('ck_reports_category')),
    sa.ForeignKeyConstraint(['dataset_id'], ['catalog.datasets.id'],
                            name=op.f('fk_reports_dataset_id_datasets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reports')),
    schema='catalog'
    )
    op.create_index(op.f('ix_reports_dataset_id'), 'reports', ['dataset_id'], schema='catalog')
    op.create_table('contacts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.Text(), nullable=False),
    _now(),
    sa.CheckConstraint("kind IN ('request', 'report')", name=op.f('ck_contacts_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contacts')),
    sa.UniqueConstraint('kind', 'item_id', name=op.f('uq_contacts_kind_item_id')),
    schema='catalog'
    )


def downgrade() -> None:
    op.drop_table('contacts', schema='catalog')
    op.drop_index(op.f('ix_reports_dataset_id'), table_name='reports', schema='catalog')
    op.drop_table('reports', schema='catalog')
    op.drop_table('request_supports', schema='catalog')
    op.drop_index(op.f('ix_dataset_requests_status'), table_name='dataset_requests',
                  schema='catalog')
    op.drop_table('dataset_requests', schema='catalog')
