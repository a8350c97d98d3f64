"""gclf-bench prints every engine side by side; `gclf-infer --help` loads nothing heavy.

No speed is asserted (timings depend on the machine and its load); the tests check that each
row is measured or says why not, and that ratios are computed against onnxruntime fp32.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from gclf.runtime.bench import Row, format_table, paired_ratio, recommend
from gclf.studies.bench_cli import main as bench_main, pytorch_row


def test_infer_help_imports_nothing_heavy() -> None:
    code = (
        "import sys; from gclf.runtime.cli.infer import main\n"
        "sys.argv = ['gclf-infer', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'cv2', 'numpy') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Usage:" in out
    assert "HEAVY []" in out


def test_ratios_are_against_onnxruntime_fp32_batch1() -> None:
    rows = [Row("onnxruntime fp32", [10.0, 10.0, 10.0], 100.0), Row("onnxruntime int8", [4.0, 5.0, 6.0], 250.0), Row("OpenCV DNN fp32", note="could not run: x")]
    table = format_table(rows)
    assert "2.00x" in table  # 10 ms / 5 ms
    assert "could not run: x" in table
    assert "int8 model" in recommend(rows)
    rows[1] = Row("onnxruntime int8", [10.0, 10.0], 100.0)
    assert "fp32 model" in recommend(rows) and "dot-product" in recommend(rows)


def test_paired_ratio_compares_like_with_like() -> None:
    import time

    ratio = paired_ratio(lambda: time.sleep(0.004), lambda: time.sleep(0.002), rounds=3)
    assert 0.25 < ratio < 0.8  # candidate takes about twice as long as the reference


def test_the_pytorch_row_says_why_it_is_missing(tmp_path, monkeypatch) -> None:
    model = tmp_path / "model.onnx"
    assert pytorch_row(model, None, None, 1, 5).note == "skipped: no best.pt beside the model"
    (tmp_path / "best.pt").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torch", None)  # as in a runtime-only install
    row = pytorch_row(model, None, None, 1, 5)
    assert row.latency_ms is None and row.note.startswith("skipped: torch not installed")


@pytest.mark.slow
@pytest.mark.own_process  # loads OpenVINO
def test_bench_cli_measures_every_engine(tiny_run) -> None:
    result = CliRunner().invoke(bench_main, [str(tiny_run.fp32), "--repeats", "5", "--batch-size", "2", "--images", str(tiny_run.data / "circles")])
    assert result.exit_code == 0, result.output
    out = result.output
    for name in ("onnxruntime fp32", "onnxruntime int8", "OpenCV DNN fp32", "PyTorch eager fp32", "gclf file->label fp32", "gclf file->label int8"):
        line = next(l for l in out.splitlines() if l.startswith(name))
        assert re.search(r" \d+\.\d\dx ", line) or "could not run" in line  # a ratio, or the reason it is missing
    assert "1.00x" in next(l for l in out.splitlines() if l.startswith("onnxruntime fp32"))
    assert "pre-decoded tensors" in out and "where the time goes" in out and "recommendation:" in out
