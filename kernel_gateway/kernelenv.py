"""The environment a kernel starts with: built from an allow-list, never inherited.

Security: a kernel runs the scripts' code, so it must not see the gateway's own
secrets (``VWED_TOKEN``, ``VWED_CALLER_TOKEN``, ``VWED_SMTP_PASSWORD``,
``VWED_PLATFORM_TOKEN``, database URLs with passwords, cloud credentials, ...).
jupyter_client would hand the kernel a copy of ``os.environ``; the gateway passes
this environment instead, so only what is listed here (and what the operator
names with ``--kernel-env``) reaches a kernel. No ``VWED_*`` variable is passed:
a kernel the gateway drives talks to it over its Jupyter channels, signed with the
session key of its connection file, and needs no token.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

__all__ = ["ALLOWED", "ALLOWED_PREFIXES", "kernel_environment", "check_extra_names"]

# What a Python kernel needs to run and to behave like the gateway's host (locale,
# time zone, temp folder, certificates, the virtualenv and Jupyter's own paths).
ALLOWED = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "VIRTUAL_ENV",
        "IPYTHONDIR",
        "MPLBACKEND",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "LD_LIBRARY_PATH",
        "PYDEVD_DISABLE_FILE_VALIDATION",
    }
)
ALLOWED_PREFIXES = ("LC_", "JPY_", "JUPYTER_")
# Even under an allowed prefix, a name that says it holds a secret stays out
# (JUPYTER_TOKEN, JUPYTER_GATEWAY_AUTH_TOKEN, ...).
SECRET_WORDS = ("TOKEN", "PASSWORD", "PASSWD", "SECRET", "KEY", "CREDENTIAL")


def check_extra_names(names: Iterable[str]) -> list[str]:
    """The problems with the operator's extra names (``--kernel-env``): a gateway
    setting (``VWED_*``) is never passed, whatever is asked."""
    return [
        f"kernel_env cannot pass {name!r}: the gateway's own VWED_* settings stay out of kernels"
        for name in names
        if name.upper().startswith("VWED_")
    ]


def kernel_environment(
    extra_names: Iterable[str] = (), source: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables of ``source`` (default ``os.environ``) a kernel may see (a
    kernel started as another user gets that user's ``HOME``/``USER``/``LOGNAME``
    on top: ``kerneluser.KernelUser.env``)."""
    source = os.environ if source is None else source
    extra = {n for n in extra_names if n and not n.upper().startswith("VWED_")}
    env = {
        name: value
        for name, value in source.items()
        if (
            name in ALLOWED
            or (name.startswith(ALLOWED_PREFIXES) and not any(w in name for w in SECRET_WORDS))
            or name in extra
        )
        and not name.startswith("VWED_")
    }
    return env
