"""retention: legal hold and purge tombstones on cases; purge tombstones on evidence

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns without foreign keys: a plain ADD COLUMN on both databases, so the
    # evidence table (the hash chain) is never copied by a SQLite batch rebuild.
    op.add_column('cases', sa.Column('legal_hold_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('cases', sa.Column('legal_hold_by', sa.String(length=200), nullable=True))
    op.add_column('cases', sa.Column('legal_hold_reason', sa.Text(), nullable=True))
    op.add_column('cases', sa.Column('purged_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('evidence', sa.Column('purged_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('evidence') as batch:
        batch.drop_column('purged_at')
    with op.batch_alter_table('cases') as batch:
        batch.drop_column('purged_at')
        batch.drop_column('legal_hold_reason')
        batch.drop_column('legal_hold_by')
        batch.drop_column('legal_hold_at')
