#!/usr/bin/env python3
"""What the tests need beyond pip: a headless Chromium (or Chrome) for tests/runtime/test_serve_browser.py,
on Linux systemd's `systemd-analyze` for tests/system/test_deploy_unit.py (it rates the Pi's unit),
the Mosquitto broker the MQTT tests start (tests/runtime/test_mqtt_*.py, tests/benchmarks/test_fleet.py),
Prometheus's `promtool`, which checks the /metrics text (tests/runtime/test_prometheus_metrics.py),
and Prometheus itself, which the fleet test starts to scrape two gclf processes,
and on Linux GStreamer's RTSP server for the network camera tests (tools/rtsp_server.py).

    python tools/test_deps.py          # README command 2 runs it before pytest

Looks for a browser where systems keep one ($GCLF_BROWSER, $CHROME, chromium,
chromium-browser, google-chrome on the PATH, the macOS application folders) and, when there is
none, installs Chromium with the system's package manager: apt-get (Debian: `chromium`;
Ubuntu: `chromium-browser`), dnf, or Homebrew on macOS. No browser is downloaded by pip or at
test time (a machine that reaches only package registries cannot). Exit 0 with the browser's
path printed; 1 with a sentence saying how to install one when nothing worked. The other
programs (`PROGRAMS`) are installed the same way where they are missing: systemd-analyze
(package `systemd`, Linux only; elsewhere the unit's rating is skipped with that reason),
mosquitto (package `mosquitto`; Debian keeps it in /usr/sbin), promtool and prometheus (both in
Debian's and Homebrew's `prometheus`); one that stays missing is a warning, and its tests skip saying how
to install it. On Debian, installing a package starts its service where systemd runs (a
broker on port 1883, Prometheus on 9090); the tests start their own on other ports. The RTSP
server runs under the system's python3 (python3-gi does not import into a virtual environment), so its
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
from typing import NamedTuple

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


class Program(NamedTuple):
    """A program some tests run, and the package that holds it for each package manager."""

    name: str
    apt: str
    dnf: str
    brew: str | None  # None: not on macOS
    needed_by: str
    linux_only: bool = False


PROGRAMS = (
    Program("systemd-analyze", "systemd", "systemd", None, "tests/system/test_deploy_unit.py fails its rating", linux_only=True),
    Program("mosquitto", "mosquitto", "mosquitto", "mosquitto", "the MQTT tests are skipped"),
    Program("promtool", "prometheus", "golang-github-prometheus", "prometheus", "the Prometheus metrics test is skipped"),
    Program("prometheus", "prometheus", "golang-github-prometheus", "prometheus", "the fleet test's scrape by Prometheus is skipped"),
)
SBIN = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")  # daemons live here, often off a user's PATH


def find_program(name: str) -> str | None:
    """`name` on the PATH or in an sbin folder (Debian's mosquitto is /usr/sbin/mosquitto)."""
    return shutil.which(name) or next((str(Path(d) / name) for d in SBIN if (Path(d) / name).is_file()), None)


def ensure_program(program: Program) -> None:
    """Install `program` with this system's package manager when it is missing."""
    system = platform.system()
    if (program.linux_only and system != "Linux") or find_program(program.name):
        return
    sudo = ["sudo"] if os.name == "posix" and os.geteuid() != 0 and shutil.which("sudo") else []
    if system == "Darwin" and program.brew and shutil.which("brew"):
        _run(["brew", "install", program.brew])
    elif shutil.which("apt-get"):
        apt = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
        install = [*apt, "install", "-y", "-qq", "--no-install-recommends", program.apt]
        _run(install) or (_run([*apt, "update", "-qq"]) and _run(install))
    elif shutil.which("dnf"):
        _run([*sudo, "dnf", "install", "-y", program.dnf])
    if not find_program(program.name):
        print(f"test-deps: {program.name} not found (Debian: apt-get install {program.apt}); {program.needed_by}", file=sys.stderr)


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
    for program in PROGRAMS:
        ensure_program(program)
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
