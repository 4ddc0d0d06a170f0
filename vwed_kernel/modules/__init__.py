"""One module per part of the ``VWED`` object (``VWED.api``, ``VWED.function``, ...)."""
