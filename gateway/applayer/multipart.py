"""multipart/form-data: the uploaded files inside a request body (what Suricata logs as files).

Works on the captured (bounded) body once the request is complete; parts are found with bytes.find on
the boundary, so the cost is linear in the body. Only parts with a filename are files; a truncated
last part (body over the capture limit) is returned with what was captured.
"""
from __future__ import annotations

import re

_BOUNDARY_RE = re.compile(rb"""boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))""", re.IGNORECASE)
_FILENAME_RE = re.compile(rb"""filename\*?\s*=\s*(?:"([^"]*)"|([^;\s]+))""", re.IGNORECASE)
MAX_PARTS = 64


def boundary_of(content_type: bytes | None) -> bytes | None:
    """The boundary of a multipart/form-data Content-Type, or None."""
    if not content_type or b"multipart/" not in content_type.lower():
        return None
    m = _BOUNDARY_RE.search(content_type)
    if m is None:
        return None
    b = m.group(1) if m.group(1) is not None else m.group(2)
    return b if 0 < len(b) <= 200 else None


def files(body: bytes, boundary: bytes) -> list[tuple[bytes, bytes]]:
    """[(filename, content)] for each part that carries a filename, in order."""
    delim = b"--" + boundary
    out: list[tuple[bytes, bytes]] = []
    pos = body.find(delim)
    parts = 0
    while pos != -1 and parts < MAX_PARTS:
        start = pos + len(delim)
        if body.startswith(b"--", start):
            break                                   # closing delimiter
        nxt = body.find(b"\r\n" + delim, start)
        part = body[start:nxt if nxt != -1 else len(body)]
        parts += 1
        if part.startswith(b"\r\n"):
            part = part[2:]
        head_end = part.find(b"\r\n\r\n")
        if head_end != -1:
            headers, content = part[:head_end], part[head_end + 4:]
            for line in headers.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-disposition":
                    m = _FILENAME_RE.search(value)
                    if m:
                        fname = (m.group(1) if m.group(1) is not None else m.group(2)).strip()
                        if b"''" in fname:
                            fname = fname.split(b"''", 1)[1]     # RFC 5987 charset''name
                        out.append((fname, content))
                    break
        if nxt == -1:
            break
        pos = nxt + 2
    return out
