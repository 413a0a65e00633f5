"""Storage and pure analysis: SQLAlchemy models, engine/sessions, keyword-only queries, Alembic migrations,
Pareto fronts and eps*. Imports none of service/, workers/, search_spaces/ (and no torch)."""

from db.contract import RESULT_FIELDS

__all__ = ["RESULT_FIELDS"]
