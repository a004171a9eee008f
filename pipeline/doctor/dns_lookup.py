"""DNS lookups for the doctor, through dnspython: the system resolver, or one server
given as ``--dns-server HOST:PORT`` (a test server on 127.0.0.1, or 1.1.1.1:53).

"No such record" is an answer (an empty list); a server that does not answer is
:class:`DnsUnavailable`, so a check can tell "missing" from "could not look".
"""

from __future__ import annotations

import ipaddress
import socket

import dns.exception
import dns.resolver

from pipeline.errors import ConfigError, PipelineError

TIMEOUT = 4.0  # seconds for one lookup, retries included


class DnsUnavailable(PipelineError):
    """The resolver did not answer (timeout, SERVFAIL, refused)."""


def parse_server(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST`` (port 53), ``[::1]:5353``; a host name is resolved once."""
    host, port = value.strip(), 53
    if host.startswith("["):
        inside, _, rest = host[1:].partition("]")
        host, port_text = inside, rest.removeprefix(":")
        port = int(port_text) if port_text.isdigit() else port
    elif host.count(":") == 1:
        host, _, port_text = host.partition(":")
        if not port_text.isdigit():
            raise ConfigError(f"--dns-server {value!r}: the port must be a number")
        port = int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host = socket.getaddrinfo(host, port, proto=socket.IPPROTO_UDP)[0][4][0]
        except OSError as exc:
            raise ConfigError(f"--dns-server {value!r}: cannot resolve {host!r}") from exc
    return host, port


class Dns:
    """TXT, CNAME, MX and address lookups with one resolver."""

    def __init__(self, server: str | None = None, timeout: float = TIMEOUT) -> None:
        if server:
            host, port = parse_server(server)
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [host]
            self.resolver.port = port
            self.where = f"{host}:{port}"
        else:
            self.resolver = dns.resolver.Resolver()
            self.where = "the system resolver"
        self.resolver.lifetime = timeout
        self.resolver.timeout = timeout / 2

    def _answer(self, name: str, kind: str) -> list[object]:
        try:
            return list(self.resolver.resolve(name, kind, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.resolver.NoNameservers as exc:
            raise DnsUnavailable(f"no DNS server answered for {name} {kind}") from exc
        except dns.exception.Timeout as exc:
            raise DnsUnavailable(f"{self.where} did not answer for {name} {kind}") from exc
        except dns.exception.DNSException as exc:
            raise DnsUnavailable(f"{name} {kind}: {exc}") from exc

    def txt(self, name: str) -> list[str]:
        """Each TXT record as one string (its character-strings joined)."""
        found = []
        for rdata in self._answer(name, "TXT"):
            strings = rdata.strings  # type: ignore[attr-defined]
            found.append(b"".join(strings).decode("utf-8", "replace"))
        return found

    def cname(self, name: str) -> str:
        """The target of a CNAME at ``name`` (no trailing dot), or ''."""
        for rdata in self._answer(name, "CNAME"):
            return str(rdata.target).rstrip(".").lower()  # type: ignore[attr-defined]
        return ""

    def mx(self, name: str) -> list[tuple[int, str]]:
        """``(preference, host)`` pairs, best first; host '' is a null MX (RFC 7505)."""
        found = [
            (int(r.preference), str(r.exchange).rstrip(".").lower())  # type: ignore[attr-defined]
            for r in self._answer(name, "MX")
        ]
        return sorted(found)

    def addresses(self, name: str) -> list[str]:
        return [str(r) for kind in ("A", "AAAA") for r in self._answer(name, kind)]
