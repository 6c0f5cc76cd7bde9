"""base64_decode / base64_data (Suricata 7): the decoder, the parser, matching, and ET Open rules end to end."""
from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ids.base64dec import decode_rfc4648

# ------------------------------------------------------------------------------------------ the decoder


@pytest.mark.parametrize("data, want", [
    # Suricata's util-base64.c test vectors for RFC 4648 mode
    (b"", b""), (b"Zg==", b"f"), (b"Zm8=", b"fo"), (b"Zm9v", b"foo"), (b"Zm9vYg==", b"foob"),
    (b"Zm9vYmE=", b"fooba"), (b"Zm9vYmFy", b"foobar"),
    (b"Zm 9v Ym Fy", b"f"),                 # whitespace is not skipped: decoding ends there
    (b"Zm$9vYm.Fy", b"f"),
    (b"Y21Wd2IzSjBaVzFoYVd4bWNtRjFaRUJoZEc4dVoyOTJMbUYxOmpqcHh4b3Rhb2w%3D",
     b"cmVwb3J0ZW1haWxmcmF1ZEBhdG8uZ292LmF1:jjpxxotaol"),
    # padding counts where it stands and decoding goes on after it
    (b"Zg==Zm9v", b"ffoo"), (b"====", b""), (b"A===", b""), (b"Zm=v", b"f`"),
    # a last partial block: n - 1 bytes when the input ends, at least one when an invalid character ends it
    (b"Z", b""), (b"Zm", b"f"), (b"Zm9", b"fo"), (b"Z$", b"d"), (b"Zm$", b"f"), (b"Zm9\n", b"fo"),
    (b"Zg=", b"f\x00"),
    (b"SGVsbG8gV29ybGQ=\r\nSGVsbG8=", b"Hello World"),     # a line break ends it (RFC 2045 would go on)
])
def test_decoder_vectors(data, want):
    assert decode_rfc4648(data) == want


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoder_agrees_with_the_standard_on_clean_input(raw):
    enc = base64.b64encode(raw)
    assert decode_rfc4648(enc) == raw
    assert decode_rfc4648(enc + b"\r\n..." + enc) == raw          # stops at the first invalid character
    assert decode_rfc4648(enc.rstrip(b"=")) == raw                # missing padding is fine


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_decoder_never_raises_and_never_grows(data):
    out = decode_rfc4648(data)
    assert len(out) <= max(len(data) * 3 // 4, 1)
