"""Basemap test data made here: a solid-colour PNG tile and a PMTiles v3 archive holding it."""

from __future__ import annotations

import json
import struct
import zlib
from itertools import pairwise
from pathlib import Path

TILE_SIZE = 256


def solid_png(rgb: tuple[int, int, int], size: int = TILE_SIZE) -> bytes:
    """A size x size PNG of one colour (8-bit RGB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * size  # filter byte 0, then the pixels
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * size)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def land_mvt(layer: str = "earth", extent: int = 4096) -> bytes:
    """A Mapbox Vector Tile whose one layer holds one polygon covering the whole tile (and its buffer)."""

    def zigzag(n: int) -> int:
        return (n << 1) ^ (n >> 31)

    lo, hi = -64, extent + 64
    corners = [(lo, lo), (hi, lo), (hi, hi), (lo, hi)]  # clockwise with y down: an exterior ring
    geometry = [1 | 1 << 3, zigzag(lo), zigzag(lo), 2 | 3 << 3]  # MoveTo 1 point, LineTo 3 points
    for (x0, y0), (x1, y1) in pairwise(corners):
        geometry += [zigzag(x1 - x0), zigzag(y1 - y0)]
    geometry.append(7 | 1 << 3)  # ClosePath
    feature = _varint(3 << 3) + _varint(3) + _field(4, b"".join(_varint(g) for g in geometry))  # type 3: polygon
    body = _varint(15 << 3) + _varint(2) + _field(1, layer.encode()) + _field(2, feature)
    body += _varint(5 << 3) + _varint(extent)
    return _field(3, body)


def write_pmtiles(path: Path, tile: bytes, *, max_zoom: int, tile_type: int = 2) -> None:
    """A PMTiles v3 archive where every tile of zooms 0..max_zoom is `tile` (type 1 MVT, 2 PNG). Tile ids of
    zooms 0..z are the contiguous range 0..(4^(z+1)-1)/3 - 1, so one run-length directory entry addresses all."""
    tiles = (4 ** (max_zoom + 1) - 1) // 3
    # One entry: tile id 0, run length, byte length, offset + 1 (the spec's encoding of a first offset).
    root = _varint(1) + _varint(0) + _varint(tiles) + _varint(len(tile)) + _varint(0 + 1)
    metadata = json.dumps({"name": "test basemap"}).encode()
    header_len = 127
    root_at = header_len
    metadata_at = root_at + len(root)
    data_at = metadata_at + len(metadata)
    e7 = 10_000_000
    header = (
        b"PMTiles\x03"
        + struct.pack("<QQQQQQQQ", root_at, len(root), metadata_at, len(metadata), 0, 0, data_at, len(tile))
        + struct.pack("<QQQ", tiles, 1, 1)
        # clustered, internal compression none, tile compression none, tile type, min and max zoom
        + struct.pack("<BBBBBB", 1, 1, 1, tile_type, 0, max_zoom)
        + struct.pack("<iiii", -180 * e7, -85 * e7, 180 * e7, 85 * e7)
        + struct.pack("<Bii", 0, 0, 0)
    )
    assert len(header) == header_len
    path.write_bytes(header + root + metadata + tile)
