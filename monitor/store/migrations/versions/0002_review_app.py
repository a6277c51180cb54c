"""review app: case assignment, outcome and notes; escalation outcomes; the per-school
allow-list of false positives; browser sessions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 10:05:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch mode: SQLite cannot add a foreign key to an existing table in place
    with op.batch_alter_table('cases') as batch:
        batch.add_column(sa.Column('assignee_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('outcome', sa.String(length=40), nullable=True))
        batch.add_column(sa.Column('closed_by', sa.String(length=200), nullable=True))
        batch.create_foreign_key(
            op.f('fk_cases_assignee_id_users'), 'users', ['assignee_id'], ['id']
        )
    with op.batch_alter_table('escalations') as batch:
        batch.add_column(sa.Column('outcome', sa.String(length=40), nullable=True))
        batch.add_column(sa.Column('outcome_note', sa.Text(), nullable=True))
        batch.add_column(sa.Column('outcome_by', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('outcome_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table('case_notes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('author', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_notes_case_id_cases')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_case_notes_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_notes'))
    )
    op.create_index(op.f('ix_case_notes_case_id'), 'case_notes', ['case_id'], unique=False)
    op.create_table('allow_list',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('text_hash', sa.String(length=64), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=True),
    sa.Column('added_by', sa.String(length=200), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_allow_list_case_id_cases')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_allow_list_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_allow_list')),
    sa.UniqueConstraint('school_id', 'text_hash', name=op.f('uq_allow_list_school_id'))
    )
    op.create_table('web_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_web_sessions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_web_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_web_sessions_token_hash'))
    )
    op.create_index(op.f('ix_web_sessions_user_id'), 'web_sessions', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_web_sessions_user_id'), table_name='web_sessions')
    op.drop_table('web_sessions')
    op.drop_table('allow_list')
    op.drop_index(op.f('ix_case_notes_case_id'), table_name='case_notes')
    op.drop_table('case_notes')
    with op.batch_alter_table('escalations') as batch:
        batch.drop_column('outcome_at')
        batch.drop_column('outcome_by')
        batch.drop_column('outcome_note')
        batch.drop_column('outcome')
    with op.batch_alter_table('cases') as batch:
        batch.drop_constraint(op.f('fk_cases_assignee_id_users'), type_='foreignkey')
        batch.drop_column('closed_by')
        batch.drop_column('outcome')
        batch.drop_column('assignee_id')
