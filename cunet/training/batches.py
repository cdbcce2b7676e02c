"""Training batches for the Keras backends without tf.data (JAX, torch).

`PatchBatches` is a Keras PyDataset that yields the batches of `cunet.data.pipeline.train_dataset`,
in the same order, so a run is the same stream of patches whichever backend trains it.
"""

from __future__ import annotations

import keras
import numpy as np

from ..data.pipeline import split_inputs_targets
from ..data.sampler import PatchSampler


class PatchBatches(keras.utils.PyDataset):
    """Epoch e, step i is the sampler's batch `first_index + e * steps_per_epoch + i`.

    batch_size: mixtures per batch; workers: threads drawing batches ahead of the training step.
    Items: (inputs, targets) dicts of float32 arrays shaped as `sampler.shapes(batch_size)`.
    """

    def __init__(
        self,
        sampler: PatchSampler,
        batch_size: int,
        steps_per_epoch: int,
        first_index: int = 0,
        workers: int = 1,
    ) -> None:
        # Threads, not processes: the sampler's numpy work releases the GIL, and forking a process
        # that holds an accelerator runtime is unsafe.
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=4 * workers)
        self.sampler = sampler
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.first_index = first_index

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __getitem__(self, step: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        return split_inputs_targets(self.sampler.batch(self.first_index + step, self.batch_size))

    def on_epoch_end(self) -> None:
        self.first_index += self.steps_per_epoch
