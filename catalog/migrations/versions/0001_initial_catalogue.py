"""initial catalogue

Revision ID: 0001
Revises:
Create Date: 2026-11-23 00:50:20.366360
"""
from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('organisations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('name_fa', sa.Text(), nullable=True),
    sa.Column('name_en', sa.Text(), nullable=True),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('email', sa.Text(), nullable=True),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organisations')),
    sa.UniqueConstraint('slug', name=op.f('uq_organisations_slug')),
    schema='catalog'
    )
    op.create_table('datasets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('title_fa', sa.Text(), nullable=True),
    sa.Column('title_en', sa.Text(), nullable=True),
    sa.Column('description_fa', sa.Text(), nullable=True),
    sa.Column('description_en', sa.Text(), nullable=True),
    sa.Column('theme', sa.String(length=32), nullable=False),
    sa.Column('keywords', postgresql.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('licence', sa.String(length=64), nullable=False),
    sa.Column('publisher', sa.Text(), nullable=True),
    sa.Column('contact_name', sa.Text(), nullable=True),
    sa.Column('contact_email', sa.Text(), nullable=True),
    sa.Column('update_frequency', sa.String(length=32), server_default='unknown', nullable=False),
    sa.Column('temporal_start', sa.Date(), nullable=True),
    sa.Column('temporal_end', sa.Date(), nullable=True),
    sa.Column('synthetic', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('spatial_extent', geoalchemy2.types.Geometry(geometry_type='POLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('feature_count', sa.BigInteger(), nullable=True),
    sa.Column('geometry_type', sa.String(length=32), nullable=True),
    sa.Column('source_crs', sa.Text(), nullable=True),
    sa.Column('source_encoding', sa.String(length=32), nullable=True),
    sa.Column('metric_crs', sa.String(length=32), nullable=True),
    sa.Column('key_field', sa.Text(), nullable=True),
    sa.Column('current_version_id', sa.Integer(), nullable=True),
    sa.Column('job_name', sa.Text(), nullable=True),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('modified', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("theme IN ('land-use', 'housing', 'infrastructure', 'traffic', 'boundaries')", name=op.f('ck_datasets_theme')),
    sa.ForeignKeyConstraint(['organisation_id'], ['catalog.organisations.id'], name=op.f('fk_datasets_organisation_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
    sa.UniqueConstraint('slug', name=op.f('uq_datasets_slug')),
    schema='catalog'
    )
    op.create_table('etl_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_name', sa.Text(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=True),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='running', nullable=False),
    sa.Column('input_checksum', sa.String(length=64), nullable=True),
    sa.Column('manifest_checksum', sa.String(length=64), nullable=True),
    sa.Column('rows_read', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('rows_loaded', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('rows_rejected', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('rows_repaired', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('warnings', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('version_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('running', 'succeeded', 'failed', 'skipped')", name=op.f('ck_etl_runs_status')),
    sa.ForeignKeyConstraint(['dataset_id'], ['catalog.datasets.id'], name=op.f('fk_etl_runs_dataset_id_datasets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_etl_runs')),
    schema='catalog'
    )
    op.create_table('fields',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('source_name', sa.Text(), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('unit', sa.Text(), nullable=True),
    sa.Column('label_fa', sa.Text(), nullable=True),
    sa.Column('label_en', sa.Text(), nullable=True),
    sa.Column('description_fa', sa.Text(), nullable=True),
    sa.Column('description_en', sa.Text(), nullable=True),
    sa.Column('is_key', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('calendar', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['dataset_id'], ['catalog.datasets.id'], name=op.f('fk_fields_dataset_id_datasets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fields')),
    sa.UniqueConstraint('dataset_id', 'name', name=op.f('uq_fields_dataset_id_name')),
    schema='catalog'
    )
    op.create_table('rejected_rows',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('source_row', sa.BigInteger(), nullable=False),
    sa.Column('field', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('raw', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['catalog.etl_runs.id'], name=op.f('fk_rejected_rows_run_id_etl_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rejected_rows')),
    schema='catalog'
    )
    op.create_index(op.f('ix_rejected_rows_run_id'), 'rejected_rows', ['run_id'], unique=False, schema='catalog')
    op.create_table('versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('table_name', sa.String(length=63), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='loading', nullable=False),
    sa.Column('feature_count', sa.BigInteger(), nullable=True),
    sa.Column('extent', geoalchemy2.types.Geometry(geometry_type='POLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('geometry_type', sa.String(length=32), nullable=True),
    sa.Column('checksum', sa.String(length=64), nullable=True),
    sa.Column('schema_json', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('published', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['dataset_id'], ['catalog.datasets.id'], name=op.f('fk_versions_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['catalog.etl_runs.id'], name=op.f('fk_versions_run_id_etl_runs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_versions')),
    sa.UniqueConstraint('dataset_id', 'number', name=op.f('uq_versions_dataset_id_number')),
    schema='catalog'
    )
    # Foreign keys that make cycles (dataset -> current version -> dataset; run <-> version).
    op.create_foreign_key(op.f('fk_datasets_current_version_id_versions'), 'datasets', 'versions',
                          ['current_version_id'], ['id'], source_schema='catalog',
                          referent_schema='catalog', ondelete='SET NULL')
    op.create_foreign_key(op.f('fk_etl_runs_version_id_versions'), 'etl_runs', 'versions',
                          ['version_id'], ['id'], source_schema='catalog',
                          referent_schema='catalog', ondelete='SET NULL')
    op.create_index('ix_etl_runs_job_started', 'etl_runs', ['job_name', 'started_at'],
                    schema='catalog')
    op.create_index('ix_versions_dataset', 'versions', ['dataset_id'], schema='catalog')
    # The loader's tables, one per dataset version.
    op.execute('CREATE SCHEMA IF NOT EXISTS data')


def downgrade() -> None:
    op.drop_constraint(op.f('fk_datasets_current_version_id_versions'), 'datasets',
                       schema='catalog', type_='foreignkey')
    op.drop_constraint(op.f('fk_etl_runs_version_id_versions'), 'etl_runs',
                       schema='catalog', type_='foreignkey')
    op.drop_table('versions', schema='catalog')
    op.drop_index(op.f('ix_rejected_rows_run_id'), table_name='rejected_rows', schema='catalog')
    op.drop_table('rejected_rows', schema='catalog')
    op.drop_table('fields', schema='catalog')
    op.drop_table('etl_runs', schema='catalog')
    op.drop_table('datasets', schema='catalog')
    op.drop_table('organisations', schema='catalog')
    op.execute('DROP SCHEMA IF EXISTS data CASCADE')
