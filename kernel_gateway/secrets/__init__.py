"""Secrets scripts read by name (``VWED.secrets.get``): encrypted at rest
(``crypto.py``), names and scopes (``scope.py``), the service (``vault.py``)."""

from .crypto import ENV_KEY, SecretsKey, SecretsKeyError, Undecryptable
from .scope import allows, check_scope

__all__ = ["ENV_KEY", "SecretsKey", "SecretsKeyError", "Undecryptable", "allows", "check_scope"]
