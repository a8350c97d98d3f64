"""Inference engines: onnxruntime and OpenVINO run the same self-describing file with the same
preprocessing and outputs (API, files, live), each is checked against the reference outputs the
model records before it is used, and int8 weights are laid out for AMX without changing an answer.

OpenVINO's tests skip, saying so, where it is not installed (the README's test command installs
the `openvino` extra). Models are small and generated: the tiny channel-mean classifier (known
labels) and a small convolutional network quantized by gclf's own quantize_int8.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gclf.runtime import Classifier
from gclf.runtime.cli.infer import main as infer_main
from gclf.runtime.cpu_class import accelerators_from, has_amx_int8
from gclf.runtime.errors import (
    EXIT_ENGINE_REFUSED, EXIT_MISSING_DEPENDENCY, EXIT_USAGE, BadModelError, EngineRefusedError, MissingDependencyError, UsageError,
)
from gclf.runtime.metadata import KEY_REFERENCE
from gclf.runtime.onnx_metadata import read_metadata, update_metadata
from gclf.runtime.parity import CANDIDATES, REFERENCES, TOLERANCE, pattern_image, pattern_inputs, record_references
from gclf_testutil import BLUE_BGR, RED_BGR, SquareDetector, solid_bgr, write_image_file, write_video

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason='OpenVINO is not installed (pip install ".[openvino]")')
ENGINES = ["onnxruntime", pytest.param("openvino", marks=[needs_openvino, pytest.mark.own_process])]
FACES = {"gclf.training": json.dumps({"input_kind": "faces"})}


def _with_references(model: Path) -> Path:
    """`model` with reference outputs recorded, as gclf-export records them."""
    record_references(model)
    return model


# --- one file, two engines: the same answers through the API, the files command and the live loop ---


@pytest.mark.parametrize("engine", ENGINES)
def test_the_api_gives_the_same_answers_on_every_engine(engine: str, tiny_onnx, tmp_path: Path) -> None:
    model = _with_references(tiny_onnx())
    reference = Classifier(model)
    clf = Classifier(model, engine=engine)
    assert clf.engine.name == engine and clf.parity.passed and clf.parity.against == "recorded"
    red, blue = solid_bgr((230, 20, 20), 40, 60)[..., ::-1].copy(), solid_bgr((10, 20, 240))[..., ::-1].copy()
    assert [p.label for p in clf.predict_batch([red, blue])] == ["red", "blue"]
    for got, expected in zip(clf.predict_batch([red, blue]), reference.predict_batch([red, blue])):
        assert got.probabilities.keys() == expected.probabilities.keys()
        assert max(abs(got.probabilities[k] - expected.probabilities[k]) for k in got.probabilities) < 1e-5
    files = [write_image_file(tmp_path / "red.png", solid_bgr((230, 20, 20), 40, 60)), tmp_path / "broken.jpg"]
    files[1].write_bytes(b"\xff\xd8\xff\xe0 cut short")
    results = {r.path: r for r in clf.predict_files(files, batch_size=2)}  # a file that fails is reported at once
    assert results[files[0]].prediction.label == "red" and results[files[1]].error is not None


@pytest.mark.parametrize("engine", ENGINES)
def test_faces_are_found_and_classified_on_every_engine(engine: str, tiny_onnx) -> None:
    clf = Classifier(tiny_onnx(props_update=FACES), engine=engine)
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[10:30, 40:60] = (20, 20, 230)  # a red square, as BGR
    (face,) = clf.predict_faces(frame, color="bgr", detector=SquareDetector(), margin=0.0)
    assert face.box == (40, 10, 20, 20) and face.label == "red"


@pytest.mark.parametrize("engine", ENGINES)
def test_gclf_infer_files_and_live_on_every_engine(engine: str, tiny_onnx, tmp_path: Path) -> None:
    model = _with_references(tiny_onnx())
    image = write_image_file(tmp_path / "blue.png", solid_bgr((10, 20, 240)))
    result = CliRunner().invoke(infer_main, [str(model), str(image), "--json", "--engine", engine])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["label"] == "blue"
    assert f"on {engine}" in result.stderr

    video = write_video(tmp_path / "rb.avi", [RED_BGR if i % 2 == 0 else BLUE_BGR for i in range(6)])
    result = CliRunner().invoke(infer_main, [str(model), "--video", str(video), "--headless", "--engine", engine])
    assert result.exit_code == 0, result.output
    labels = [json.loads(line)["faces"][0]["label"] for line in result.stdout.splitlines()]
    assert labels == ["red", "blue"] * 3
    assert f"with {model.name} on {engine}" in result.stderr


# --- choices that do not go together, and a missing engine --------------------------------------


def test_precision_and_engine_choices_are_checked(tiny_onnx, tmp_path: Path) -> None:
    model = tiny_onnx()
    with pytest.raises(UsageError, match="needs the openvino engine"):
        Classifier(model, precision="bf16")
    with pytest.raises(UsageError, match="unknown inference engine"):
        Classifier(model, engine="tensorrt")
    image = write_image_file(tmp_path / "red.png", solid_bgr((230, 20, 20)))
    result = CliRunner().invoke(infer_main, [str(model), str(image), "--precision", "bf16"])
    assert result.exit_code == EXIT_USAGE and "openvino engine" in result.output


def test_openvino_missing_names_the_extra(tiny_onnx, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as in a base install
    with pytest.raises(MissingDependencyError, match=r'pip install "\.\[openvino\]"'):
        Classifier(tiny_onnx(), engine="openvino")
    image = write_image_file(tmp_path / "red.png", solid_bgr((230, 20, 20)))
    result = CliRunner().invoke(infer_main, [str(tiny_onnx()), str(image), "--engine", "openvino"])
    assert result.exit_code == EXIT_MISSING_DEPENDENCY and '".[openvino]"' in result.output


# --- the parity check ----------------------------------------------------------------------------


def test_generated_inputs_are_the_same_pixels_everywhere() -> None:
    """The recorded outputs are only comparable if every machine makes the same pattern images:
    integer arithmetic, pinned here by their hash (a new generator needs a new name)."""
    digest = hashlib.sha256(b"".join(pattern_image(i, 24, 32).tobytes() for i in range(CANDIDATES))).hexdigest()
    assert digest == "e751c8b9987ce4a26ac44152388062ff18999eee78813ddea6f32401b9901877"
    images = [pattern_image(i, 24, 32) for i in range(8)]
    assert len({im.tobytes() for im in images}) == 8 and all(im.std() > 20 for im in images)


def test_export_records_references_and_a_load_checks_them_once(tiny_onnx, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "home"))  # an empty cache (other tests check the same tiny model)
    model = _with_references(tiny_onnx())
    recorded = json.loads(read_metadata(model)[KEY_REFERENCE])
    assert len(recorded["indices"]) == len(recorded["logits"]) == REFERENCES and recorded["engine"].startswith("onnxruntime")
    first, again = Classifier(model), Classifier(model)
    assert first.parity.passed and not first.parity.cached
    assert again.parity.cached and again.parity.max_prob_diff == first.parity.max_prob_diff
    assert len(list((tmp_path / "home" / "parity").glob("*.json"))) == 1
    # The references are the logits of the exporting engine on those inputs.
    x = pattern_inputs(first.spec, recorded["indices"])
    np.testing.assert_allclose(first.logits(x), recorded["logits"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("engine", ENGINES)
def test_an_engine_that_drifts_from_the_references_is_refused(engine: str, tiny_onnx, tmp_path: Path) -> None:
    """References that no longer match what the engine computes (here: the classes' logits
    swapped, as a wrong channel order would) exceed the tolerance: refused, one sentence, exit 13."""
    model = _with_references(tiny_onnx())
    recorded = json.loads(read_metadata(model)[KEY_REFERENCE])
    recorded["logits"] = [row[::-1] for row in recorded["logits"]]
    update_metadata(model, {KEY_REFERENCE: json.dumps(recorded)})
    with pytest.raises(EngineRefusedError, match=f"{engine}.*drift from the reference outputs the model records") as caught:
        Classifier(model, engine=engine)
    assert f"> {TOLERANCE:g}" in str(caught.value)
    image = write_image_file(tmp_path / "red.png", solid_bgr((230, 20, 20)))
    result = CliRunner().invoke(infer_main, [str(model), str(image), "--engine", engine])
    assert result.exit_code == EXIT_ENGINE_REFUSED and "drift" in result.output and "Traceback" not in result.output


def test_a_model_without_references_runs_on_onnxruntime_unchecked(tiny_onnx) -> None:
    clf = Classifier(tiny_onnx())
    assert clf.parity.passed and clf.parity.against == "nothing" and "not checked" in clf.parity.line()


@needs_openvino
@pytest.mark.own_process
def test_without_references_openvino_is_compared_with_onnxruntime_here(tiny_onnx) -> None:
    clf = Classifier(tiny_onnx(), engine="openvino")
    assert clf.parity.passed and clf.parity.against == "onnxruntime here" and clf.parity.max_prob_diff < 1e-5


@pytest.mark.parametrize("bad", ['{"inputs": "gclf-patterns-1", "indices": [99], "logits": [[1, 2]]}', "[1, 2]", "not json",
                                 '{"inputs": "other", "indices": [0], "logits": [[1, 2]]}'])
def test_malformed_references_are_a_bad_model(bad: str, tiny_onnx) -> None:
    with pytest.raises(BadModelError, match=KEY_REFERENCE):
        Classifier(tiny_onnx(props_update={KEY_REFERENCE: bad}))


def test_cpu_accelerators_are_read_from_cpuinfo() -> None:
    flags = "flags\t\t: fpu avx2 avx512f avx512_vnni amx_bf16 avx512_bf16 amx_tile amx_int8\n"
    assert accelerators_from(flags) == ("AMX-INT8", "AMX-BF16", "AVX512-BF16")
    assert accelerators_from("flags\t\t: fpu avx2 avx512_vnni\n") == ()
    assert accelerators_from(None) == ()


# --- which engine to use: gclf-infer --check and gclf-bench --------------------------------------


@pytest.mark.own_process
def test_check_names_the_fastest_engine_that_passed_parity(tiny_onnx) -> None:
    from gclf.runtime.cli.preflight import OK, PreflightContext, check_engines, run_checks

    model = _with_references(tiny_onnx())
    findings = run_checks(PreflightContext(model=model, threads=1), [check_engines])
    best = findings[0]
    assert best.status == OK and "fastest that passed parity on this machine" in best.text and "ms per image" in best.text
    named = best.text.split(": ", 1)[1].split(",")[0]
    assert named in ("onnxruntime", "openvino", "openvino at bf16")
    assert f"run with --engine {named.split()[0]}" in best.text
    if HAS_OPENVINO:
        assert "openvino" in best.text and "onnxruntime" in best.text  # both ran; the other is named as also passed
    else:
        assert any("openvino: not installed" in f.text for f in findings)


@pytest.mark.own_process
def test_check_says_why_an_engine_was_refused(tiny_onnx) -> None:
    from gclf.runtime.cli.preflight import INFO, PreflightContext, check_engines, run_checks

    model = _with_references(tiny_onnx())
    recorded = json.loads(read_metadata(model)[KEY_REFERENCE])
    update_metadata(model, {KEY_REFERENCE: json.dumps({**recorded, "logits": [row[::-1] for row in recorded["logits"]]})})
    findings = run_checks(PreflightContext(model=model), [check_engines])
    assert findings and all(f.status == INFO for f in findings)  # none passed: no engine is named
    assert any(f.text.startswith("onnxruntime: not usable here") and "drift" in f.text for f in findings)


def test_bench_rows_cover_every_engine_and_the_recommendation_only_takes_one_that_passed(tmp_path: Path) -> None:
    from gclf.runtime.bench import Row, engine_rows, recommend

    fp32, int8 = tmp_path / "model.onnx", tmp_path / "model.int8.onnx"
    names = [r[0] for r in engine_rows(fp32, int8)]
    assert names[:2] == ["onnxruntime fp32", "onnxruntime int8"]
    assert {"OpenVINO fp32", "OpenVINO fp32 at bf16", "OpenVINO int8"} <= set(names)
    assert ("onnxruntime int8, no AMX" in names) == has_amx_int8()
    rows = [Row("onnxruntime fp32", [10.0], engine="onnxruntime", variant="fp32", passed=True),
            Row("onnxruntime int8", [5.0], engine="onnxruntime", variant="int8", passed=True),
            Row("OpenVINO fp32 at bf16", [1.0], engine="openvino", precision="bf16", variant="fp32", passed=False),
            Row("OpenVINO int8", [2.0], engine="openvino", variant="int8", passed=True)]
    advice = recommend(rows)
    assert advice.startswith("use the int8 model with --engine openvino on this machine") and "5.00x onnxruntime fp32" in advice
    assert "2.50x onnxruntime int8" in advice


def test_an_engine_that_returns_no_usable_answers_is_refused_and_says_what_it_returned(tiny_onnx, tmp_path: Path, monkeypatch) -> None:
    """As OpenVINO's ARM plugin did with an int8 model on an emulated Cortex-A72: an empty
    output. The check names it instead of a meaningless difference, and caches the verdict."""
    from gclf.runtime.parity import read_references, verify_engine

    monkeypatch.setenv("GCLF_HOME", str(tmp_path / "home"))
    model = _with_references(tiny_onnx())
    clf = Classifier(model)
    refs = read_references(clf.metadata.reference_outputs, 2, str(model))
    verdicts = len(list((tmp_path / "home" / "parity").glob("*.json")))  # the onnxruntime load's
    for attempt in range(2):
        with pytest.raises(EngineRefusedError, match=r"gives an output of shape \(0, 2\) for 6 inputs of 2 classes") as caught:
            verify_engine(lambda x: np.zeros((0, 2), np.float32), engine="broken 1.0", model=model.read_bytes(), spec=clf.spec,
                          references=refs, reference_engine=None, source=str(model))
        assert "use the onnxruntime engine" in str(caught.value)
    assert len(list((tmp_path / "home" / "parity").glob("*.json"))) == verdicts + 1  # one verdict, the second from the cache
    with pytest.raises(EngineRefusedError, match="not numbers"):
        verify_engine(lambda x: np.full((len(x), 2), np.nan, np.float32), engine="nan 1.0", model=model.read_bytes(), spec=clf.spec,
                      references=refs, reference_engine=None, source=str(model))
