"""A camera's TOML file against today's gclf-infer command: every option can be set in it under
its command-line name, the command line wins, and a mistake is one sentence naming the file,
the line and the key."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gclf.runtime.cli.config import NOT_IN_A_FILE, config_keys, read_camera_config
from gclf.runtime.cli.infer import main as gclf_infer
from gclf.runtime.errors import UsageError


def receiving(command: click.Command) -> click.Command:
    """`command`'s own parameters (its --config included), with a callback that returns what
    the command would receive."""
    return click.Command("gclf-infer", params=command.params, callback=lambda **received: received)


def run(tmp_path: Path, toml: str, *args: str) -> dict:
    path = tmp_path / "cam.toml"
    path.write_text(toml)
    return receiving(gclf_infer).main(["--config", str(path), *args], standalone_mode=False)


def write(tmp_path: Path, toml: str) -> Path:
    path = tmp_path / "cam.toml"
    path.write_text(toml)
    return path


def test_every_option_of_gclf_infer_can_be_set_under_its_command_line_name() -> None:
    keys = config_keys(gclf_infer)
    long_options = {opt[2:] for param in gclf_infer.params for opt in param.opts if opt.startswith("--")}
    assert long_options - NOT_IN_A_FILE <= set(keys) and "config" in long_options
    assert not NOT_IN_A_FILE & set(keys)  # a file names no other file, and does not turn a run into a check
    assert {"model", "paths"} <= set(keys)  # the arguments, by name
    assert "no-faces" not in keys  # --no-faces is faces = false


def test_a_file_sets_options_and_the_command_line_wins(tmp_path: Path, tiny_onnx) -> None:
    model = tiny_onnx()
    toml = f"""
        # the hall camera
        model = "{model}"
        camera = 2
        headless = true
        json = true
        detect_every = 4
        face-margin = 0.25
        faces = false
        camera-size = "640x480"
        if-no-face = "skip"
        serve = 8081
    """
    received = run(tmp_path, toml)
    assert received["model"] == model and received["headless"] is True and received["as_json"] is True
    assert received["camera"].device == 2 and received["camera_size"] == (640, 480)
    assert received["detect_every"] == 4 and received["face_margin"] == 0.25 and received["faces"] is False
    assert received["if_no_face"] == "skip" and received["serve"] == "8081"
    assert received["max_frames"] is None  # not in the file: the command's own default

    overridden = run(tmp_path, toml, "--detect-every", "2", "--faces", "--camera", "0")
    assert overridden["detect_every"] == 2 and overridden["faces"] is True and overridden["camera"].device == 0
    assert overridden["headless"] is True  # still from the file


def test_an_unknown_key_names_the_file_the_line_and_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, 'headless = true\n\n"detect-evry" = 3\n')
    with pytest.raises(UsageError) as raised:
        read_camera_config(path, gclf_infer)
    assert str(raised.value) == f"{path}, line 3: unknown key 'detect-evry' (did you mean detect-every?)"
    path = write(tmp_path, "[camera]\nurl = 'rtsp://cam/x'\n")
    with pytest.raises(UsageError, match=r"line 1: camera takes a value of the form INDEX\|/dev/\.\.\.\|picam\[:N\]\|URL, not a table"):
        read_camera_config(path, gclf_infer)
    path = write(tmp_path, "frobnicate = 1\n")
    with pytest.raises(UsageError, match=r"line 1: unknown key 'frobnicate': gclf-infer has no such option"):
        read_camera_config(path, gclf_infer)


@pytest.mark.parametrize(
    ("line", "message", "clicks_own"),
    [
        ('headless = "yes"', "line 2: headless takes true or false, not a string", ""),
        ("detect-every = 2.5", "line 2: detect-every takes a whole number, not a number with a fraction", ""),
        ("detect-every = true", "line 2: detect-every takes a whole number, not true/false", ""),
        ("detect-every = 0", "line 2: detect-every: ", "0 is not in the range x>=1"),
        ('if-no-face = "maybe"', "line 2: if-no-face: ", "'maybe' is not one of"),
        ("face-margin = 3.0", "line 2: face-margin: ", "3.0 is not in the range"),
        ('camera-size = "big"', "line 2: camera-size: ", "'big' is not a frame size"),
        ("video = 3", "line 2: video takes a string, not a whole number", ""),
        ('video = "no-such-file.avi"', "line 2: video: ", "no-such-file.avi"),
        ('paths = "one.jpg"', "line 2: paths takes a list, like paths = [...], not a string", ""),
    ],
)
def test_a_wrong_value_is_named_with_its_type(tmp_path: Path, line: str, message: str, clicks_own: str) -> None:
    # `message` is this module's sentence; `clicks_own` the part that click's type words (its wording varies by release).
    path = write(tmp_path, f"# camera\n{line}\n")
    with pytest.raises(UsageError) as raised:
        read_camera_config(path, gclf_infer)
    assert str(raised.value).startswith(f"{path}, {message}")
    assert clicks_own in str(raised.value) and "\n" not in str(raised.value)


def test_the_same_option_twice_and_broken_toml_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "detect-every = 2\ndetect_every = 3\n")
    with pytest.raises(UsageError, match=r"line 2: 'detect_every' sets the same option as 'detect-every' above"):
        read_camera_config(path, gclf_infer)
    path = write(tmp_path, "headless = \n")
    with pytest.raises(UsageError, match=r"not valid TOML \(.*line 1"):
        read_camera_config(path, gclf_infer)
    path = write(tmp_path, "config = 'other.toml'\n")
    with pytest.raises(UsageError, match="unknown key 'config'"):
        read_camera_config(path, gclf_infer)


def test_gclf_infer_reports_a_bad_file_as_a_usage_error(tmp_path: Path) -> None:
    # One sentence and exit 2, as for any usage error, although click reads the file while parsing.
    path = write(tmp_path, "detect-evry = 3\n")
    result = CliRunner().invoke(gclf_infer, ["--config", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {path}, line 1: unknown key 'detect-evry' (did you mean detect-every?)"
    result = CliRunner().invoke(gclf_infer, ["--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {tmp_path / 'missing.toml'}: cannot read it")


def test_a_network_camera_in_a_file_is_never_echoed(tmp_path: Path) -> None:
    # click quotes a refused value; a camera value from a file or the command line shows redacted.
    path = write(tmp_path, 'camera = "rtsps://viewer:Sx-91@cam.local/live"\nheadless = true\n')
    path.chmod(0o600)
    assert read_camera_config(path, gclf_infer)["camera"] == "rtsps://viewer:Sx-91@cam.local/live"
    received = run(tmp_path, path.read_text())
    assert received["camera"].kind == "network" and "Sx-91" not in repr(received["camera"]) and "Sx-91" not in str(received)
    result = CliRunner().invoke(gclf_infer, ["--camera", "cam://viewer:Sx-91@cam.local/live"])
    assert result.exit_code == 2 and "Sx-91" not in result.output and "cam://viewer:***@cam.local/live" in result.output


def test_a_file_with_a_password_that_every_user_can_read_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, 'headless = true\ncamera = "rtsp://viewer:Sx-91@cam.local/live"\n')
    path.chmod(0o644)
    with pytest.raises(UsageError) as raised:
        read_camera_config(path, gclf_infer)
    assert str(raised.value).startswith(f"{path}, line 2: camera holds a password or token, and the file is readable by every user") and "Sx-91" not in str(raised.value)
    path.chmod(0o640)  # the group (gclf's own) may read it
    assert read_camera_config(path, gclf_infer)["camera"].endswith("@cam.local/live")
    path.write_text('camera = "rtsp://cam.local/live"\n')  # no secret: any mode
    path.chmod(0o644)
    assert read_camera_config(path, gclf_infer)["camera"] == "rtsp://cam.local/live"


def test_a_files_name_wins_over_the_units_instance_name(tmp_path: Path, monkeypatch) -> None:
    from gclf.runtime.cli.params import default_camera_name

    monkeypatch.setenv("GCLF_CAMERA_NAME", "hall")  # what the template unit sets: its instance name
    assert run(tmp_path, 'name = "front-door"\n')["name"] == "front-door"
    assert run(tmp_path, 'name = "front-door"\n', "--name", "porch")["name"] == "porch"  # the command line wins
    assert run(tmp_path, "headless = true\n")["name"] is None and default_camera_name() == "hall"
    monkeypatch.delenv("GCLF_CAMERA_NAME")
    assert default_camera_name()  # the host name, made a valid camera name
