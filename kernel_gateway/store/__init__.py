"""The gateway's database: SQLAlchemy 2.x models (``models.py``), migrations
(Alembic), the queries (``Database``, ``db.py`` and the table groups it is made of),
and ``StoreService`` (``service.py``), which runs them off the event loop with
deadlines, named one by one. Every call into the database runs in a worker thread,
never on the event loop."""

from .callquery import CallQuery
from .db import Database, DatabaseError
from .logquery import LogQuery
from .models import CallRow, LogRow, RunRow

__all__ = ["Database", "DatabaseError", "CallQuery", "LogQuery", "LogRow", "RunRow", "CallRow"]
