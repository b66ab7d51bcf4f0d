"""write access: API keys, audit log, stored manifests, uploads, run requests, job queue

Adds the tables behind the publishing API (see docs/publishing.md), lets etl_runs.status be
'queued', and installs procrastinate's schema (its job queue lives in this database, in
schema `public`, as procrastinate expects). The procrastinate schema is applied from the
installed package's own schema.sql, once: a database that already has it is left alone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 00:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from procrastinate.schema import SchemaManager
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

STATUSES_BEFORE = "('running', 'succeeded', 'failed', 'skipped')"
STATUSES_AFTER = "('queued', 'running', 'succeeded', 'failed', 'skipped')"


def _now() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                     nullable=False)


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('secret_sha256', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('organisation', sa.String(length=64), nullable=True),
    sa.Column('label', sa.Text(), nullable=True),
    _now(),
    sa.Column('expires', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("role IN ('admin', 'publisher')", name=op.f('ck_api_keys_role')),
    sa.CheckConstraint("role = 'admin' OR organisation IS NOT NULL",
                       name=op.f('ck_api_keys_publisher_org')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('prefix', name=op.f('uq_api_keys_prefix')),
    schema='catalog'
    )
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=True),
    sa.Column('key_prefix', sa.String(length=16), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=True),
    sa.Column('organisation', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('target', sa.Text(), nullable=True),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.Column('request_id', sa.Text(), nullable=True),
    sa.Column('client_ip', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['key_id'], ['catalog.api_keys.id'],
                            name=op.f('fk_audit_log_key_id_api_keys'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    schema='catalog'
    )
    op.create_index(op.f('ix_audit_log_at'), 'audit_log', ['at'], schema='catalog')
    op.create_index(op.f('ix_audit_log_key_id'), 'audit_log', ['key_id'], schema='catalog')
    op.create_table('uploads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('original_name', sa.Text(), nullable=True),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('member', sa.Text(), nullable=True),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=True),
    _now(),
    sa.CheckConstraint("kind IN ('file', 'url')", name=op.f('ck_uploads_kind')),
    sa.ForeignKeyConstraint(['dataset_id'], ['catalog.datasets.id'],
                            name=op.f('fk_uploads_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['key_id'], ['catalog.api_keys.id'],
                            name=op.f('fk_uploads_key_id_api_keys'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_uploads')),
    schema='catalog'
    )
    op.create_index(op.f('ix_uploads_dataset_id'), 'uploads', ['dataset_id'], schema='catalog')
    op.create_table('dataset_manifests',
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('manifest', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('current_upload_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    _now(),
    sa.Column('modified', sa.DateTime(timezone=True), server_default=sa.text('now()'),
              nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['catalog.datasets.id'],
                            name=op.f('fk_dataset_manifests_dataset_id_datasets'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by'], ['catalog.api_keys.id'],
                            name=op.f('fk_dataset_manifests_created_by_api_keys'),
                            ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['current_upload_id'], ['catalog.uploads.id'],
                            name=op.f('fk_dataset_manifests_current_upload_id_uploads'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('dataset_id', name=op.f('pk_dataset_manifests')),
    schema='catalog'
    )
    op.create_table('run_requests',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('upload_id', sa.Integer(), nullable=True),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('force', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=True),
    sa.Column('job_id', sa.BigInteger(), nullable=True),
    sa.Column('worker_host', sa.Text(), nullable=True),
    sa.Column('worker_pid', sa.Integer(), nullable=True),
    sa.Column('child_pid', sa.Integer(), nullable=True),
    sa.Column('heartbeat', sa.DateTime(timezone=True), nullable=True),
    _now(),
    sa.CheckConstraint("kind IN ('upload', 'url', 'rerun', 'schedule')",
                       name=op.f('ck_run_requests_kind')),
    sa.ForeignKeyConstraint(['run_id'], ['catalog.etl_runs.id'],
                            name=op.f('fk_run_requests_run_id_etl_runs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['dataset_id'], ['catalog.datasets.id'],
                            name=op.f('fk_run_requests_dataset_id_datasets'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['upload_id'], ['catalog.uploads.id'],
                            name=op.f('fk_run_requests_upload_id_uploads'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['key_id'], ['catalog.api_keys.id'],
                            name=op.f('fk_run_requests_key_id_api_keys'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_run_requests')),
    schema='catalog'
    )
    op.create_index(op.f('ix_run_requests_dataset_id'), 'run_requests', ['dataset_id'],
                    schema='catalog')
    op.drop_constraint(op.f('ck_etl_runs_status'), 'etl_runs', schema='catalog', type_='check')
    op.create_check_constraint(op.f('ck_etl_runs_status'), 'etl_runs',
                               f"status IN {STATUSES_AFTER}", schema='catalog')
    _install_procrastinate()


def _install_procrastinate() -> None:
    conn = op.get_bind()
    if conn.execute(sa.text("SELECT to_regclass('public.procrastinate_jobs')")).scalar():
        return
    # Run on the driver connection (same transaction): the SQL has %, :: and $$ bodies that
    # SQLAlchemy's text() and paramstyle handling must not touch.
    conn.connection.driver_connection.execute(  # type: ignore[union-attr]
        "SET LOCAL search_path TO public; " + SchemaManager.get_schema()
        + "; RESET search_path")


def downgrade() -> None:
    op.execute("UPDATE catalog.etl_runs SET status = 'failed', error = "
               "coalesce(error, 'queued when migration 0003 was undone') "
               "WHERE status = 'queued'")
    op.drop_constraint(op.f('ck_etl_runs_status'), 'etl_runs', schema='catalog', type_='check')
    op.create_check_constraint(op.f('ck_etl_runs_status'), 'etl_runs',
                               f"status IN {STATUSES_BEFORE}", schema='catalog')
    op.drop_table('run_requests', schema='catalog')
    op.drop_table('dataset_manifests', schema='catalog')
    op.drop_table('uploads', schema='catalog')
    op.drop_table('audit_log', schema='catalog')
    op.drop_table('api_keys', schema='catalog')
    op.execute("""
        DO $$ DECLARE r record; BEGIN
          FOR r IN SELECT tablename FROM pg_tables
                   WHERE schemaname = 'public' AND tablename LIKE 'procrastinate\\_%' LOOP
            EXECUTE format('DROP TABLE IF EXISTS public.%I CASCADE', r.tablename);
          END LOOP;
          FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_proc p
                   JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = 'public' AND p.proname LIKE 'procrastinate\\_%' LOOP
            EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', r.fn);
          END LOOP;
          FOR r IN SELECT t.typname FROM pg_type t
                   JOIN pg_namespace n ON n.oid = t.typnamespace
                   WHERE n.nspname = 'public' AND t.typname LIKE 'procrastinate\\_%'
                     AND t.typtype IN ('e', 'c') LOOP
            EXECUTE format('DROP TYPE IF EXISTS public.%I CASCADE', r.typname);
          END LOOP;
        END $$""")
