#!/usr/bin/env python3
"""What the tests need beyond pip: a headless Chromium (or Chrome) for tests/runtime/test_serve_browser.py,
on Linux systemd's `systemd-analyze` for tests/system/test_deploy_unit.py (it rates the Pi's unit),
and on Linux GStreamer's RTSP server for the network camera tests (tools/rtsp_server.py).

    python tools/test_deps.py          # README command 2 runs it before pytest

Looks for a browser where systems keep one ($GCLF_BROWSER, $CHROME, chromium,
chromium-browser, google-chrome on the PATH, the macOS application folders) and, when there is
none, installs Chromium with the system's package manager: apt-get (Debian: `chromium`;
Ubuntu: `chromium-browser`), dnf, or Homebrew on macOS. No browser is downloaded by pip or at
test time (a machine that reaches only package registries cannot). Exit 0 with the browser's
path printed; 1 with a sentence saying how to install one when nothing worked. systemd-analyze
is installed the same way (Debian's and Fedora's package `systemd`) where it is missing on
Linux; elsewhere (macOS) the unit's rating is skipped with that reason. The RTSP server runs
under the system's python3 (python3-gi does not import into a virtual environment), so its
Debian packages (RTSP_PACKAGES) are installed where that interpreter cannot run
`tools/rtsp_server.py --check`; elsewhere the network camera tests skip with that reason.
Standard library only: it runs before or after `pip install`.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
MACOS_APPS = (
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
)
HOW = (
    "install Chromium or Chrome (Debian: apt-get install chromium; Ubuntu: apt-get install "
    "chromium-browser; Fedora: dnf install chromium; macOS: brew install --cask chromium), "
    "or set GCLF_BROWSER to its executable"
)


def find_browser() -> str | None:
    """The first headless-capable browser found on this machine, or None."""
    for variable in ("GCLF_BROWSER", "CHROME"):
        value = os.environ.get(variable)
        if value:
            return shutil.which(value) or (value if Path(value).is_file() else None)
    for name in NAMES:
        if path := shutil.which(name):
            return path
    return next((app for app in MACOS_APPS if Path(app).is_file()), None)


def _run(command: list[str]) -> bool:
    print("test-deps: " + " ".join(command), flush=True)
    return subprocess.run(command, stdout=subprocess.DEVNULL).returncode == 0


def install() -> None:
    """Install Chromium with this system's package manager (as root, or through sudo)."""
    sudo = ["sudo"] if os.name == "posix" and os.geteuid() != 0 and shutil.which("sudo") else []
    if platform.system() == "Darwin" and shutil.which("brew"):
        _run(["brew", "install", "--cask", "chromium"])
    elif shutil.which("apt-get"):
        apt = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
        _run([*apt, "update", "-qq"])  # a failed update may still leave a usable list
        # Debian's package is chromium; Ubuntu's is chromium-browser.
        _run([*apt, "install", "-y", "-qq", "--no-install-recommends", "chromium"]) or _run(
            [*apt, "install", "-y", "-qq", "--no-install-recommends", "chromium-browser"]
        )
    elif shutil.which("dnf"):
        _run([*sudo, "dnf", "install", "-y", "chromium"])


def ensure_systemd_analyze() -> None:
    """On Linux, install systemd-analyze (package `systemd`) when it is missing."""
    if platform.system() != "Linux" or shutil.which("systemd-analyze"):
        return
    sudo = ["sudo"] if os.geteuid() != 0 and shutil.which("sudo") else []
    if shutil.which("apt-get"):
        _run([*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "--no-install-recommends", "systemd"]) or (
            _run([*sudo, "apt-get", "update", "-qq"])
            and _run([*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "--no-install-recommends", "systemd"])
        )
    elif shutil.which("dnf"):
        _run([*sudo, "dnf", "install", "-y", "systemd"])
    if not shutil.which("systemd-analyze"):
        print("test-deps: systemd-analyze not found (Debian: apt-get install systemd); tests/system/test_deploy_unit.py fails its rating", file=sys.stderr)


# The system's interpreter that runs tools/rtsp_server.py, and what it needs from Debian.
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).resolve().parent / "rtsp_server.py"
RTSP_PACKAGES = (
    "python3-gi", "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-plugins-base", "gstreamer1.0-plugins-good", "gstreamer1.0-plugins-ugly",
)  # fmt: skip


def rtsp_server_ready(python: str = SYSTEM_PYTHON) -> bool:
    """True when `python` runs tools/rtsp_server.py (its --check finds every element it needs)."""
    if not Path(python).is_file():
        return False
    try:
        done = subprocess.run([python, str(RTSP_SERVER), "--check"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def ensure_rtsp_server() -> None:
    """On Linux with apt-get, install the RTSP server's Debian packages when it cannot run."""
    if platform.system() != "Linux" or rtsp_server_ready():
        return
    sudo = ["sudo"] if os.geteuid() != 0 and shutil.which("sudo") else []
    if shutil.which("apt-get"):
        apt = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
        install = [*apt, "install", "-y", "-qq", "--no-install-recommends", *RTSP_PACKAGES]
        _run(install) or (_run([*apt, "update", "-qq"]) and _run(install))
    if not rtsp_server_ready():
        print(
            f"test-deps: the RTSP server for the network camera tests cannot run (Debian: apt-get install "
            f"{' '.join(RTSP_PACKAGES)}); those tests skip with that reason",
            file=sys.stderr,
        )


def main() -> int:
    ensure_systemd_analyze()
    ensure_rtsp_server()
    browser = find_browser()
    if browser is None:
        install()
        browser = find_browser()
    if browser is None:
        print(f"test-deps: no headless browser for tests/runtime/test_serve_browser.py: {HOW}", file=sys.stderr)
        return 1
    print(f"test-deps: browser for the --serve test: {browser}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
