"""tools/test_deps.py finds the browser wherever the user's system keeps it, and says how to
install one when there is none (README command 2 runs it before pytest)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from gclf_testutil import REPO

TOOL = REPO / "tools" / "test_deps.py"


def _tool():
    spec = importlib.util.spec_from_file_location("gclf_test_deps", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_browser(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_the_browser_is_found_on_the_path_or_where_a_variable_points(tmp_path: Path, monkeypatch) -> None:
    tool = _tool()
    monkeypatch.delenv("GCLF_BROWSER", raising=False)
    monkeypatch.delenv("CHROME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(tool, "MACOS_APPS", ())
    assert tool.find_browser() is None

    on_path = _fake_browser(tmp_path / "bin", "chromium-browser")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert tool.find_browser() == str(on_path)

    chosen = _fake_browser(tmp_path / "opt", "my-chrome")
    monkeypatch.setenv("GCLF_BROWSER", str(chosen))
    assert tool.find_browser() == str(chosen)


def test_without_a_browser_or_a_package_manager_it_says_how_to_install_one(tmp_path: Path) -> None:
    # No browser and no apt-get/dnf/brew on the PATH: nothing to install with.
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, str(TOOL)], env=env, capture_output=True, text=True, timeout=60)
    if done.returncode == 0:  # a macOS machine with Chrome in /Applications
        assert "browser for the --serve test" in done.stdout
        return
    assert done.returncode == 1
    assert "apt-get install chromium" in done.stderr and "GCLF_BROWSER" in done.stderr


def test_the_rtsp_server_check_runs_the_system_interpreter(tmp_path: Path) -> None:
    tool = _tool()
    assert tool.rtsp_server_ready(str(tmp_path / "no-python")) is False
    # An interpreter that cannot import GStreamer (this one: a venv's, or one without
    # python3-gi) is not ready; tools/rtsp_server.py says so in one sentence.
    done = subprocess.run([sys.executable, str(tool.RTSP_SERVER), "--check"], capture_output=True, text=True, timeout=60)
    assert tool.rtsp_server_ready(sys.executable) is (done.returncode == 0)
    if done.returncode != 0:
        assert "apt-get install" in done.stderr and "Traceback" not in done.stderr
