"""The VWED gateway: a Tornado server that owns one IPython kernel per running
script, keeps the routing table of what each script registered, and routes
calls into the right kernel over Jupyter messaging.

It speaks to kernels only through the protocol in ``docs/protocol.md`` and
never imports ``vwed_kernel``.

Note: the import name ``kernel_gateway`` is also used by the
``jupyter-kernel-gateway`` distribution; the two must not share an environment.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
