"""The VWED platform's data seen by scripts (``VWED.storage``, ``VWED.task``,
``VWED.robot``), behind one backend interface: the embedded backend keeps it in the
gateway's database; the HTTP backend forwards to a VWED server."""

from .base import METHODS, PlatformBackend
from .embedded import EmbeddedBackend
from .remote import HttpBackend

__all__ = ["PlatformBackend", "EmbeddedBackend", "HttpBackend", "METHODS"]
