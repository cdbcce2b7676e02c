"""Catalogs on Ray: `cunet batch`, from an embedded local instance to a cluster of machines.

`listing` (files, folders, manifests, URIs -> songs), `plan` (output names, checks, songs already
done), `worker` (the actor: one model, `cunet.jobs.separate_file` per song), `cluster` (joining Ray,
the actors, the job's scratch folder), `report` (JSONL report, failures, progress), `runner`
(`run_batch`: the bounded stream of songs, retries when a worker dies). Ray is imported only when a
batch runs (`pip install "cunet[ray]"`).
"""

from __future__ import annotations

from .listing import BatchInput, list_inputs
from .runner import BatchOptions, run_batch
from .worker import SongWorker, WorkerSettings

__all__ = ["BatchInput", "BatchOptions", "SongWorker", "WorkerSettings", "list_inputs", "run_batch"]
