"""The inline driver: real packets from netfilter's NFQUEUE through the Inspector and back.

    supervisor.py  `gateway run`: config + signatures, metrics endpoint, one forked worker per queue,
                   restarts, netfilter rules in and out
    netfilter.py   the iptables chain (NFQUEUE with queue-balance / queue-bypass, reject and bypass marks)
    nfqueue.py     our NFQUEUE netlink binding: fail-open flag, bursts, batched verdicts
    worker.py      per-queue loop: burst -> Inspector.process -> verdicts; metrics folding, EVE lines
    measure.py     iperf3 through the lab: where the per-packet cost is (not a test)
"""
