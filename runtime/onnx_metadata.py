"""Reading and rewriting an ONNX file's `metadata_props` without the onnx package.

A device (and a test without torch) can then record a calibration in a model copy. An ONNX
file is one protobuf message, `ModelProto`; its `metadata_props` are field 14, repeated
`StringStringEntryProto` messages (key = field 1, value = field 2, both strings). Only the
top-level fields are walked: every other field (the graph, the opsets, initializers that
may be megabytes) is copied byte for byte, untouched, so the graph is exactly what it was.

Wire format (protobuf's encoding): each field is a varint tag (field number << 3 | wire
type) then its value: wire type 0 a varint, 1 eight bytes, 2 a varint length and that many
bytes, 5 four bytes. Types 3 and 4 (groups) are long deprecated and no ONNX writer emits
them: a file with them is refused rather than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from gclf.runtime.atomic import write_bytes_atomic
from gclf.runtime.errors import BadModelError

FIELD_IR_VERSION = 1
FIELD_GRAPH = 7
FIELD_METADATA_PROPS = 14
ENTRY_KEY, ENTRY_VALUE = 1, 2
WIRE_VARINT, WIRE_FIXED64, WIRE_BYTES, WIRE_FIXED32 = 0, 1, 2, 5


class MalformedMessage(Exception):
    """The bytes are not a well-formed protobuf message (turned into BadModelError here; the
    int8 weight layout of gclf.runtime.int8_amx leaves such a file as it is)."""


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise MalformedMessage("a number runs past the end")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise MalformedMessage("a number is longer than 10 bytes")


def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varints here are never negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@dataclass(frozen=True)
class ProtoField:
    number: int
    wire_type: int
    start: int  # where its tag begins
    end: int  # one past its last byte
    payload: int  # where a length-delimited field's bytes begin (== end - length)


def message_fields(data: bytes | memoryview) -> list[ProtoField]:
    """The top-level fields of one message, in file order."""
    fields = []
    pos = 0
    while pos < len(data):
        start = pos
        tag, pos = read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise MalformedMessage("a field numbered 0")
        payload = pos
        if wire == WIRE_VARINT:
            _, pos = read_varint(data, pos)
        elif wire == WIRE_FIXED64:
            pos += 8
        elif wire == WIRE_FIXED32:
            pos += 4
        elif wire == WIRE_BYTES:
            length, payload = read_varint(data, pos)
            pos = payload + length
        else:
            raise MalformedMessage(f"wire type {wire} (groups or unknown)")
        if pos > len(data):
            raise MalformedMessage("a field runs past the end")
        fields.append(ProtoField(number, wire, start, pos, payload))
    return fields


def _entry(data: memoryview) -> tuple[str, str]:
    """(key, value) of one StringStringEntryProto's bytes."""
    key = value = ""
    for f in message_fields(data):
        if f.number in (ENTRY_KEY, ENTRY_VALUE):
            if f.wire_type != WIRE_BYTES:
                raise MalformedMessage("a metadata entry's key or value is not a string")
            text = bytes(data[f.payload : f.end]).decode("utf-8")  # UnicodeDecodeError is a ValueError
            if f.number == ENTRY_KEY:
                key = text
            else:
                value = text
    return key, value


def encode_entry(key: str, value: str) -> bytes:
    """One `metadata_props` field (tag included) holding key and value."""
    body = bytearray()
    for number, text in ((ENTRY_KEY, key), (ENTRY_VALUE, value)):
        raw = text.encode("utf-8")
        body += encode_varint(number << 3 | WIRE_BYTES) + encode_varint(len(raw)) + raw
    return encode_varint(FIELD_METADATA_PROPS << 3 | WIRE_BYTES) + encode_varint(len(body)) + bytes(body)


def _model_entries(data: bytes, source: str) -> tuple[list[ProtoField], list[tuple[ProtoField, str, str]]]:
    """The model's top-level fields and its metadata entries (field, key, value)."""
    view = memoryview(data)
    try:
        fields = message_fields(view)
        numbers = {f.number: f.wire_type for f in fields}
        if numbers.get(FIELD_IR_VERSION) != WIRE_VARINT or numbers.get(FIELD_GRAPH) != WIRE_BYTES:
            raise MalformedMessage("no ir_version or no graph")
        entries = []
        for f in fields:
            if f.number == FIELD_METADATA_PROPS:
                if f.wire_type != WIRE_BYTES:
                    raise MalformedMessage("metadata_props is not a message")
                entries.append((f, *_entry(view[f.payload : f.end])))
        return fields, entries
    except (MalformedMessage, ValueError) as exc:
        raise BadModelError(f"{source}: not an ONNX model file ({exc})") from None


def read_metadata_bytes(data: bytes, *, source: str = "model") -> dict[str, str]:
    """The `metadata_props` of a serialised ModelProto, as a dict; a key that occurs twice
    keeps its first value."""
    out: dict[str, str] = {}
    for _, key, value in _model_entries(data, source)[1]:
        out.setdefault(key, value)
    return out


def rewrite_metadata_bytes(data: bytes, updates: Mapping[str, str | None], *, source: str = "model") -> bytes:
    """`data` with its metadata entries updated: a key given a string is set (in place where
    it was, later copies of it dropped; new keys after the last entry, or at the end), a key
    given None is removed. Every other byte is kept as it was."""
    fields, entries = _model_entries(data, source)
    for key, value in updates.items():
        if not isinstance(key, str) or not (value is None or isinstance(value, str)):
            raise TypeError(f"metadata keys and values are strings (None removes a key), got {key!r}: {value!r}")
    replacement: dict[int, bytes] = {}  # start of a field -> what it becomes
    seen: set[str] = set()
    for f, key, _ in entries:
        if key not in updates:
            continue
        value = updates[key]
        replacement[f.start] = b"" if value is None or key in seen else encode_entry(key, value)
        seen.add(key)
    added = b"".join(encode_entry(k, v) for k, v in updates.items() if v is not None and k not in seen)
    insert_at = entries[-1][0].end if entries else len(data)
    out = bytearray()
    for f in fields:
        out += replacement.get(f.start, data[f.start : f.end])
        if f.end == insert_at:
            out += added
    return bytes(out)


def read_metadata(path: Path) -> dict[str, str]:
    """A model file's `metadata_props` (the whole file is read: ONNX files are one message)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadModelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return read_metadata_bytes(data, source=str(path))


def update_metadata(source: Path, updates: Mapping[str, str | None], dest: Path | None = None) -> None:
    """Write `source` with its metadata updated (see rewrite_metadata_bytes) to `dest`
    (default: `source` itself), atomically: a reader sees the old file or the new one."""
    source = Path(source)
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise BadModelError(f"{source}: cannot read ({exc.strerror or exc})") from None
    write_bytes_atomic(Path(dest) if dest is not None else source, rewrite_metadata_bytes(data, updates, source=str(source)))
