"""The options of one training run, their defaults, and config.json's backwards compatibility.

`TrainConfig` is the one place a training default is written: `gclf-train` and
`gclf-experiment` build their options from it (gclf.train.options), and a run's config.json
is `TrainConfig.to_dict()`. Torch-free, so the commands can declare their options without it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from gclf.runtime.errors import UsageError
from gclf.runtime.faces import DEFAULT_FACE_MARGIN
from gclf.train.split import SplitFractions

# Which network best.pt holds: the lowest validation loss, or the last epoch's.
KEEP_CHOICES = ("best", "last")


@dataclass(frozen=True)
class TrainConfig:
    """Options of one run. Defaults are the study's: 6 epochs, mini-batch 4, learn rate 0.001, SGD with momentum."""

    data: tuple[Path, ...]
    out: Path
    weights: str = "imagenet"
    max_epochs: int = 6
    batch_size: int = 4
    learn_rate: float = 1e-3
    momentum: float = 0.9
    optimizer: str = "sgdm"  # a name in gclf.train.optim.OPTIMIZERS ("sgdm": the study's)
    lr_schedule: str = "none"  # a name in gclf.train.optim.LR_SCHEDULES ("none": constant, the study's)
    lr_drop_factor: float = 0.1  # piecewise: multiply the learn rate by this...
    lr_drop_period: int = 10  # ...every this many epochs (MATLAB's LearnRateDropFactor/Period)
    l2: float = 1e-4  # L2 regularisation (weight decay), MATLAB trainingOptions' default
    shuffle: str = "every-epoch"  # a name in gclf.train.optim.SHUFFLES (MATLAB's Shuffle)
    seed: int = 0
    split: SplitFractions = field(default_factory=SplitFractions)
    max_train_per_class: int | None = None  # use only this many training images per class (val/test unchanged)
    image_size: int = 224
    input_kind: str = "whole_image"  # "whole_image" or "faces": what the runtime must feed the model
    # Faces models: crop every photo to the largest face this detector finds when the data is
    # scanned ("none": the photos as they are; "haar", "yunet" or a YuNet file, as gclf-infer's
    # --face-model), widened by face_margin; a photo without a face is kept whole or left out.
    face_crop: str = "none"
    face_margin: float = DEFAULT_FACE_MARGIN
    if_no_face: str = "whole"  # one of NO_FACE_ACTIONS
    augment: str = "none"  # preset name in gclf.train.augment.PRESETS ("none": the study's)
    augment_options: dict = field(default_factory=dict)  # AugmentConfig fields overriding the preset
    freeze: bool = False  # train only the new head; the backbone's features are computed once and cached
    validation_frequency: int = 1  # validate every this many epochs (and after the last)
    validation_patience: int | None = None  # stop after this many validations without a lower loss
    keep: str = "best"  # one of KEEP_CHOICES
    device: str = "auto"
    precision: str = "fp32"  # a name in gclf.train.precision.PRECISIONS: fp32 (the study's), bf16 or fp16 autocast
    channels_last: bool = False  # model and image batches in channels-last memory layout (for CUDA with bf16/fp16)
    verbose: bool = True  # the study's table of iterations
    progress_bar: bool = False  # a progress bar per epoch on stderr (when it is a terminal)
    verbose_frequency: int = 50  # iterations between verbose rows, as MATLAB's VerboseFrequency
    memory_budget_gb: float = 4.0  # decoded originals kept by --image-cache memory
    # Where decoded images are cached: a folder (None: $GCLF_HOME/images, ~/.cache/gclf/images),
    # or "memory" to keep every image in memory instead (gclf's first design).
    image_cache: str | None = None
    # Worker processes for the scan (decode, sha256, resize) and the training loader
    # (augmentation); 0: all in the main process; None: one per CPU core, at most 8.
    workers: int | None = None
    # Processes training together (torchrun's WORLD_SIZE; 1 for a plain gclf-train). Not an
    # option: gclf-train sets it from the environment. batch_size is per process.
    world_size: int = 1

    @property
    def global_batch_size(self) -> int:
        """Images per optimizer step over all processes."""
        return self.batch_size * self.world_size

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["data"] = [str(p) for p in self.data]
        d["out"] = str(self.out)
        d["global_batch_size"] = self.global_batch_size  # derived, for readers; from_dict drops it
        return d

    @classmethod
    def from_dict(cls, d: dict, *, source: Path | str = "config.json") -> "TrainConfig":
        """Read back `to_dict()` (a run's config.json). A missing option is refused, except
        those added after config.json files were first written: their defaults are exactly
        what runs before them did, so an older run still resumes."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k != "global_batch_size"}
        d = {**{name: value for name, value in defaults().items() if name in OPTIONS_ADDED_LATER}, **d}
        missing, unknown = sorted(names - d.keys()), sorted(d.keys() - names)
        if missing or unknown:
            raise UsageError(f"{source} does not match this gclf's options (missing {missing}, unknown {unknown})")
        try:
            values = dict(d, data=tuple(Path(p) for p in d["data"]), out=Path(d["out"]), split=SplitFractions(**d["split"]))
            return cls(**values)
        except (TypeError, ValueError, UsageError) as exc:
            raise UsageError(f"{source} holds invalid options ({exc})") from None


def defaults() -> dict:
    """Every TrainConfig field that has a default, with a fresh value of it (a new dict for
    augment_options, so no caller shares one)."""
    values = {}
    for f in dataclasses.fields(TrainConfig):
        if f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
    return values


# Options a config.json written by the first gclf release lacks; each default reproduces what
# that release did (no drop schedule, reshuffle every epoch, all data, no freezing, validation
# every epoch without early stopping, keep the best, the iteration table on, one process, fp32
# in the default memory layout, the photos as they are (no face crops), and the image cache
# and worker processes, which change where pixels are kept and who computes them, not the pixels).
OPTIONS_ADDED_LATER = frozenset({
    "lr_drop_factor", "lr_drop_period", "shuffle", "max_train_per_class", "augment_options", "freeze",
    "validation_frequency", "validation_patience", "keep", "progress_bar", "world_size",
    "precision", "channels_last", "face_crop", "face_margin", "if_no_face", "image_cache", "workers",
})
