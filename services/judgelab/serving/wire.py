"""Naming the field of a request protobuf refused to parse (non-UTF-8 bytes in a string).

protobuf rejects such a message as a whole (``DecodeError``), which gRPC would report as a
bare INTERNAL error. We walk the wire format against the message's descriptor instead and
name the first string field whose bytes are not UTF-8, e.g. ``samples[3].response``.
"""

from __future__ import annotations

from collections import Counter

from google.protobuf.descriptor import Descriptor, FieldDescriptor

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


class _Truncated(Exception):
    pass


def find_invalid_utf8(data: bytes, descriptor: Descriptor, prefix: str = "") -> str | None:
    """Path of the first string field of ``data`` that is not valid UTF-8 (None: none found)."""
    try:
        return _walk(data, descriptor, prefix)
    except _Truncated:
        return None


def _walk(data: bytes, descriptor: Descriptor, prefix: str) -> str | None:
    seen: Counter[int] = Counter()
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type != _LENGTH_DELIMITED:
            pos = _skip(data, pos, wire_type)
            continue
        length, pos = _varint(data, pos)
        chunk, pos = data[pos : pos + length], pos + length
        field = descriptor.fields_by_number.get(number)
        if field is None:
            continue
        path = _path(prefix, field, seen[number])
        seen[number] += 1
        found = _check(chunk, field, path)
        if found is not None:
            return found
    return None


def _check(chunk: bytes, field: FieldDescriptor, path: str) -> str | None:
    if field.type == FieldDescriptor.TYPE_STRING:
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            return path
        return None
    if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
        return _walk(chunk, field.message_type, path + ".")
    return None


def _path(prefix: str, field: FieldDescriptor, index: int) -> str:
    return f"{prefix}{field.name}[{index}]" if field.is_repeated else f"{prefix}{field.name}"


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Truncated
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _skip(data: bytes, pos: int, wire_type: int) -> int:
    if wire_type == _VARINT:
        return _varint(data, pos)[1]
    if wire_type == _FIXED64:
        return pos + 8
    if wire_type == _FIXED32:
        return pos + 4
    raise _Truncated  # groups (3, 4) are not used by judgelab's protos
