"""Parse rate of the app-layer parsers on typical exchanges (MB/s of payload bytes fed).

    .venv/bin/python -m benchmarks.applayer_parse_rate [--seconds 2]

Cases: an HTTP GET + 100 KB response (identity, fed as 1448-byte segments, as reassembly would),
the same gzip-compressed and chunked, a browser-like GET with a 512-byte answer, a DNS query/answer
pair over UDP, and a TLS 1.2 handshake with a certificate chain (from the test captures). Prints one
JSON object per case; rates per CPU second and per wall second.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

from gateway.applayer.dns import DnsParser
from gateway.applayer.http import HttpParser
from gateway.applayer.tls import TlsParser

SEG = 1448
ROOT = Path(__file__).resolve().parent.parent


def _segments(data: bytes) -> list[bytes]:
    return [data[i:i + SEG] for i in range(0, len(data), SEG)]


def http_case(encoding: str):
    body = (b"<html><body>" + b"".join(b"<p>line %d of a fairly ordinary page</p>\n" % i for i in range(3000)))[:100_000]
    req = (b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
           b"Accept: text/html\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n")
    if encoding == "gzip":
        payload = gzip.compress(body)
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(payload)
    elif encoding == "chunked":
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in _segments(body)) + b"0\r\n\r\n"
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    else:
        payload = body
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(body)
    resp_segs = _segments(head + payload)

    def run():
        p = HttpParser()
        p.feed(req, True)
        for s in resp_segs:
            p.feed(s, False)
    return run, len(req) + len(head) + len(payload)


def http_small_case():
    req = (b"GET /search?q=clinic+software&lang=en HTTP/1.1\r\nHost: www.example.com\r\n"
           b"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36\r\n"
           b"Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.9\r\n"
           b"Accept-Encoding: gzip, deflate\r\nCookie: sid=abcdef0123456789\r\nConnection: keep-alive\r\n\r\n")
    resp = (b"HTTP/1.1 200 OK\r\nDate: Mon, 23 Nov 2026 10:00:00 GMT\r\nServer: nginx\r\n"
            b"Content-Type: text/html; charset=utf-8\r\nContent-Length: 512\r\nConnection: keep-alive\r\n"
            b"Cache-Control: no-cache\r\n\r\n" + b"x" * 512)

    def run():
        p = HttpParser()
        p.feed(req, True)
        p.feed(resp, False)
    return run, len(req) + len(resp)


def dns_case():
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    q = bytes(DNS(id=1, rd=1, qd=DNSQR(qname="www.example.com")))
    a = bytes(DNS(id=1, qr=1, rd=1, ra=1, qd=DNSQR(qname="www.example.com"),
                  an=DNSRR(rrname="www.example.com", type="CNAME", rdata="edge.example.net")
                  / DNSRR(rrname="edge.example.net", rdata="198.18.0.1")
                  / DNSRR(rrname="edge.example.net", rdata="198.18.0.2"), ancount=3))

    def run():
        p = DnsParser()
        p.feed(q, True)
        p.feed(a, False)
    return run, len(q) + len(a)


def tls_case():
    os.sys.path.insert(0, str(ROOT))
    from tests.test_applayer_pcaputil import DATA, tcp_streams
    client, server = tcp_streams(DATA / "tls-fingerprint-alert.pcap")[0]
    cs, ss = _segments(client), _segments(server)

    def run():
        p = TlsParser()
        for s in cs:
            p.feed(s, True)
        for s in ss:
            p.feed(s, False)
    return run, len(client) + len(server)


def measure(name: str, case, seconds: float) -> dict:
    run, nbytes = case
    run()                                  # warm up
    n = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    deadline = t0 + seconds
    while time.perf_counter() < deadline and n < 1_000_000:
        run()
        n += 1
    dt = time.perf_counter() - t0
    # CPU time as well: on a shared machine the wall clock also counts time spent descheduled.
    cpu = time.process_time() - c0
    return {"case": name, "bytes_per_run": nbytes, "runs": n, "us_per_run_cpu": round(cpu / n * 1e6, 1),
            "MB_per_s_cpu": round(nbytes * n / cpu / 1e6, 1), "MB_per_s_wall": round(nbytes * n / dt / 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    for name, case in (("http_get_100k_identity", http_case("identity")),
                       ("http_get_100k_chunked", http_case("chunked")),
                       ("http_get_100k_gzip", http_case("gzip")),
                       ("http_get_small_512b", http_small_case()),
                       ("dns_udp_query_answer", dns_case()),
                       ("tls12_handshake_with_certs", tls_case())):
        print(json.dumps(measure(name, case, args.seconds)))


if __name__ == "__main__":
    main()
