"""`--freeze`: train only the new head on features of a frozen backbone.

The backbone's weights and batch-norm statistics stay exactly as loaded (ImageNet weights, or
a gclf checkpoint trained on other photos); only `model.fc` learns. Its input is GoogLeNet's
pooled 1024-value feature vector, which, for a frozen backbone and unaugmented images, is the
same every epoch: so it is computed once (one forward pass per image) and N epochs then cost
N passes over an (images x 1024) matrix. With augmentation every epoch sees other pixels, so
the features are computed again each epoch (still forward only, no backward).

The trained head is the model's own `fc`, so checkpoints, --resume and export are unchanged.
"""

from __future__ import annotations

import math
import time
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gclf.runtime.log import Log
from gclf.train.epoch import EvalResult
from gclf.train.precision import FP32, Precision


class FrozenBackbone:
    def __init__(self, model: nn.Module, device: torch.device, *, batch_size: int, recompute_each_epoch: bool, log: Log, precision: Precision = FP32) -> None:
        model.requires_grad_(False)
        model.fc.requires_grad_(True)
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.recompute_each_epoch = recompute_each_epoch
        self.log = log
        self.precision = precision
        self._train: tuple[torch.Tensor, torch.Tensor] | None = None
        self._val: tuple[torch.Tensor, torch.Tensor] | None = None

    @torch.no_grad()
    def features(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1024) pooled backbone features and (N,) labels, in dataset order."""
        head = self.model.fc
        self.model.eval()  # batch-norm uses its stored statistics; dropout is off
        self.model.fc = nn.Identity()
        try:
            feats, labels = [], []
            for x, y in DataLoader(dataset, batch_size=self.batch_size, shuffle=False):
                with self.precision.autocast():
                    feats.append(self.model(self.precision.inputs(x, self.device)).float())
                labels.append(y.to(self.device))
        finally:
            self.model.fc = head
        if not feats:
            return torch.empty(0, 0, device=self.device), torch.empty(0, dtype=torch.long, device=self.device)
        return torch.cat(feats), torch.cat(labels)

    def train_features(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        if self._train is None or self.recompute_each_epoch:
            started = time.monotonic()
            self._train = self.features(dataset)
            what = "this epoch's augmented" if self.recompute_each_epoch else "the"
            self.log(f"--freeze: backbone features of {what} {len(self._train[1])} training images computed in {time.monotonic() - started:.1f} s")
        return self._train

    def head_logits(self, feats: torch.Tensor, *, train: bool) -> torch.Tensor:
        # GoogLeNet's own dropout sits between the pooled features and fc: keep it in training.
        dropout: nn.Module = getattr(self.model, "dropout", nn.Identity())
        dropout.train(train)
        return self.model.fc(dropout(feats))

    def training_batches(self, loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's (features, labels) batches for `train_head`, in `loader`'s own
        batch_sampler's order, so --shuffle, the seed and --resume behave exactly as for
        full training. The features are computed now, not at the first batch."""
        feats, labels = self.train_features(loader.dataset)

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for indices in loader.batch_sampler:
                index = torch.as_tensor(list(indices), device=feats.device)
                yield feats[index], labels[index]

        return batches()

    def train_head(self, feats: torch.Tensor) -> torch.Tensor:
        """The forward pass of a --freeze training step (gclf.train.epoch.EpochContext.forward)."""
        return self.head_logits(feats, train=True)

    @torch.no_grad()
    def evaluate_head(self, loader: DataLoader) -> EvalResult:
        """Validation through the head on cached features: the same numbers as evaluating the
        whole model, since the backbone is frozen and the validation images never change."""
        if self._val is None:
            self._val = self.features(loader.dataset)
        feats, labels = self._val
        if len(labels) == 0:
            return EvalResult(math.nan, math.nan, np.empty(0, dtype=np.int64), np.empty((0, 0)))
        with self.precision.autocast():
            logits = self.head_logits(feats, train=False).float()
        loss = nn.functional.cross_entropy(logits, labels).item()
        probs = torch.softmax(logits, dim=1).cpu().numpy()
        labels_np = labels.cpu().numpy()
        return EvalResult(loss, float((probs.argmax(1) == labels_np).mean()), labels_np, probs)

