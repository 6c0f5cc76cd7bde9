"""Application-layer parsers: incremental, sans-I/O, bounded, and never raising on bad input.

They never touch a socket. The stream stage hands them bytes that TCP reassembly made contiguous (or
one UDP datagram) and gets back a list of `AppEvent(kind, tx, to_server, data, info)`; feeding the
same bytes split at any points gives the same transactions and buffers. Malformed input becomes
"anomaly" events (info = a Suricata-like code) and parsing continues where it can; a direction that
cannot be followed any more is given up with an anomaly.

Protocol detection (detect.py)
    detect(to_server, to_client, transport="tcp"|"udp", sport=None, dport=None)
        -> "http" | "tls" | "dns" | "smtp" | "ftp" | None (undecided: call again with more bytes)
    Content decides; ports (PORT_HINTS) only break ties.

HTTP/1.x (http.py) - one HttpParser(HttpLimits()) per connection
    feed(data, to_server) / feed_toserver(data) / feed_toclient(data); eof(to_server) when a direction
    closes (ends close-delimited bodies). Events: request_headers, request_body, request_complete,
    response_headers, response_body, response_complete, file (info=name, data=body up to file_limit),
    anomaly. Pipelined requests are matched to responses in order; multipart/form-data uploads give
    one file event per part with a filename. Chunked and Content-Length
    bodies, gzip/deflate (zlib or raw)/lzma responses with capped output, header folding, and the
    http-evader corner cases behave as libhtp does.
    HttpTransaction.buffer(keyword, to_server=None) returns the inspection buffer of a Suricata
    keyword: http.uri (normalised like libhtp's IDS personality), http.uri.raw, http.method,
    http.request_line, http.host (lowercase, port stripped), http.host.raw, http.user_agent,
    http.header / http.header.raw / http.header_names / http.start / http.cookie /
    http.content_type / http.content_len / http.protocol (both directions: pass to_server),
    http.stat_code, http.stat_msg, http.response_line, http.server, http.location, http.referer,
    http.accept*, http.connection, http.request_body, http.response_body, file.data; old names
    (http_uri, file_data, ...) are accepted too. HTTP_BUFFERS lists them.
    HttpTransaction.buffers(keyword, to_server=None) -> list: the multi-buffers http.request_header /
    http.response_header ("Name: value" each; HTTP_MULTI_BUFFERS), or [buffer] for the others.
    HTTP anomaly codes are Suricata's app-layer-event names (request_field_missing_colon,
    invalid_response_chunk_len, duplicate_content_length_field_in_request, ...) where one exists.

DNS (dns.py) - DnsParser(tcp=False|True)
    feed(datagram_or_stream_bytes, to_server). Events: query, response (tx = DnsTransaction with
    .query/.response DnsMessage), anomaly (Suricata dns event names: malformed_data, z_flag_set,
    infinite_loop, name_too_long, too_many_labels, not_a_request, not_a_response, flooded).
    DnsTransaction.buffers(keyword, to_server=None) -> [names] from the message travelling in that
    direction: dns.query, dns.queries.rrname, dns.answers.rrname, dns.authorities.rrname,
    dns.additionals.rrname, dns.response.rrname (DNS_BUFFERS). parse_message(bytes) parses one
    message on its own.

TLS (tls.py) - TlsParser(TlsLimits())
    feed(data, to_server). Events: client_hello, server_hello, certificate, encrypted, anomaly
    (tx = the TlsSession). TlsSession.buffer(keyword) for tls.sni, tls.cert_subject,
    tls.cert_issuer, tls.cert_serial, tls.cert_fingerprint, tls.version, ja3.hash, ja3.string,
    ja3s.hash, ja3s.string; TlsSession.buffers(keyword) for tls.certs, tls.subjectaltname, tls.alpn.
    TlsSession.done is True once both directions are encrypted (nothing left to inspect).

SMTP (smtp.py) - SmtpParser(SmtpLimits())
    feed(data, to_server); eof(to_server). Events: command, reply, message_data, file (info=name, data=the
    decoded attachment), tx_complete, anomaly (Suricata smtp event names: invalid_reply,
    bdat_chunk_len_exceeded, mime_long_boundary, ...; SMTP_EVENTS lists them). tx = the SmtpTransaction
    (one per mail): helo, mail_from, rcpt_to, headers, files/attachments; SmtpTransaction.buffers("file.data")
    is one buffer per attachment. SmtpParser.done after an accepted STARTTLS (the rest is TLS).
"""
from .common import AppEvent
from .detect import PORT_HINTS, detect
from .dns import DNS_BUFFERS, DnsLimits, DnsMessage, DnsParser, DnsTransaction, parse_message
from .http import HTTP_BUFFERS, HTTP_MULTI_BUFFERS, HttpLimits, HttpParser, HttpTransaction
from .smtp import SMTP_EVENTS, SmtpLimits, SmtpParser, SmtpTransaction
from .tls import TlsLimits, TlsParser, TlsSession

__all__ = [
    "DNS_BUFFERS",
    "HTTP_BUFFERS",
    "HTTP_MULTI_BUFFERS",
    "PORT_HINTS",
    "SMTP_EVENTS",
    "AppEvent",
    "DnsLimits",
    "DnsMessage",
    "DnsParser",
    "DnsTransaction",
    "HttpLimits",
    "HttpParser",
    "HttpTransaction",
    "SmtpLimits",
    "SmtpParser",
    "SmtpTransaction",
    "TlsLimits",
    "TlsParser",
    "TlsSession",
    "detect",
    "parse_message",
]
