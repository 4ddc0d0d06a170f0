"""The script engine: the model of running scripts (``model``), their lifecycle
(``lifecycle``), the supervisor of their kernels (``supervisor``) and what is kept
of them in the database (``persistence``)."""

from .lifecycle import ScriptEngine
from .model import MAX_REPLICAS, RESTART_POLICIES, RunningScript, ScriptTable, StartOptions

__all__ = [
    "ScriptEngine",
    "RunningScript",
    "ScriptTable",
    "StartOptions",
    "MAX_REPLICAS",
    "RESTART_POLICIES",
]
