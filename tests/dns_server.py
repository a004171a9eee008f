"""A real DNS server on 127.0.0.1 (dnslib, UDP, a port from the OS) serving a test zone.

Records are zone-file lines (``"hinge.com. 300 IN TXT \\"v=spf1 ~all\\""``). Like a
recursive resolver, it follows CNAMEs within the zone and returns the whole chain;
a name it does not know is NXDOMAIN, a known name without the asked type is NOERROR
with no answer. ``servfail`` names answer SERVFAIL (a broken upstream).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from dnslib import QTYPE, RCODE, RR, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: str, servfail: tuple[str, ...] = ()) -> None:
        self.records = RR.fromZone(zone)
        self.servfail = {DNSLabel(name) for name in servfail}
        self.queries: list[tuple[str, str]] = []

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        name, kind = request.q.qname, QTYPE[request.q.qtype]
        self.queries.append((str(name).rstrip("."), kind))
        if name in self.servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        for _ in range(8):  # follow a CNAME chain, as a recursive resolver does
            here = [rr for rr in self.records if rr.rname == name]
            matches = [rr for rr in here if QTYPE[rr.rtype] == kind]
            cname = [rr for rr in here if rr.rtype == QTYPE.CNAME]
            if matches or not cname or kind == "CNAME":
                reply.add_answer(*matches)
                break
            reply.add_answer(*cname)
            name = cname[0].rdata.label
        if not reply.rr and not any(rr.rname == request.q.qname for rr in self.records):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@contextlib.contextmanager
def dns_server(zone: str, servfail: tuple[str, ...] = ()) -> Iterator[tuple[str, ZoneResolver]]:
    """``("127.0.0.1:PORT", resolver)`` while the server runs."""
    resolver = ZoneResolver(zone, servfail)
    quiet = DNSLogger("-recv,-send,-request,-reply,-truncated,-error,-data")
    server = DNSServer(resolver, address="127.0.0.1", port=0, logger=quiet).server
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        host, port = server.server_address
        yield f"{host}:{port}", resolver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
