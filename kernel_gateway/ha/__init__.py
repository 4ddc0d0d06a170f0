"""Active/standby gateways on one PostgreSQL database (``--ha``, docs/scaling.md).

::

    ActiveLock    (lock.py)      the advisory lock on its own connection: take, check, release
    Failover      (failover.py)  the role (standby, activating, active, fenced) and its loop
    StandbyGate   (gate.py)      HTTP: 503 STANDBY for every call but health until active
"""

from .failover import Failover
from .gate import StandbyGate
from .lock import ActiveLock, lock_key

__all__ = ["ActiveLock", "Failover", "StandbyGate", "lock_key"]
