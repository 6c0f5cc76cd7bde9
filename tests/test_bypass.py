"""Inspection-depth bypass with every stage and the shipped signature set: a flow is handed to the
kernel once its first stream.depth bytes have been inspected, never before."""
from pathlib import Path

from gateway.config import from_dict
from gateway.pipeline import Inspector, Verdict
from gateway.signatures import SignatureSet
from gateway.stages import build_stages

from .conftest import handshake, tcp

SIGNATURES = Path(__file__).resolve().parent.parent / "signatures"
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
C, S = "10.10.0.10", "198.18.0.10"


def _download(body: bytes, depth: int = 4096, ips: bool = True) -> list[Verdict]:
    cfg = from_dict({"stream": {"depth": depth}})
    insp = Inspector(cfg, build_stages(cfg, SignatureSet.open(SIGNATURES), ips=ips))
    verdicts = [insp.process(d, 1.0) for d, _ in handshake(C, S)]
    req = b"GET /file.bin HTTP/1.1\r\nHost: example.test\r\n\r\n"
    verdicts.append(insp.process(tcp(C, S, 40000, 80, "PA", 1001, 5001, req), 1.0))
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    seq = 5001
    for off in range(0, len(resp), 1400):
        seg = resp[off:off + 1400]
        verdicts.append(insp.process(tcp(S, C, 80, 40000, "PA", seq, 1001 + len(req), seg), 1.0))
        seq += len(seg)
    return verdicts


def test_http_download_is_bypassed_after_depth_with_rules_loaded():
    verdicts = _download(b"A" * 20000)
    first = verdicts.index(Verdict.BYPASS)
    # handshake (packets 0-2), request (3), response segments of 1,400 bytes: the third (6) reaches 4096
    assert first == 6 and all(v == Verdict.ACCEPT for v in verdicts[:first])
    assert all(v == Verdict.BYPASS for v in verdicts[first:])


def test_malware_within_depth_is_blocked_not_bypassed():
    verdicts = _download(EICAR + b"A" * 20000)
    assert Verdict.DROP in verdicts and Verdict.BYPASS not in verdicts
