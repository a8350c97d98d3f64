"""A face detector's answer is checked before training's crops and export's calibration use it.

The stand-in detector (gclf_testutil.UntrustworthyDetector) answers one good face among
eleven entries no face can be (NaN, infinity, empty, inverted, outside the photo, bad
scores, not numbers). Training's scan crops to the good face only and a photo with nothing
usable is a photo without a face; export's calibration and parity crops do the same (they
once ended in a traceback on an infinite box) and say how many entries were dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gclf.runtime.faces.crops import FaceCropper
from gclf.runtime.preprocess import PreprocessSpec
from gclf.train.scan import ImageStore, scan_folders
from gclf_testutil import UntrustworthyDetector, noise_bgr, write_image_file

SPEC = PreprocessSpec(input_height=16, input_width=16)
PHOTO_HW = (60, 80)
BAD = UntrustworthyDetector.BAD_PER_ANSWER


def _cropper(detector: UntrustworthyDetector) -> FaceCropper:
    return FaceCropper(FaceCropper.create("haar").spec, None, detector=detector)


def _photos(root: Path) -> list[Path]:
    return [write_image_file(root / cls / f"{i}.png", noise_bgr(10 * k + i, *PHOTO_HW)) for k, cls in enumerate("ab") for i in range(2)]


def test_training_crops_to_the_good_face_only(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "data")
    cropper = _cropper(UntrustworthyDetector())
    store = ImageStore(SPEC)

    scan = scan_folders([tmp_path / "data"], store, transform=cropper)

    _, _, w, h = UntrustworthyDetector.good_box(PHOTO_HW)
    assert scan.no_face == [] and len(scan.samples) == 4
    for path in photos:
        assert store.decoded(path).shape == (h, w, 3)
    assert cropper.dropped == 4 * BAD


def test_training_lists_a_photo_with_nothing_usable_as_one_without_a_face(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "data")
    told: list[str] = []

    scan = scan_folders([tmp_path / "data"], ImageStore(SPEC), transform=_cropper(UntrustworthyDetector(good=False)), on_no_face=told.append)

    assert sorted(scan.no_face) == sorted(map(str, photos)) == sorted(told)
    assert len(scan.samples) == 4  # kept whole (--if-no-face whole)


def test_export_calibration_crops_to_the_good_face_and_says_how_many_answers_were_dropped(tmp_path: Path) -> None:
    from gclf.export.pipeline import load_batch, load_image, log_dropped_answers

    photos = _photos(tmp_path / "data")
    cropper = _cropper(UntrustworthyDetector())

    image = load_image(photos[0], cropper)  # an infinite box once ended this with a traceback
    batch = load_batch(photos, SPEC, cropper)

    _, _, w, h = UntrustworthyDetector.good_box(PHOTO_HW)
    assert image.shape == (h, w, 3)
    assert batch.shape == (4, 3, 16, 16) and np.isfinite(batch).all()
    logged: list[str] = []
    log_dropped_answers(cropper, "the calibration and parity face crops", logged.append)
    assert logged == [f"the calibration and parity face crops: {5 * BAD} detector answers dropped (not finite, empty, outside the photo or a bad score)"]
    quiet: list[str] = []
    log_dropped_answers(_cropper(UntrustworthyDetector()), "nothing cropped yet", quiet.append)
    assert quiet == []
