"""The RSS of many kernels' process trees is read with one walk of the process table
(kernel_gateway/proctree.py), and a tree's descendants still count (real processes)."""

from __future__ import annotations

import subprocess
import sys
import threading

import psutil
import pytest

from kernel_gateway import proctree

pytestmark = pytest.mark.timeout(60)

# a parent that starts a child holding 40 MiB, then waits
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "b = bytearray(40 * 1048576); import time; print('up', flush=True); time.sleep(60)"],
    stdout=subprocess.PIPE)
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_tree_counts_its_descendants_and_many_looks_walk_the_table_once(monkeypatch) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        proc = psutil.Process(parent.pid)
        walks = []
        real = psutil.process_iter
        me = threading.current_thread()

        def counted(*args, **kwargs):
            if threading.current_thread() is me:  # a gateway's thread may look too
                walks.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(psutil, "process_iter", counted)
        monkeypatch.setattr(proctree, "_table", None)  # read before the child started
        rss = proctree.tree_rss(proc)
        assert rss >= proc.memory_info().rss + child.memory_info().rss
        assert child.memory_info().rss > 40 * 1048576
        others = [psutil.Process(p) for p in psutil.pids()[:50]]
        for other in others:
            try:
                proctree.tree_rss(other)
            except psutil.Error:
                pass
        assert len(walks) <= 1, "one walk of the process table for all the looks"
    finally:
        if child is not None:
            child.kill()
        parent.kill()
        parent.wait(10)
