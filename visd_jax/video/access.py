"""Clean random-access points: packets from which decoding needs nothing earlier.

`load_video` decodes, for each kept frame, only the packets from the last clean point at
or before it up to the frame itself. A packet is a clean point when the codec guarantees
that no later packet (in decode order) refers to a picture before it:
- H.264: the access unit holds an IDR slice (NAL type 5). An IDR empties the decoded
  picture buffer and resets picture order, so nothing after it can refer back. A keyframe
  that is a plain I slice (x264 --open-gop, recovery-point streams) is NOT clean: later
  P/B slices may still refer to pictures before it.
- VP8 / VP9: a key frame refreshes every reference slot.
Anything else (other codecs, an unreadable bitstream) has no clean point but the first
packet, and is decoded from the start as before. Being conservative here only costs time;
being wrong would silently change pixels, so a format is added only with a test that
compares the kept frames to a full decode.
"""
from __future__ import annotations

H264_IDR = 5
_KEYFRAME_RESETS_ALL = ("vp8", "vp9")


def h264_nal_types(data: bytes, length_size: int | None) -> list[int]:
    """NAL unit types in one H.264 access unit.

    length_size: bytes of each NAL's big-endian length prefix (AVCC, as in mp4/mkv; read
    from the avcC extradata), or None for Annex B start codes (00 00 01). A malformed
    length ends the walk: the types seen so far are returned.
    """
    types = []
    if length_size is not None:
        pos = 0
        while pos + length_size < len(data):
            size = int.from_bytes(data[pos : pos + length_size], "big")
            pos += length_size
            if size <= 0 or pos + size > len(data):
                break
            types.append(data[pos] & 0x1F)
            pos += size
        return types
    pos = data.find(b"\x00\x00\x01")
    while pos >= 0 and pos + 3 < len(data):
        types.append(data[pos + 3] & 0x1F)
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return types


def avcc_length_size(extradata: bytes | None) -> int | None:
    """NAL length-prefix size from an avcC record (configurationVersion 1), else None."""
    if extradata and len(extradata) >= 7 and extradata[0] == 1:
        return (extradata[4] & 0x03) + 1
    return None


class CleanPoints:
    """Decides, packet by packet, whether decoding may start there (see module doc)."""

    def __init__(self, codec_name: str, extradata: bytes | None):
        self.codec = codec_name
        self.length_size = avcc_length_size(extradata)

    def __call__(self, packet) -> bool:
        if not packet.is_keyframe:
            return False
        if self.codec in _KEYFRAME_RESETS_ALL:
            return True
        if self.codec == "h264":
            return H264_IDR in h264_nal_types(bytes(packet), self.length_size)
        return False


def needed_packets(decode_order_pts: list[int], clean: list[bool], kept_pts) -> set[int]:
    """pts of the packets to decode so that every kept frame comes out exactly.

    For a kept frame at decode position d: every packet from the last clean point at or
    before d up to d (references always precede in decode order). Packet 0 always counts
    as a start. The rest are never sent to the decoder.
    """
    position = {p: i for i, p in enumerate(decode_order_pts)}
    start_of = []
    last = 0
    for i, is_clean in enumerate(clean):
        if is_clean:
            last = i
        start_of.append(last)
    need = set()
    for p in kept_pts:
        d = position[p]
        need.update(decode_order_pts[start_of[d] : d + 1])
    return need
