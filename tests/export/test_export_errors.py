"""gclf-export on a checkpoint that is not one: a bad model (exit 6) in one sentence, not bad usage."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gclf.runtime.errors import EXIT_BAD_MODEL

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("kind", ["garbage", "not-gclf"])
def test_a_corrupt_or_foreign_checkpoint_is_a_bad_model(tmp_path: Path, kind: str) -> None:
    from gclf.export.cli import main as export_main

    run = tmp_path / "run"
    run.mkdir()
    checkpoint = run / "best.pt"
    if kind == "garbage":
        checkpoint.write_bytes(b"PK\x03\x04 cut short")
    else:
        torch.save({"state_dict": {}}, checkpoint)

    result = CliRunner().invoke(export_main, [str(run)])

    assert result.exit_code == EXIT_BAD_MODEL, result.output
    assert result.stderr.startswith(f"error: {checkpoint}")
    assert "Traceback" not in result.output
    assert not (run / "model.onnx").exists()
