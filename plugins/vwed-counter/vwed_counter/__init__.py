"""An example VWED plugin: named counters shared by every script of a gateway.

Two halves, each imported only where it runs: ``vwed_counter.module`` in script
kernels (``VWED.counter``), ``vwed_counter.service`` in the gateway (the counters
themselves). This file imports neither.
"""

__version__ = "0.1.0"
