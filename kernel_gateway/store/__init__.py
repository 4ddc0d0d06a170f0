"""The gateway's database: SQLAlchemy 2.x models, migrations (Alembic), and the
queries the gateway runs. Every call into the database runs in a worker thread,
never on the event loop (see ``db.Database``)."""

from .db import Database, DatabaseError
from .models import CallRow, LogRow, RunRow

__all__ = ["Database", "DatabaseError", "LogRow", "RunRow", "CallRow"]
