"""Executions of task-flow steps beyond one synchronous request: asynchronous ones
(stored, queued, retried, followed, never lost: ``service.py``), their records
(``record.py``), retries (``retry.py``), and the listeners that follow a step's progress
and output as it runs (``watchers.py``). Import the modules themselves."""
