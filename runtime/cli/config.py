"""One camera's settings in a TOML file: `gclf-infer --config /etc/gclf/cameras/NAME.toml`.

The file takes the command's own options, named as on the command line, without the dashes
(`detect-every = 3`, or `detect_every = 3`), and its arguments by name (`model = "..."`):

    model = "/var/lib/gclf/model-int8.onnx"
    camera = "rtsp://192.168.1.20/Streaming/Channels/102"
    headless = true
    detect-every = 3
    serve = "0.0.0.0:8081"

`read_camera_config(path, command)` checks the file against the command it configures (a
click Command, passed in: the core does not import click, and the keys stay in step with the
command's options by construction) and returns the values keyed by parameter name, ready for
click's `default_map`, so that an option given on the command line wins over the file. An
unknown key, a value of the wrong type or a value the option refuses is one sentence naming
the file, the line and the key. Values are checked with the option's own type (a range, a
choice, a path that must exist), and TOML's types must match: true/false for a flag, a whole
number for a count, a list for an option given several times.

A file that holds a secret (a camera URL with a password or token, a `token`) and that every
user of the machine can read is refused, as --token-file and --camera-url-file refuse theirs:
chmod 600 it, or keep the URL in a credential (the template unit's camera-url).
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

from gclf.runtime.errors import UsageError
from gclf.runtime.redact import is_network_url, url_secrets

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (a dependency there)
    import tomli as tomllib

# Keys a file cannot set: a file naming another file, asking for help, or turning a run into a check.
NOT_IN_A_FILE = frozenset({"config", "help", "check"})
_STRING_TYPES = frozenset({"file", "path", "directory", "choice"})  # click's type names
_INTEGER_TYPES = frozenset({"integer", "integer range"})
_FLOAT_TYPES = frozenset({"float", "float range"})


def read_camera_config(path: Path, command: Any) -> dict[str, Any]:
    """The options in the TOML file `path`, checked against `command` (a click.Command) and
    keyed by its parameters' names (`as_json` for `json`), for `ctx.default_map`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a TOML file (not UTF-8 text)") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    params = _params_by_key(command)
    values: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in table.items():
        where = _where(path, text, key)
        param = params.get(_normal(key))
        if param is None:
            raise UsageError(f"{where}: unknown key {key!r}{_suggestion(key, params)}")
        if param.name in values:
            raise UsageError(f"{where}: {key!r} sets the same option as {given_as[param.name]!r} above; keep one")
        values[param.name] = _checked(param, key, value, where)
        given_as[param.name] = key
    _check_secrets_are_private(path, text, table)
    return values


def _check_secrets_are_private(path: Path, text: str, table: dict[str, Any]) -> None:
    """A file with a password or token in it must not be readable by every user (its value is never quoted)."""
    for key, value in table.items():
        secret = isinstance(value, str) and (_normal(key) == "token" or (is_network_url(value) and bool(url_secrets(value))))
        if secret and os.stat(path).st_mode & stat.S_IROTH:
            raise UsageError(
                f"{_where(path, text, key)}: {key} holds a password or token, and the file is readable by every user of this machine: "
                f"chmod 600 {path} (or give the camera's URL in --camera-url-file, $GCLF_CAMERA_URL or the systemd credential camera-url)"
            )


def config_keys(command: Any) -> list[str]:
    """The keys a file may use for `command`, as the command line spells them (for docs)."""
    return sorted(_params_by_key(command))


def _params_by_key(command: Any) -> dict[str, Any]:
    """Each parameter under its normalised key: an option's long names (not `--no-x`, whose
    flag is x = false), an argument's name."""
    keys: dict[str, Any] = {}
    for param in command.params:
        if param.name in NOT_IN_A_FILE or not getattr(param, "expose_value", True):
            continue
        if param.param_type_name == "argument":
            keys[_normal(param.name)] = param
            continue
        for opt in param.opts:
            if opt.startswith("--"):
                keys[_normal(opt[2:])] = param
    return keys


def _normal(key: str) -> str:
    return key.strip().lower().replace("_", "-")


def _suggestion(key: str, params: dict[str, Any]) -> str:
    close = difflib.get_close_matches(_normal(key), list(params), n=1)
    return f" (did you mean {close[0]}?)" if close else ": gclf-infer has no such option"


def _where(path: Path, text: str, key: str) -> str:
    """'FILE, line N' for the line that sets `key` (bare or quoted, or a table of that name)."""
    name = re.escape(key)
    pattern = re.compile(rf"""^\s*(?:(?:{name}|"{name}"|'{name}')\s*[.=]|\[+\s*(?:{name}|"{name}"|'{name}')\s*[.\]])""")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return f"{path}, line {number}"
    return str(path)


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def _expected(param: Any) -> tuple[tuple[type, ...], str]:
    """The TOML types a single value of `param` may have, and how to say so."""
    if getattr(param, "is_flag", False) and not getattr(param, "count", False):
        return (bool,), "true or false"
    kind = param.type.name
    if kind in _INTEGER_TYPES:
        return (int,), "a whole number"
    if kind in _FLOAT_TYPES:
        return (int, float), "a number"
    if kind in _STRING_TYPES:
        return (str,), "a string"
    if kind == "text":
        return (str, int), "a string"
    return (str, int, float), f"a value of the form {param.metavar or kind}"


def _checked(param: Any, key: str, value: Any, where: str) -> Any:
    """`value` if the option takes it, else a UsageError naming the file, line and key."""
    many = getattr(param, "multiple", False) or param.nargs != 1
    if many:
        if not isinstance(value, list):
            raise UsageError(f"{where}: {key} takes a list, like {key} = [...], not {_toml_type(value)}")
        items = value
    else:
        items = [value]
    allowed, expected = _expected(param)
    for item in items:
        # bool is an int in Python: a flag's true must not pass for a count of 1, nor 1 for true.
        if not isinstance(item, allowed) or (isinstance(item, bool) and bool not in allowed):
            raise UsageError(f"{where}: {key} takes {expected}, not {_toml_type(item)}")
        if bool in allowed:
            continue
        try:
            param.type.convert(item, param, None)
        except Exception as exc:  # click's BadParameter (not imported here: the core has no click)
            message = getattr(exc, "message", None) or str(exc)
            raise UsageError(f"{where}: {key}: {message.rstrip('.')}") from None
    if many and param.nargs > 1 and len(items) != param.nargs:
        raise UsageError(f"{where}: {key} takes a list of {param.nargs} values, not {len(items)}")
    return tuple(items) if many else value
