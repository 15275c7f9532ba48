"""TensorBoard event files without TensorFlow: TFRecord framing + a hand-encoded Event proto.

Only scalar summaries are written, which is all the trainer logs. Wire format (stable since
2016): each record is u64 length, masked crc32c(length), payload, masked crc32c(payload);
the payload is an `Event{wall_time=1:double, step=2:int64, file_version=3:string,
summary=5:Summary{value=1:Value{tag=1:string, simple_value=2:float}}}`.
"""
from __future__ import annotations

import numbers
import os
import socket
import struct
import time
from collections.abc import Mapping

from etils import epath


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum TFRecord uses."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 two's complement, as protobuf encodes negative steps
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint((number << 3) | wire)
    if wire == 2:
        return key + _varint(len(payload)) + payload
    return key + payload


def encode_event(*, wall_time: float, step: int, scalars: Mapping[str, float] | None = None,
                 file_version: str | None = None) -> bytes:
    msg = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if file_version is not None:
        msg += _field(3, 2, file_version.encode())
    if scalars:
        values = b"".join(
            _field(1, 2, _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", float(v))))
            for tag, v in scalars.items()
        )
        msg += _field(5, 2, values)
    return msg


def frame_record(payload: bytes) -> bytes:
    header = struct.pack("<Q", len(payload))
    return (header + struct.pack("<I", _masked(crc32c(header))) + payload
            + struct.pack("<I", _masked(crc32c(payload))))


class EventWriter:
    """Appends scalar events to `logdir/events.out.tfevents.<time>.<host>`."""

    def __init__(self, logdir: str | os.PathLike):
        self.logdir = epath.Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self.path = self.logdir / name
        self._f = self.path.open("wb")
        self._write(encode_event(wall_time=time.time(), step=0, file_version="brain.Event:2"))

    def _write(self, payload: bytes) -> None:
        self._f.write(frame_record(payload))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        # NaN/inf are kept: a non-finite loss must show up in TensorBoard, not vanish.
        numeric = {k: float(v) for k, v in values.items() if isinstance(v, numbers.Real)}
        if numeric:
            self._write(encode_event(wall_time=time.time(), step=int(step), scalars=numeric))

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
