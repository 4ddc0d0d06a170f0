"""Script kernels forked from a fork server instead of started as new interpreters.

``server.py`` (``ForkServer``: the gateway's end of the fork server, which runs
``python -m vwed_kernel.forkserver``), ``process.py`` (``ForkedProcess``: a forked
kernel seen as a ``Popen``), ``provisioner.py`` (``ForkProvisioner``: the
``jupyter_client`` kernel provisioner the gateway's kernelspec names). The rest
of the gateway starts kernels through ``jupyter_client`` as before and does not
know the difference; ``--no-fork-server`` writes the kernelspec without it.
"""

from .process import ForkedProcess
from .provisioner import PROVISIONER_NAME, ForkProvisioner
from .server import ForkServer, ForkServerUnavailable

__all__ = [
    "ForkServer",
    "ForkServerUnavailable",
    "ForkedProcess",
    "ForkProvisioner",
    "PROVISIONER_NAME",
]
