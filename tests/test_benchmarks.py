"""Smoke tests of the benchmark suite: shapes and bookkeeping, never speed (speed lives in benchmarks/)."""
from __future__ import annotations

import itertools
import json
import os

import pytest

from benchmarks import ids_instructions, inline, offline, plot
from gateway.packet import decode
from gateway.pipeline import Inspector, Verdict
from gateway.stages import build_stages


def test_offline_writes_json_of_every_configuration(tmp_path):
    out = tmp_path / "offline.json"
    assert offline.main(["--count", "3000", "--repeats", "1", "--max-seconds", "30", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["benchmark"] == "offline"
    assert res["command"].startswith("python -m benchmarks.offline")
    assert [r["name"] for r in res["results"]] == list(offline.CONFIGS) + ["replay"]
    assert res["trace"]["packets"] == 3000
    assert sum(res["trace"]["packets_by_proto"].values()) == 3000
    for r in res["results"]:
        assert set(r) >= {"name", "label", "pps", "pps_cpu", "mbps", "us_per_packet", "runs"}, r
        assert len(r["runs"]) == 1
        run = r["runs"][0]
        assert run["packets"] == 3000, r          # bounded by count, not cut by the time cap
        assert run["bytes"] > 3000 * 40
        assert r["pps"] > 0 and r["mbps"] > 0
    replay = res["results"][-1]["runs"][0]
    assert replay["events"] > 0                   # flow events reached the EVE file


def test_trace_mix_is_what_the_benchmark_claims():
    trace, desc = offline.build_trace(6000, concurrency=64)
    assert len(trace) == 6000 and desc["packets"] == 6000
    by = desc["packets_by_proto"]
    assert by["tcp"] > 0.8 * 6000 and by["udp"] > 0 and by["icmp"] > 0
    pkts = [decode(d, ts) for d, ts, _i, _o in trace]
    assert all(b.ts > a.ts for a, b in itertools.pairwise(pkts))
    data_sizes = [len(p.payload) for p in pkts if p.proto == 6 and p.payload]
    assert min(data_sizes) >= 1000 and max(data_sizes) <= 1400
    assert any(p.payload.startswith(b"GET /emr/") for p in pkts)          # real HTTP on port 80
    assert any(p.payload.startswith(b"HTTP/1.1 200 OK") for p in pkts)
    # Every conversation is its own flow (patched client address/port), interleaved.
    cfg = offline.clinic_config(bypass=False)
    insp = Inspector(cfg, build_stages(cfg))
    for d, ts, indev, outdev in trace:
        insp.process(d, ts, indev, outdev)
    assert insp.errors == 0, insp.last_error
    assert insp.flows.created > desc["conversations"] - 64 - 1
    verdicts = {}
    for (v, _reason), (n, _b) in insp.counts.items():
        verdicts[v] = verdicts.get(v, 0) + n
    assert verdicts[Verdict.ACCEPT] > 0.9 * 6000
    assert verdicts.get(Verdict.REJECT, 0) > 0            # SYNs to TCP 445: the clinic policy rejects them


def test_plot_writes_a_png_with_or_without_inline_results(tmp_path):
    off = {"host": {"cpu": "x", "cores": 2, "python": "3.11"}, "params": {"count": 10},
           "trace": {"mean_ip_bytes": 700},
           "results": [{"label": "decode only", "pps": 1000, "mbps": 5.0, "us_per_packet": 1.0}]}
    inl = {"params": {"streams": 4, "seconds": 5},
           "cases": [{"case": c, "label": f"({c}) x, 1q", "queues": 1, "goodput_mbps": g, "forwarded_pps": p}
                     for c, g, p in (("a", 2000, 2e5), ("b", 400, 4e4), ("c", 300, 3e4), ("d", 1800, 1.6e5))]}
    inl["ratios"] = inline.compute_ratios(inl["cases"])
    for name, i in (("both.png", inl), ("off.png", None)):
        out = plot.plot(off, i, tmp_path / name)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ratios_pair_cases_by_queue_count_and_skip_failed_runs():
    cases = [
        {"case": "a", "queues": None, "goodput_mbps": 2000.0, "forwarded_pps": 200000},
        {"case": "b", "queues": 1, "goodput_mbps": 400.0, "forwarded_pps": 40000},
        {"case": "c", "queues": 1, "goodput_mbps": 300.0, "forwarded_pps": 30000},
        {"case": "d", "queues": 1, "goodput_mbps": 1500.0, "forwarded_pps": 120000},
        {"case": "b", "queues": 2, "goodput_mbps": 500.0, "forwarded_pps": 50000},
        {"case": "c", "queues": 2, "error": "iperf3 did not finish"},
    ]
    r = inline.compute_ratios(cases)
    assert r["c_over_b_1q"] == {"goodput": 0.75, "pps": 0.75, "target": 0.6}
    assert r["d_over_a_1q"] == {"goodput": 0.75, "pps": 0.6, "target": 0.5}
    assert "c_over_b_2q" not in r and "d_over_a_2q" not in r


def test_py_spy_collapsed_stacks_are_summarised(tmp_path):
    raw = tmp_path / "p.collapsed"
    raw.write_text("run (gateway/inline/worker.py:120);process (gateway/pipeline.py:105);decode (gateway/packet.py:90) 30\n"
                   "run (gateway/inline/worker.py:120);recv_burst (gateway/inline/nfqueue.py:200) 10\n")
    text = inline.summarise_collapsed(raw)
    assert "40 samples" in text
    assert " 75.0   decode (gateway/packet.py)" in text        # self share
    assert "100.0   run (inline/worker.py)" in text            # inclusive share
    only = inline.summarise_collapsed(raw, within="process")
    assert "30 samples inside process()" in only and "recv_burst" not in only


def test_median_run_picks_the_middle_round_and_keeps_every_round():
    runs = [{"goodput_mbps": g, "forwarded_pps": g * 100} for g in (300.0, 100.0, 200.0)] + [{"error": "timeout"}]
    med = inline.median_run(runs)
    assert med["goodput_mbps"] == 200.0 and med["forwarded_pps"] == 20000
    assert [r.get("goodput_mbps") for r in med["runs"]] == [300.0, 100.0, 200.0, None]
    assert inline.median_run([{"error": "a"}, {"error": "b"}]) == {"error": "a; b"}


@pytest.mark.netns
@pytest.mark.skipif(inline.skip_reason() is not None, reason=inline.skip_reason() or "")
def test_inline_one_short_round_over_two_queues():
    """The inline benchmark end to end, 1-second runs: the clients really spread over both queues, and in
    (b) and (c) every forwarded packet went through userspace (fail-open off), while (d) bypassed."""
    res = inline.run(seconds=1, streams=2, queue_counts=(2,), repeats=1, prefix=f"bt{os.getpid() % 0xFFFF:x}",
                     log=lambda *a: None)
    by = {c["case"]: c for c in res["cases"]}
    assert set(by) == {"a", "b", "c", "d"}
    for c in by.values():
        assert "error" not in c, c
        assert c["goodput_mbps"] > 0 and c["forwarded_pps"] > 0
    assert "queued_packets" not in by["a"]                      # no queue bound: the kernel alone
    for case in "bc":
        per_queue = by[case]["queued_per_queue"]
        assert len(per_queue) == 2 and all(n > 0 for n in per_queue.values()), per_queue
        # Every packet the gateway namespace forwarded (both directions) came through a queue.
        assert by[case]["queued_packets"] >= 0.95 * by[case]["forwarded_packets"], by[case]
    assert by["c"]["gateway_packets"].get("accept", 0) >= 0.95 * by["c"]["queued_packets"]
    assert by["d"]["gateway_packets"].get("bypass", 0) > 0
    assert set(res["ratios"]) == {"c_over_b_2q", "d_over_a_2q"}


def test_ids_trace_tls_sessions_finish_their_handshake():
    """The IDS benchmark's TLS conversations go encrypted both ways, as real TLS 1.3 does, so their responses
    are not payload-inspected (Suricata's encryption-handling default) - checked with our own TLS parser."""
    from benchmarks.ids import build_trace
    from gateway.config import Config
    from gateway.pipeline import Inspector
    from gateway.stages import build_stages

    insp = Inspector(Config(), build_stages(Config(), None))
    for i, p in enumerate(build_trace(20)):
        insp.process(p, 1_700_000_000 + i * 1e-4)
    tls = [f for f in insp.flows.flows.values() if f.app_proto == "tls"]
    assert len(tls) == 4
    assert all(f.state["applayer"].parser.done for f in tls)


def test_ids_plot_from_results(tmp_path):
    side = {"parse_seconds": 3.0, "hyperscan_build_seconds": 10.0, "rules_loaded": 24741}
    ids = {"throughput": {"rules_off": {"pps_cpu": 50000, "mbps_cpu": 200.0},
                          "rules_on": {"pps_cpu": 30000, "mbps_cpu": 120.0}, "rules_on_vs_rules_off": 0.6},
           "replay": {"rules_off": {"pps_cpu": 30000, "mbps_cpu": 130.0},
                      "rules_on": {"pps_cpu": 20000, "mbps_cpu": 85.0}, "rules_on_vs_rules_off": 0.66},
           "trace": {"mix": "50% HTTP, 30% DNS, 20% TLS"},
           "load": {"cold": side, "warm_cache": dict(side, hyperscan_build_seconds=1.0), "rss_mb_per_worker": 200},
           "when": "now", "python": "3.11"}
    out = plot.plot_ids(ids, tmp_path / "ids.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ids_trace_pcap_replays_the_same_datagrams(tmp_path):
    """The replay measure reads back exactly the trace the inspection-only measure feeds from memory."""
    from benchmarks.ids import build_trace, write_pcap
    from gateway.pcapio import read_frames

    trace = build_trace(10)
    write_pcap(trace, tmp_path / "t.pcap")
    frames = list(read_frames(str(tmp_path / "t.pcap")))
    assert [f.ip for f in frames] == trace
    assert abs((frames[1].ts - frames[0].ts) - 20e-6) < 1e-7


def test_ids_time_configs_reports_ratio_with_its_quartiles():
    """The ratio is the median of the per-round ratios, given with the first and third quartiles so a reader
    sees how far the rounds of a shared machine disagree (an A/A run here: both configurations alike)."""
    from benchmarks.ids import Traces, time_configs
    from gateway.config import Config
    from gateway.stages import build_stages

    def stages():
        return build_stages(Config(), None)
    out = time_configs({"a": stages, "b": stages}, Traces(4, 2), count=50, repeats=5, max_seconds=20)
    assert out["a"]["packets"] >= 50 and out["b"]["packets"] >= 50
    q1, q3 = out["b_vs_a_quartiles"]
    assert 0 < q1 <= out["b_vs_a"] <= q3


TINY_RULES = ('alert http any any -> any any (msg:"php id"; http.uri; content:".php?id="; sid:1;)\n'
              'alert dns any any -> any any (msg:"q"; dns.query; content:"example"; sid:2;)\n')


def _rules_dir(tmp_path, text: str):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "t.rules").write_text(text)
    return rules


@pytest.mark.skipif(bool(ids_instructions.missing_tools()),
                    reason="needs valgrind, callgrind_control and setarch (apt-get install valgrind)")
def test_ids_instructions_counts_one_pass_per_configuration(tmp_path):
    """The callgrind measure on a tiny ruleset and trace: two dumps, rules-on counting more instructions than
    rules-off (the IDS stage runs on top of the same pipeline), and the JSON written."""
    rules = _rules_dir(tmp_path, TINY_RULES + 'alert tcp any any -> any any (msg:"raw"; flow:established; '
                                            'content:"|00 01 02 03|"; sid:3;)\n')
    out = tmp_path / "instr.json"
    assert ids_instructions.main(["--rules-dir", str(rules), "--conversations", "6", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["rules_loaded"] == 3 and res["packets"] > 0
    assert res["rules_on_instructions"] > res["rules_off_instructions"] > 0
    assert res["ids_instructions"] == res["rules_on_instructions"] - res["rules_off_instructions"]
    assert 0 < res["rules_off_over_rules_on"] < 1


def test_callgrind_dump_total_reads_summary_or_totals(tmp_path):
    dump_total = ids_instructions.dump_total
    (tmp_path / "a").write_text("version: 1\nevents: Ir\nsummary: 1234\nfn=x\n1 2\n")
    (tmp_path / "b").write_text("events: Ir\nfn=x\n1 2\ntotals: 99\n")
    (tmp_path / "c").write_text("events: Ir\n")
    assert dump_total(tmp_path / "a") == 1234 and dump_total(tmp_path / "b") == 99
    with pytest.raises(ValueError, match="no summary or totals"):
        dump_total(tmp_path / "c")


def test_ids_bytecodes_counts_every_packet_kind(tmp_path):
    from benchmarks import ids_bytecodes
    rules = _rules_dir(tmp_path, TINY_RULES)
    out = tmp_path / "bc.json"
    assert ids_bytecodes.main(["--rules-dir", str(rules), "--conversations", "20", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["rules_loaded"] == 2 and res["bytecodes"] > 0
    kinds = res["by_kind"]
    assert {"http-c-data", "http-empty", "dns-q", "dns-a", "tls-c-data"} <= set(kinds)
    assert sum(k["bytecodes"] for k in kinds.values()) == res["bytecodes"]
    assert sum(k["packets"] for k in kinds.values()) <= res["packets"]     # the firewall may stop some first
    assert res["by_function"][0]["function"].startswith("gateway/ids/")
