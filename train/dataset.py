"""torch Datasets over decoded images, built on the runtime's preprocessing contract."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from gclf.runtime.preprocess import PreprocessSpec, preprocess, to_model_input
from gclf.train.image_cache import DiskImageCache
from gclf.train.scan import ImageStore, Sample

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class ImageDataset(Dataset):
    """Samples -> (model input tensor, label).

    Without augmentation this is exactly the runtime's `preprocess(decode_image(path))`
    (the store keeps the resized copy, and `to_model_input` does the rest). With
    augmentation, it is applied to the store's working copy (the disk cache's, a little
    larger than the input; the in-memory store's, the whole decoded photo) before the same
    `preprocess`. Reads go through the store, so the dataset is as cheap to copy into
    DataLoader worker processes as the store is (the disk cache: a path -> sha256 table).
    """

    def __init__(self, samples: Sequence[Sample], store: ImageStore | DiskImageCache, spec: PreprocessSpec, augment: Augment | None = None, seed: int = 0) -> None:
        self.samples = list(samples)
        self.store = store
        self.spec = spec
        self.augment = augment
        self.seed = seed
        self.epoch = 0  # set by the trainer so augmentation differs per epoch yet is reproducible

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[i]
        if self.augment is None:
            x = to_model_input(self.store.resized(sample.path), self.spec)[0]
        else:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            x = preprocess(self.augment(self.store.working(sample.path), rng), self.spec)
        return torch.from_numpy(x), sample.label


def loader_worker_options(workers: int) -> dict:
    """DataLoader arguments for `workers` processes preparing training batches (0: none).

    Not persistent: each epoch's workers are forked afresh, so they see the dataset's
    current `epoch` (augmentation differs per epoch); a fork costs milliseconds, and the
    dataset they copy holds no pixels. No worker_init_fn calls cv2.setNumThreads: in a child
    forked after the parent used OpenCV's thread pool it waits forever for the parent's
    threads (tests/train/test_image_cache.py checks loader workers after the pool ran).
    """
    if workers <= 0:
        return {}
    return {"num_workers": workers, "prefetch_factor": 2}
