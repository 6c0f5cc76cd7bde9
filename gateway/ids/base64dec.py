"""The base64 decoder of Suricata 7's `base64_decode` keyword (util-base64.c DecodeBase64, mode RFC 4648).

Not Python's base64 module: Suricata's decoder has its own answers on broken input, and a rule's match depends
on them.

- Input is read in blocks of 4 characters of the alphabet A-Z a-z 0-9 + / and '='. The first other character
  (whitespace, '%', '-', '_', a line break, ...) ends the decoding: RFC 4648 mode skips nothing.
- '=' counts as the value 0 and as padding wherever it stands in its block: a block gives 3 bytes less one per
  '=' (none for 3 or 4), and decoding goes on with the next block ("Zg==Zm9v" gives b"ffoo").
- A last, incomplete block of n characters (1 to 3) gives n - 1 bytes when the input simply ended (cut by
  `bytes` or by the buffer end), and max(n - 1, 1) bytes when an invalid character ended it.

Suricata also stops when its output buffer (as large as the largest `bytes` of the rule set) is full; 4 input
characters give at most 3 bytes, so it does not fill up (one corner is not reproduced: a last partial block
after an invalid character is dropped there when every rule of the set has `bytes` 2 or less).
"""
from __future__ import annotations

import binascii
import re

# the longest run of alphabet characters (and '=') at the start: where RFC 4648 mode stops
_RUN = re.compile(rb"[A-Za-z0-9+/=]*")
_VALUE = {c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def decode_rfc4648(data: bytes) -> bytes:
    """What Suricata 7's base64_decode keyword decodes from `data` (the bytes it was given to decode)."""
    run = _RUN.match(data).end()
    stopped = run < len(data)          # an invalid character ended the input
    full = run - run % 4
    if b"=" not in data[:run]:
        out = binascii.a2b_base64(data[:full]) if full else b""   # exact for whole blocks without '='
    else:
        out = b"".join(_block(data[i:i + 4]) for i in range(0, full, 4))
    n = run - full
    if n:
        keep = max(n - 1, 1) if stopped else n - 1
        if keep:
            out += _block(data[full:run] + b"A" * (4 - n), keep)
    return out


def _block(chars: bytes, keep: int | None = None) -> bytes:
    """One block of 4 characters, '=' as 0; `keep` bytes of it (default: 3 less one per '=', at least 0)."""
    v = 0
    for c in chars:
        v = (v << 6) | _VALUE.get(c, 0)
    if keep is None:
        keep = max(3 - chars.count(b"="), 0)
    return v.to_bytes(3, "big")[:keep]
