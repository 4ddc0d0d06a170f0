"""The VWED kernel: an IPython kernel with the ``VWED`` object preloaded.

This package runs *inside* every script kernel. It never imports the gateway
(``kernel_gateway``); the two sides talk only through the comm protocol written
down in ``docs/protocol.md``.
"""

__version__ = "0.1.0"

COMM_TARGET = "vwed"
"""Name of the comm target the kernel serves for the gateway."""

PROTOCOL_VERSION = 1
"""Version of the comm protocol (docs/protocol.md) this kernel speaks."""

__all__ = ["COMM_TARGET", "PROTOCOL_VERSION", "__version__"]
