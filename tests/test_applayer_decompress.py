"""Body decoder: format sniffing, passthrough of lying headers, caps, split invariance."""
from __future__ import annotations

import gzip
import lzma
import random
import struct
import zlib

from gateway.applayer.decompress import BodyDecoder, parse_content_encoding

BODY = b"".join(b"line %d of the body\n" % i for i in range(400))


def decode(codings, data, limit=1 << 20, layers=3, pieces=None):
    dec = BodyDecoder(codings, limit, layers)
    out = bytearray()
    if pieces is None:
        out += dec.feed(data)
    else:
        for p in pieces:
            out += dec.feed(p)
    out += dec.finish()
    return bytes(out), dec


def test_parse_content_encoding_tolerates_junk():
    assert parse_content_encoding(b"gzip, deflate") == (["gzip", "deflate"], [])
    assert parse_content_encoding(b": x-gzip;;DEFLATE\x0c br") == (["gzip", "deflate"], [b"br"])
    assert parse_content_encoding(b"identity") == ([], [])


def test_gzip_header_fields_and_broken_trailer():
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = comp.compress(BODY) + comp.flush()
    header = b"\x1f\x8b\x08" + bytes([4 | 8 | 16 | 2]) + b"\x00" * 6   # FEXTRA FNAME FCOMMENT FHCRC
    header += struct.pack("<H", 3) + b"xyz" + b"name.txt\x00" + b"a comment\x00" + b"\x00\x00"
    out, dec = decode(["gzip"], header + raw + b"\xde\xad\xbe\xef\x00\x00\x00\x00")   # wrong CRC/ISIZE
    assert out == BODY and not dec.anomalies


def test_deflate_with_and_without_zlib_wrapper_and_lzma():
    assert decode(["deflate"], zlib.compress(BODY))[0] == BODY
    assert decode(["deflate"], zlib.compress(BODY)[2:-4])[0] == BODY
    assert decode(["gzip"], zlib.compress(BODY))[0] == BODY            # mislabelled, still decoded
    assert decode(["lzma"], lzma.compress(BODY, format=lzma.FORMAT_ALONE))[0] == BODY


def test_lying_header_passes_through():
    out, dec = decode(["gzip", "deflate"], b"plain text that is not compressed at all")
    assert out == b"plain text that is not compressed at all"
    assert "decompression_failed" in dec.anomalies


def test_output_cap_and_truncation_flag():
    bomb = gzip.compress(b"A" * (8 << 20))
    out, dec = decode(["gzip"], bomb, limit=1000)
    assert out == b"A" * 1000 and dec.truncated


def test_input_that_never_produces_output_is_bounded():
    # Empty non-final stored blocks: zlib consumes them forever without producing a byte.
    empty_blocks = b"\x00\x00\x00\xff\xff" * 100_000
    dec = BodyDecoder(["deflate"], 4096, 3)
    for i in range(0, len(empty_blocks), 4096):
        dec.feed(empty_blocks[i:i + 4096])
    assert all(len(layer.pending) <= 4096 for layer in dec.layers)


def test_split_points_do_not_change_output():
    data = gzip.compress(zlib.compress(BODY))
    whole = decode(["deflate", "gzip"], data)[0]
    assert whole == BODY
    rnd = random.Random(3)
    for _ in range(20):
        cuts = sorted(rnd.sample(range(1, len(data)), 6))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        assert decode(["deflate", "gzip"], data, pieces=pieces)[0] == whole

