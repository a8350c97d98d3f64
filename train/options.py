"""The training options, declared once for gclf-train and gclf-experiment.

Each option names the TrainConfig field it sets; its default is that field's default (the
study's, written once in gclf.train.config) and its choices come from the code that acts on
them: optimizers, schedules and shuffles from gclf.train.optim, augmentation presets from
gclf.train.augment, input kinds from the runtime, --keep from the config. No torch here: the
commands build their options at start-up.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import click

from gclf.runtime.errors import UsageError
from gclf.runtime.cli.params import FaceModelParam
from gclf.runtime.faces import NO_FACE_ACTIONS
from gclf.runtime.metadata import INPUT_KINDS
from gclf.train.augment import PRESETS, AugmentConfig
from gclf.train.config import KEEP_CHOICES, TrainConfig, defaults
from gclf.train.optim import LR_SCHEDULES, OPTIMIZERS, SHUFFLES
from gclf.train.precision import PRECISIONS
from gclf.train.split import SplitFractions

F = TypeVar("F", bound=Callable[..., Any])

AUGMENT_PREFIX = "aug_"  # parameter names of the single-transform flags: aug_<AugmentConfig field>


class SplitParam(click.ParamType):
    name = "TRAIN,VAL,TEST"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            fractions = SplitFractions.parse(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)
        # NaN passes every comparison in SplitFractions' check, so refuse it here.
        if not all(math.isfinite(v) for v in dataclasses.astuple(fractions)):
            self.fail(f"--split fractions must be finite numbers, got {value!r}", param, ctx)
        return fractions


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (nan passes its min/max comparisons)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number.", param, ctx)
        return number


class FaceCropParam(FaceModelParam):
    """`--face-crop none|haar|yunet|PATH`: gclf-infer's --face-model values, or none. A path
    is stored absolute (config.json), so --resume finds it from any working folder."""

    name = "none|haar|yunet|PATH"

    def convert(self, value, param, ctx):
        if value == "none":
            return value
        converted = super().convert(value, param, ctx)
        return str(converted.absolute()) if isinstance(converted, Path) else converted


_FROM_CONFIG = object()  # the option's default is its TrainConfig field's


@dataclass(frozen=True)
class _Option:
    name: str  # the TrainConfig field, or aug_<AugmentConfig field>, or "verbose"
    flags: tuple[str, ...]
    type: Any = None
    help: str = ""
    default: Any = _FROM_CONFIG
    show_default: bool | str = True

    def decorator(self) -> Callable[[F], F]:
        default = defaults()[self.name] if self.default is _FROM_CONFIG else self.default
        show_default = self.show_default
        if self.name == "split":  # shown and parsed as the command line writes it
            default = f"{default.train:g},{default.val:g},{default.test:g}"
        kwargs = {"default": default, "help": self.help or None, "show_default": show_default}
        if self.type is not None:
            kwargs["type"] = self.type
        return click.option(*self.flags, self.name, **kwargs)


def _choice(table: Iterable[str]) -> click.Choice:
    return click.Choice(list(table))


def _augment_flag(field: str, flag: str, type: Any, help: str) -> _Option:
    assert field in {f.name for f in dataclasses.fields(AugmentConfig)}, field
    return _Option(AUGMENT_PREFIX + field, (flag,), type, help + " [default: the preset's].", default=None, show_default=False)


TRAINING_OPTIONS: tuple[_Option, ...] = (
    _Option("weights", ("--weights",), help="'imagenet' (torchvision's cache/download), 'none' (random init), or a path to a GoogLeNet state dict or gclf checkpoint."),
    _Option("max_epochs", ("--max-epochs",), click.IntRange(min=1)),
    _Option("batch_size", ("--batch-size", "--mini-batch-size"), click.IntRange(min=1), "Images per training step in each process: under torchrun the global batch is this times the number of processes (as in torchvision's reference scripts)."),
    _Option("learn_rate", ("--learn-rate", "--initial-learn-rate"), FiniteFloatRange(min=0, min_open=True)),
    _Option("momentum", ("--momentum",), FiniteFloatRange(0, 1, max_open=True)),
    _Option("optimizer", ("--optimizer",), _choice(OPTIMIZERS), "sgdm: SGD with momentum (the study's)."),
    _Option("lr_schedule", ("--lr-schedule",), _choice(LR_SCHEDULES), "Learn-rate schedule, stepped every iteration; piecewise drops it by --lr-drop-factor every --lr-drop-period epochs."),
    _Option("lr_drop_factor", ("--lr-drop-factor",), FiniteFloatRange(0, 1, min_open=True), "piecewise: factor the learn rate is multiplied by at each drop."),
    _Option("lr_drop_period", ("--lr-drop-period",), click.IntRange(min=1), "piecewise: epochs between drops."),
    _Option("l2", ("--l2",), FiniteFloatRange(min=0), "L2 regularisation (weight decay)."),
    _Option("shuffle", ("--shuffle",), _choice(SHUFFLES), "Order of the training images: reshuffled every epoch, shuffled once, or never (folder order)."),
    _Option("split", ("--split",), SplitParam(), "Train, validation and test fractions."),
    _Option("max_train_per_class", ("--max-train-per-class",), click.IntRange(min=1), "Train on at most this many images per class (drawn with --seed); validation and test stay those of the full split."),
    _Option("seed", ("--seed",), click.IntRange(0, 2**63 - 1), "Seed for the split, initialisation and shuffling."),
    _Option("image_size", ("--image-size",), click.IntRange(32, 1024), "Square input size the images are squashed to."),
    _Option("freeze", ("--freeze/--no-freeze",), help="Train only the new head; the backbone (from --weights) stays fixed and its features are computed once, so each epoch costs almost nothing."),
    _Option("validation_frequency", ("--validation-frequency",), click.IntRange(min=1), "Validate every N epochs (and after the last one). gclf validates at epoch ends, where every validation has a resumable checkpoint."),
    _Option("validation_patience", ("--validation-patience",), click.IntRange(min=1), "Stop early after N validations without a lower validation loss [default: never].", show_default=False),
    _Option("keep", ("--keep",), _choice(KEEP_CHOICES), "The network the run keeps in best.pt (and exports): lowest validation loss, or the last epoch's."),
    _Option("augment", ("--augment",), _choice(PRESETS), "Augmentation preset on the decoded image: none (the study's), light (flip, crop), standard (flip, crop, rotation, brightness/contrast, 20% grey). The options below switch or tune single transforms on top of it."),
    _augment_flag("flip", "--flip/--no-flip", None, "Random horizontal flip"),
    _augment_flag("crop_scale", "--crop-scale", FiniteFloatRange(0.05, 1.0), "Random crop keeping at least this share of the area; 1 turns it off"),
    _augment_flag("rotate_deg", "--rotate", FiniteFloatRange(0, 180), "Random rotation of up to this many degrees; 0 turns it off"),
    _augment_flag("brightness", "--brightness", FiniteFloatRange(0, 1), "Random brightness change of up to this share"),
    _augment_flag("contrast", "--contrast", FiniteFloatRange(0, 1), "Random contrast change of up to this share"),
    _augment_flag("grey_p", "--grey-p", FiniteFloatRange(0, 1), "Probability of turning a training image grey: the remedy for grey photos"),
    _Option("input_kind", ("--input-kind",), _choice(INPUT_KINDS), "What the photos show: 'faces' (face crops; the live runtime then detects and crops faces first) or 'whole_image'."),
    _Option("face_crop", ("--face-crop",), FaceCropParam(), "With --input-kind faces: crop every photo (training, validation, test) to the largest face this detector finds when the data is scanned, as gclf-infer crops new photos (its --face-model values); the detector is recorded in the model, and the runtime then crops with it by default. none: the photos as they are."),
    _Option("face_margin", ("--face-margin",), FiniteFloatRange(0.0, 2.0), "With --face-crop: widen each face box by this share of its size on every side before cropping (gclf-infer's --face-margin)."),
    _Option("if_no_face", ("--if-no-face",), _choice(NO_FACE_ACTIONS), "With --face-crop: a photo in which no face is found is kept whole, or left out (skip); either way it is listed by name."),
    _Option("device", ("--device",), help="'auto' (GPU when present), 'cpu' or 'cuda'."),
    _Option("workers", ("--workers",), click.IntRange(min=0), "Worker processes that read, hash, decode and resize the photos during the scan, and prepare (augment) training batches; 0: all in the main process [default: one per CPU core, at most 8].", show_default=False),
    _Option("image_cache", ("--image-cache",), help="Folder of the decoded-image cache: pixels on disk, reused by later runs and --resume, so memory does not grow with the number of photos; 'memory' keeps every image in memory instead [default: $GCLF_HOME/images, i.e. ~/.cache/gclf/images].", show_default=False),
    _Option("precision", ("--precision",), _choice(PRECISIONS), "Arithmetic of the training and validation passes: fp32 (the study's), or automatic mixed precision in bf16 (CPU or CUDA) or fp16 (CUDA only, with a gradient scaler). Weights, checkpoints and exports stay fp32."),
    _Option("channels_last", ("--channels-last/--no-channels-last",), help="Model and image batches in channels-last memory layout: faster convolutions on CUDA with bf16/fp16, rarely on CPU."),
    # Neither flag (None): a progress bar on a terminal instead of the iteration table.
    _Option("verbose", ("--verbose/--quiet",), help="--verbose: the study's table of iterations; --quiet: only a line per epoch [default: a progress bar per epoch on a terminal].", default=None, show_default=False),
    _Option("verbose_frequency", ("--verbose-frequency",), click.IntRange(min=1), "Iterations between verbose rows."),
)
OPTION_NAMES = frozenset(o.name for o in TRAINING_OPTIONS)
# What a run prints, not what it computes (gclf-experiment writes each run's log to a file).
DISPLAY_OPTIONS = frozenset({"verbose", "verbose_frequency"})


def training_options(*, leave_out: Iterable[str] = ()) -> Callable[[F], F]:
    """A decorator adding the training options to a click command, in gclf-train's order,
    but those named in `leave_out` (option names: TrainConfig fields, aug_<transform>)."""
    leave_out = frozenset(leave_out)
    unknown = leave_out - OPTION_NAMES
    assert not unknown, f"no training option named {sorted(unknown)}"
    chosen = [o for o in TRAINING_OPTIONS if o.name not in leave_out]

    def decorate(fn: F) -> F:
        for option in reversed(chosen):
            fn = option.decorator()(fn)
        return fn

    return decorate


def config_values(options: dict[str, Any]) -> dict[str, Any]:
    """The training options' parsed values as TrainConfig keyword arguments; removes them
    from `options` (what is left is the command's own)."""
    values = {name: options.pop(name) for name in list(options) if name in OPTION_NAMES}
    overrides = {}
    for name in [n for n in values if n.startswith(AUGMENT_PREFIX)]:
        value = values.pop(name)
        if value is not None:  # a flag left out keeps the preset's value
            overrides[name.removeprefix(AUGMENT_PREFIX)] = value
    values["augment_options"] = overrides
    if "verbose" in values:
        values["progress_bar"] = values["verbose"] is None
        values["verbose"] = bool(values["verbose"])
    unknown = values.keys() - {f.name for f in dataclasses.fields(TrainConfig)}
    assert not unknown, f"options that are no TrainConfig field: {sorted(unknown)}"
    return values
