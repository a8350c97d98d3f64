"""Named recipes: `gclf-train --recipe faces` runs gclf's recommended recipe in one command.

A recipe is a few ordinary runs in a row, each from the previous one's best.pt: train from
scratch at 112 px, where an epoch costs a quarter as much, then continue the same network at
the 224 px it will be exported with (docs/training.md, "Doing better than the study", has the
measurements behind it). The last stage trains into `--out`; the earlier ones into sibling
folders named `<out>-<stage>`, so each is a complete run folder of its own (its split, history
and metrics) and the final one is what gclf-export reads.

Options given on the command line win over the recipe's (`--weights imagenet` starts stage 1
from ImageNet; `--face-crop PATH` names the detector file). Running the same command again goes
on where it stopped: a finished stage is kept, an interrupted one resumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from gclf.runtime.errors import UsageError
from gclf.runtime.log import Log


@dataclass(frozen=True)
class Stage:
    name: str  # "112px": the earlier stages' run folders are <out>-<name>
    options: Mapping[str, Any]  # TrainConfig fields


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    common: Mapping[str, Any]  # every stage's options
    stages: tuple[Stage, ...]

    def stage_dirs(self, out: Path) -> list[Path]:
        """Each stage's run folder: the last one is `out` itself."""
        return [out.with_name(f"{out.name}-{stage.name}") for stage in self.stages[:-1]] + [out]

    def stage_values(self, index: int, values: Mapping[str, Any], given: set[str], previous: Path | None) -> dict[str, Any]:
        """The TrainConfig values of stage `index`: the recipe's, under the options given on the
        command line; a later stage starts from the previous stage's kept network."""
        recipe = {**self.common, **self.stages[index].options}
        merged = {**values, **{k: v for k, v in recipe.items() if k not in given}}
        if previous is not None:
            merged["weights"] = str(previous / "best.pt")  # not the user's --weights: that was stage 1's start
        return merged


# The options both stages of the recommended recipe share: AdamW with a one-cycle schedule,
# weight decay, the standard augmentation (which keeps grey photos level with colour ones).
_FROM_SCRATCH = {"optimizer": "adamw", "lr_schedule": "onecycle", "l2": 0.05, "augment": "standard", "batch_size": 32}
_TWO_SIZES = (
    Stage("112px", {"weights": "none", "image_size": 112, "max_epochs": 20, "learn_rate": 0.003}),
    Stage("224px", {"image_size": 224, "max_epochs": 6, "learn_rate": 0.0005}),
)

RECIPES: dict[str, Recipe] = {
    "faces": Recipe(
        "faces",
        "photos of people: face crops by YuNet, from scratch at 112 px then 224 px",
        {**_FROM_SCRATCH, "input_kind": "faces", "face_crop": "yunet"},
        _TWO_SIZES,
    ),
    "whole": Recipe(
        "whole",
        "whole images, from scratch at 112 px then 224 px",
        {**_FROM_SCRATCH, "input_kind": "whole_image"},
        _TWO_SIZES,
    ),
}


def run_recipe(
    recipe: Recipe,
    values: Mapping[str, Any],
    given: set[str],
    *,
    make_config: Callable[[dict[str, Any]], Any],
    train: Callable[[Any], Any],
    resume: Callable[[Path], Any],
    log: Log = print,
) -> Any:
    """Run `recipe`'s stages in order; returns the last stage's result (None if every stage was
    finished before, or on a torchrun rank other than 0). `make_config` turns values into a
    TrainConfig, `train` runs a new run, `resume` continues an interrupted one (gclf-train's own)."""
    out = Path(values["out"])
    dirs = recipe.stage_dirs(out)
    result = None
    previous: Path | None = None
    for index, (stage, run_dir) in enumerate(zip(recipe.stages, dirs)):
        label = f"recipe {recipe.name}, stage {index + 1} of {len(recipe.stages)} ({stage.name})"
        if (run_dir / "metrics.json").is_file():
            log(f"{label}: finished before, kept ({run_dir})")
        elif (run_dir / "config.json").is_file():
            log(f"{label}: resuming {run_dir}")
            result = resume(run_dir)
        else:
            stage_values = recipe.stage_values(index, values, given, previous)
            stage_values["out"] = run_dir
            if previous is not None and not (previous / "best.pt").is_file():
                raise UsageError(f"{label}: {previous} has no best.pt to continue from; remove it and run the recipe again")
            log(f"{label}: training into {run_dir}")
            result = train(make_config(stage_values))
        previous = run_dir
    return result
