"""The detector in training: `gclf-train --face-crop` crops every photo to its largest face at
scan time, lists the photos without one, and records the detector (a FaceCropSpec) in the
checkpoint, then in the ONNX metadata, from where the runtime crops new photos the same way.

The scan and store tests use a stand-in cropper (a coloured patch is "the face"), so sizes
and no-face photos are known. The end-to-end tests use a real face photo from
../shared/datasets/gender-faces pasted on a larger picture, with the YuNet file in
../shared/models, and are skipped with the reason where ../shared is absent.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from gclf.runtime.errors import EXIT_USAGE, BadModelError, UsageError
from gclf.runtime.faces import DEFAULT_FACE_MARGIN, default_face_model
from gclf.runtime.faces.crops import FaceCropper
from gclf.runtime.faces.spec import FaceCropSpec
from gclf.runtime.errors import WeightsUnavailableError
from gclf.runtime.faces.choice import resolve_face_detection
from gclf.runtime.metadata import ModelMetadata
from gclf.runtime.preprocess import PreprocessSpec, resize_to_input
from gclf.train.config import TrainConfig
from gclf.train.scan import ImageStore, scan_folders
from gclf_testutil import write_image_file
from gclf_testutil import SHARED

DATASET = SHARED / "datasets" / "gender-faces"
YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"
SPEC = PreprocessSpec(input_height=16, input_width=16)
PATCH = (10, 6, 24, 30)  # x, y, w, h of the "face" in the stand-in photos
FAKE_SHA = "ab" * 32


class PatchCropper:
    """A stand-in FaceCropper: the face is the red patch; a photo without red has none.
    Counts its calls, to show that a store over its budget crops again."""

    key = "test:red-patch"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        self.calls += 1
        red = (rgb[..., 0] > 200) & (rgb[..., 1] < 60)
        if not red.any():
            return None
        ys, xs = np.nonzero(red)
        return rgb[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].copy()


def _photo(seed: int, face: bool) -> np.ndarray:
    """A 60x80 BGR picture of noise, with a red patch (the face) where `face`."""
    image = np.random.default_rng(seed).integers(0, 120, size=(60, 80, 3), dtype=np.uint8)
    if face:
        x, y, w, h = PATCH
        image[y : y + h, x : x + w] = (20, 20, 230)
        image[y + 5, x + 5] = (20, 20, 240)  # not a plain colour: the crop's content is checked
    return image


@pytest.fixture
def patch_photos(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for cls, offset in (("a", 0), ("b", 100)):
        for i in range(3):
            write_image_file(root / cls / f"{i}.png", _photo(offset + i, face=True))
    write_image_file(root / "a" / "noface.png", _photo(50, face=False))
    return root


# --- the scan and the store ------------------------------------------------------------------


def test_the_store_holds_the_crops_not_the_photos(patch_photos: Path) -> None:
    cropper = PatchCropper()
    store = ImageStore(SPEC)

    scan = scan_folders([patch_photos], store, transform=cropper)

    crop = store.decoded(patch_photos / "a" / "0.png")
    assert crop.shape == (PATCH[3], PATCH[2], 3)
    assert crop[5, 5, 2] < crop[0, 0, 2] + 50 and crop[5, 5, 0] == 240  # RGB: the marked pixel
    assert np.array_equal(store.resized(patch_photos / "a" / "0.png"), resize_to_input(crop, SPEC))
    assert len(scan.samples) == 7


@pytest.mark.parametrize("action", ["whole", "skip"])
def test_photos_without_a_face_are_listed_and_kept_whole_or_left_out(patch_photos: Path, action: str) -> None:
    cropper = PatchCropper()
    store = ImageStore(SPEC)
    told = []

    scan = scan_folders([patch_photos], store, transform=cropper, no_face=action, on_no_face=told.append)

    noface = str(patch_photos / "a" / "noface.png")
    assert scan.no_face == [noface] and told == [noface]
    kept = {str(s.path) for s in scan.samples}
    if action == "whole":
        assert noface in kept and store.decoded(Path(noface)).shape == (60, 80, 3)
    else:
        assert noface not in kept and len(kept) == 6


def test_a_store_over_its_budget_crops_the_photos_it_decodes_again(patch_photos: Path) -> None:
    cropper = PatchCropper()
    store = ImageStore(SPEC, memory_budget_bytes=0)
    scan_folders([patch_photos], store, transform=cropper)
    calls = cropper.calls

    again = store.decoded(patch_photos / "b" / "1.png")

    assert cropper.calls == calls + 1  # decoded from disk and cropped again, not kept
    assert again.shape == (PATCH[3], PATCH[2], 3)
    whole = store.decoded(patch_photos / "a" / "noface.png")  # no face then, no face now: whole
    assert whole.shape == (60, 80, 3)


def test_the_disk_image_cache_holds_the_same_crops_and_remembers_photos_without_a_face(patch_photos: Path, tmp_path: Path) -> None:
    # gclf-train's default store: crops made in worker processes, found again by a later run.
    from gclf.train.image_cache import DiskImageCache

    memory = ImageStore(SPEC)
    expected = scan_folders([patch_photos], memory, transform=PatchCropper())
    disk = DiskImageCache(tmp_path / "cache", SPEC, work_hw=(40, 40))
    scan = scan_folders([patch_photos], disk, transform=PatchCropper(), workers=2)
    again = DiskImageCache(tmp_path / "cache", SPEC, work_hw=(40, 40))
    rescan = scan_folders([patch_photos], again, transform=PatchCropper(), no_face="skip")

    assert scan.no_face == expected.no_face == rescan.no_face == [str(patch_photos / "a" / "noface.png")]
    assert disk.decodes == 7 and again.decodes == 0 and len(rescan.samples) == 6
    for s in expected.samples:
        assert np.array_equal(disk.resized(s.path), memory.resized(s.path))


# --- options -------------------------------------------------------------------------------


def _train(*args) -> object:
    from gclf.train.cli import main as train_main

    return CliRunner().invoke(train_main, [str(a) for a in args])


@pytest.mark.parametrize(
    "args, says",
    [
        (["--face-crop", "haar"], "--face-crop haar needs --input-kind faces"),
        (["--input-kind", "faces", "--face-margin", "0.2"], "--face-margin only apply with --face-crop"),
        (["--input-kind", "faces", "--if-no-face", "skip"], "--if-no-face only apply with --face-crop"),
    ],
)
def test_face_crop_options_are_refused_without_their_context(patch_photos: Path, tmp_path: Path, args, says) -> None:
    out = tmp_path / "run"
    result = _train("--data", patch_photos, "--out", out, *args)

    assert result.exit_code == EXIT_USAGE, result.output
    assert says in result.output and "error:" in result.output and "Traceback" not in result.output
    assert not out.exists()  # refused before the run folder is made


def test_a_missing_face_model_file_is_a_usage_error(patch_photos: Path, tmp_path: Path) -> None:
    result = _train("--data", patch_photos, "--out", tmp_path / "run", "--input-kind", "faces", "--face-crop", tmp_path / "nope.onnx")
    assert result.exit_code == EXIT_USAGE and "nope.onnx" in result.output


def test_old_config_json_without_the_face_options_still_loads(tmp_path: Path) -> None:
    config = TrainConfig(data=(tmp_path,), out=tmp_path / "run")
    old = {k: v for k, v in config.to_dict().items() if k not in ("face_crop", "face_margin", "if_no_face")}

    back = TrainConfig.from_dict(old)

    assert (back.face_crop, back.face_margin, back.if_no_face) == ("none", DEFAULT_FACE_MARGIN, "whole")


# --- the record ------------------------------------------------------------------------------


def _spec(**changes) -> FaceCropSpec:
    values = dict(kind="yunet", model_sha256=FAKE_SHA, model_file="yunet.onnx", margin=0.1, min_face_fraction=None, score_threshold=0.7, detect_max_side=320)
    return FaceCropSpec(**{**values, **changes})


def test_the_spec_round_trips_and_refuses_nonsense() -> None:
    spec = _spec()
    assert FaceCropSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    for bad in ({"kind": "dlib"}, {"model_sha256": "abc"}, {"margin": -1}, {"model_file": "../x.onnx"}, {"detect_max_side": 0}):
        with pytest.raises(ValueError):
            _spec(**bad)
    with pytest.raises(ValueError, match="missing"):
        FaceCropSpec.from_dict({"kind": "haar"})


def test_a_model_without_the_record_loads_and_a_bad_record_is_refused() -> None:
    old = ModelMetadata(spec=PreprocessSpec(), class_names=("a", "b"), training={"input_kind": "faces"})
    assert old.face_crop is None
    assert ModelMetadata.from_props(old.to_props()).face_crop is None

    good = ModelMetadata(spec=PreprocessSpec(), class_names=("a", "b"), training={"input_kind": "faces", "face_crop": _spec().to_dict()})
    assert ModelMetadata.from_props(good.to_props()).face_crop == _spec()
    with pytest.raises(BadModelError, match="face_crop"):
        ModelMetadata(spec=PreprocessSpec(), class_names=("a", "b"), training={"input_kind": "faces", "face_crop": {"kind": "haar"}})
    with pytest.raises(BadModelError, match="input_kind is not faces"):
        ModelMetadata(spec=PreprocessSpec(), class_names=("a", "b"), training={"input_kind": "whole_image", "face_crop": _spec().to_dict()})


def test_precedence_explicit_then_recorded_then_todays_default(tmp_path: Path) -> None:
    haar = _spec(kind="haar", model_file="haarcascade_frontalface_default.xml", margin=0.25)
    assert resolve_face_detection(None, None, None) == (default_face_model(), DEFAULT_FACE_MARGIN)
    assert resolve_face_detection(None, None, haar) == ("haar", 0.25)
    assert resolve_face_detection("yunet", None, haar) == ("yunet", 0.25)  # each option on its own
    assert resolve_face_detection(None, 0.0, haar) == ("haar", 0.0)


def test_a_recorded_yunet_found_with_another_sha256_is_refused(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "yunet.onnx").write_bytes(b"not the recorded file")

    with pytest.raises(WeightsUnavailableError, match=f"yunet.onnx is not the detector the model was trained with .*records {FAKE_SHA[:12]}"):
        resolve_face_detection(None, None, _spec(), model_dir=model_dir, warn=print)


def test_the_haar_cropper_records_the_bundled_cascade_and_pickles_without_its_detector() -> None:
    cropper = FaceCropper.create("haar", 0.2)
    cropper.detector()  # made: it must not travel

    copy = pickle.loads(pickle.dumps(cropper))

    assert cropper.spec.kind == "haar" and cropper.spec.model_file == "haarcascade_frontalface_default.xml"
    assert cropper.spec.min_face_fraction is not None and cropper.spec.margin == 0.2 and len(cropper.spec.model_sha256) == 64
    assert copy.spec == cropper.spec and copy._detector is None and copy.key == cropper.key
    assert copy(np.zeros((40, 40, 3), dtype=np.uint8)) is None  # a blank picture has no face


# --- end to end with a real face and YuNet -----------------------------------------------------

needs_shared = pytest.mark.skipif(not (DATASET.is_dir() and YUNET.is_file()), reason=f"real photos or YuNet not found under {SHARED}")
FACE = {"man": "man/face_0.jpg", "woman": "woman/face_1.jpg"}
CANVAS = (240, 320)  # h, w of the pictures the faces are pasted on
FACE_HEIGHT = 140


def _face_scene(photo: Path, seed: int) -> np.ndarray:
    face = cv2.imread(str(DATASET / photo))
    if face is None:
        pytest.skip(f"{DATASET / photo} not found")
    rng = np.random.default_rng(seed)
    canvas = np.full((*CANVAS, 3), int(rng.integers(90, 150)), dtype=np.uint8)
    width = round(face.shape[1] * FACE_HEIGHT / face.shape[0])
    x, y = int(rng.integers(0, CANVAS[1] - width)), int(rng.integers(0, CANVAS[0] - FACE_HEIGHT))
    canvas[y : y + FACE_HEIGHT, x : x + width] = cv2.resize(face, (width, FACE_HEIGHT), interpolation=cv2.INTER_AREA)
    return canvas


@pytest.fixture(scope="module")
def face_run(tmp_path_factory: pytest.TempPathFactory, one_thread):
    """gclf-train --face-crop YUNET (1 epoch, 32 px) on pasted faces plus a faceless picture,
    then gclf-export."""
    if not (DATASET.is_dir() and YUNET.is_file()):
        pytest.skip(f"real photos or YuNet not found under {SHARED}")
    from gclf.export.cli import main as export_main

    root = tmp_path_factory.mktemp("face-run")
    data = root / "data"
    for cls, photo in FACE.items():
        for i in range(4):
            write_image_file(data / cls / f"{i}.png", _face_scene(Path(photo), seed=i + (10 if cls == "woman" else 0)))
    write_image_file(data / "man" / "noface.png", np.random.default_rng(7).integers(0, 256, size=(*CANVAS, 3), dtype=np.uint8))
    run = root / "run"
    train = _train("--data", data, "--out", run, "--weights", "none", "--image-size", "32", "--max-epochs", "1", "--batch-size", "16",
                   "--device", "cpu", "--quiet", "--input-kind", "faces", "--face-crop", YUNET, "--face-margin", "0.1")
    assert train.exit_code == 0, train.output
    # --force: a one-epoch toy cannot be expected to pass the int8 parity gate.
    export = CliRunner().invoke(export_main, [str(run), "--quantize", "--force", "--calibration-size", "4"])
    assert export.exit_code == 0, export.output
    return data, run, train.output + export.output


@needs_shared
def test_training_crops_reports_and_records_the_detector(face_run) -> None:
    from gclf.train.checkpoint import load_gclf_checkpoint

    data, run, output = face_run
    noface = str(data / "man" / "noface.png")
    assert f"no face found in {noface}: kept whole" in output
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["no_face"] == [{"path": noface, "action": "whole"}]
    assert f"face crops: every photo cropped to its largest face ({YUNET.name} detector, margin 0.1)" in (run / "summary.md").read_text()
    recorded = FaceCropSpec.from_dict(manifest["face_crop"])
    assert recorded.kind == "yunet" and recorded.margin == 0.1 and recorded.model_file == YUNET.name
    from gclf.runtime.files import sha256_file

    assert recorded.model_sha256 == sha256_file(YUNET)
    for name in ("best.pt", "last.pt"):
        assert FaceCropSpec.from_dict(load_gclf_checkpoint(run / name)["face_crop"]) == recorded
    assert ModelMetadata.from_props(_props(run / "model.onnx")).face_crop == recorded
    assert ModelMetadata.from_props(_props(run / "model.int8.onnx")).face_crop == recorded
    # Export checks and calibrates on face crops, as the training saw the photos.
    assert "validation images (face crops)" in output and "calibration and parity images are face crops" in output


def _props(path: Path) -> dict:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@needs_shared
def test_the_run_reads_its_images_back_cropped_and_refuses_another_detector(face_run) -> None:
    from gclf.train.run_folder import load_run_config, read_run_data

    data, run, _ = face_run
    config = load_run_config(run)

    back = read_run_data(run, config, lambda _: None)

    assert back.face_crop is not None and back.face_crop.margin == 0.1
    sample = next(s for split in back.splits.values() for s in split if s.path.name != "noface.png")
    assert max(back.store.decoded(sample.path).shape[:2]) < max(CANVAS) * 0.75  # a face, not the picture
    with pytest.raises(UsageError, match="records yunet"):
        read_run_data(run, dataclasses.replace(config, face_crop="none", face_margin=0.0), lambda _: None)
    with pytest.raises(UsageError, match="margin 0.3"):
        read_run_data(run, dataclasses.replace(config, face_margin=0.3), lambda _: None)


@needs_shared
def test_resume_refuses_another_face_margin(face_run) -> None:
    _, run, _ = face_run
    result = _train("--resume", run, "--face-margin", "0.3")
    assert result.exit_code == EXIT_USAGE and "--face-margin" in result.output


@needs_shared
def test_the_runtime_crops_as_the_model_was_trained_unless_told_otherwise(face_run, tmp_path: Path, monkeypatch) -> None:
    from gclf.runtime.classifier import Classifier
    from gclf.runtime.cli.infer import main as infer_main

    data, run, _ = face_run
    model = tmp_path / "model.onnx"  # alone in a folder: the YuNet file is found in the cache
    shutil.copy(run / "model.onnx", model)
    cache = tmp_path / "home"
    (cache / "face_models").mkdir(parents=True)
    shutil.copy(YUNET, cache / "face_models" / YUNET.name)
    monkeypatch.setenv("GCLF_HOME", str(cache))
    photo = data / "woman" / "0.png"

    default = CliRunner().invoke(infer_main, [str(model), str(photo)])
    explicit = CliRunner().invoke(infer_main, [str(model), str(photo), "--face-model", "haar", "--face-margin", "0.3"])

    assert default.exit_code == 0, default.output
    assert "yunet detector, margin 0.1" in default.stderr and "warning" not in default.stderr
    assert "haar detector, margin 0.3" in explicit.stderr
    clf = Classifier(model)
    assert clf._model_detector().name == "yunet" and clf._face_margin(None) == 0.1
    (face,) = clf.predict_faces(photo)
    cli_row = [line for line in default.stdout.splitlines() if str(photo) in line][0]
    assert ",".join(map(str, face.box)) in cli_row  # the API's default is the command's


@needs_shared
def test_a_recorded_yunet_that_cannot_be_found_is_named_in_one_sentence(face_run, tmp_path: Path, monkeypatch) -> None:
    from gclf.runtime.cli.infer import main as infer_main

    data, run, _ = face_run
    model = tmp_path / "model.onnx"
    shutil.copy(run / "model.onnx", model)
    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("GCLF_YUNET_URL", (tmp_path / "no-such-file.onnx").as_uri())  # never the internet

    result = CliRunner().invoke(infer_main, [str(model), str(data / "man" / "0.png")])

    assert result.exit_code == 7, result.output
    assert YUNET.name in result.stderr and "--face-model PATH" in result.stderr and "Traceback" not in result.output


@needs_shared
def test_the_training_crop_is_the_runtimes_crop(face_run, monkeypatch) -> None:
    """What the store holds is what gclf-infer classifies: the same box, the same margin."""
    from gclf.runtime.classifier import Classifier
    from gclf.runtime.decode import decode_image
    from gclf.runtime.faces import expand_box
    from gclf.train.run_folder import load_run_config, read_run_data

    data, run, _ = face_run
    config = load_run_config(run)
    store = read_run_data(run, dataclasses.replace(config, image_cache="memory"), lambda _: None).store
    photo = data / "man" / "1.png"
    shutil.copy(YUNET, run / YUNET.name)  # beside the model: found there
    clf = Classifier(run / "model.onnx")
    (face,) = clf.predict_faces(photo)
    rgb = decode_image(photo)
    x, y, w, h = expand_box(face.box, rgb.shape[:2], 0.1)
    assert np.array_equal(store.decoded(photo), rgb[y : y + h, x : x + w])
