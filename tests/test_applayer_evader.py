"""Conformance: the suricata-verify http-evader captures (EICAR served with ~200 HTTP evasions).

Each suricata-verify test expects Suricata (libhtp) to find the EICAR string in file_data and to log
the file as "eicar.txt"; the same must hold for our parser, whole and split at random points.
The tests run Suricata with response-body-decompress-layer-limit=3, which is also our default.
"""
from __future__ import annotations

import random

import pytest

from gateway.applayer.http import HttpLimits, HttpParser

from .test_applayer_pcaputil import DATA, tcp_streams

EICAR = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"
EICAR_HEAD = b"X5O!P%@AP[4"
LIMITS = HttpLimits(decompress_layer_limit=3)
CASES = sorted(p.name for p in (DATA / "http-evader").glob("*.pcap"))


def run(client: bytes, server: bytes, rnd: random.Random | None = None):
    parser = HttpParser(LIMITS)
    events = []
    for data, to_server in ((client, True), (server, False)):
        i = 0
        while i < len(data):
            n = rnd.randint(1, 9) if rnd else len(data)
            events += parser.feed(data[i:i + n], to_server)
            i += n
        events += parser.eof(to_server)
    return events


def files(events):
    return [(e.info, e.data) for e in events if e.kind == "file" and not e.to_server]


def test_the_whole_family_is_here():
    assert len(CASES) == 201


@pytest.mark.parametrize("name", CASES)
def test_evader_case_yields_the_eicar_file(name):
    (client, server), = tcp_streams(DATA / "http-evader" / name)
    found = files(run(client, server))
    assert any(EICAR in data and EICAR_HEAD in data for _, data in found), found
    assert any(fname == "eicar.txt" for fname, _ in found), found


@pytest.mark.parametrize("name", CASES[::7])
def test_evader_case_is_split_invariant(name):
    (client, server), = tcp_streams(DATA / "http-evader" / name)

    def summary(events):
        out, bodies = [], {}
        for e in events:
            if e.kind.endswith("_body"):
                bodies.setdefault((e.tx.tx_id, e.kind), bytearray()).extend(e.data)
            else:
                out.append((e.kind, e.to_server, e.info, e.data, e.tx.tx_id if e.tx else None))
        return out, bodies

    whole = summary(run(client, server))
    for seed in range(2):
        assert summary(run(client, server, random.Random(seed))) == whole


def test_layer_limit_two_still_reads_single_layer_bodies():
    # Suricata's default limit is 2; single-encoded evasions must not depend on the raised limit.
    (client, server), = tcp_streams(DATA / "http-evader" / "202.pcap")
    parser = HttpParser(HttpLimits(decompress_layer_limit=2))
    events = parser.feed(client, True) + parser.feed(server, False) + parser.eof(False)
    assert any(EICAR in d for _, d in files(events))


def test_mutated_evader_cases_are_split_invariant():
    # Differential fuzzing with a fixed seed: corrupt the captured exchanges (broken chunking,
    # broken compression, stray CR/LF...) and compare whole-stream parsing with tiny segments.
    rnd = random.Random(20260101)
    streams = [tcp_streams(DATA / "http-evader" / name)[0] for name in CASES[::3]]
    inserts = [b"\r", b"\n", b"\r\n", b" ", b":", b"0", b"\x00", b"chunked", b"\t", b"\r\r\n", b" \n"]

    def mutate(data: bytes) -> bytes:
        b = bytearray(data)
        for _ in range(rnd.randint(1, 6)):
            i = rnd.randrange(len(b))
            op = rnd.randrange(3)
            if op == 0:
                b[i] = rnd.randrange(256)
            elif op == 1:
                del b[i:i + rnd.randint(1, 10)]
            else:
                b[i:i] = rnd.choice(inserts)
        return bytes(b)

    def summary(events):
        out, bodies = [], {}
        for e in events:
            if e.kind.endswith("_body"):
                bodies.setdefault((e.tx.tx_id if e.tx else None, e.kind), bytearray()).extend(e.data)
            else:
                out.append((e.kind, e.to_server, e.info, e.data, e.tx.tx_id if e.tx else None))
        return out, bodies

    for _ in range(400):
        client, server = rnd.choice(streams)
        client, server = mutate(client), mutate(server)
        assert summary(run(client, server, random.Random(rnd.random()))) == summary(run(client, server))
