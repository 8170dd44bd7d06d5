"""Where the browser may go: schemes, domains and addresses, decided before any connection.

The browser session asks :meth:`NavigationPolicy.check` for the model's own
navigations and, through its proxy (:mod:`tools.browser.proxy`), for every
request and connection Chromium makes, each redirect hop included. A refusal
is a reason in words, which is what the model is told.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Resolver = Callable[[str], list[str]]
#: How long a name's addresses are kept. Each connection goes to the addresses of the very check that allowed
#: it, so this is not what stops DNS rebinding; it only spares lookups, and lets a site that moves be followed.
RESOLVE_TTL_S = 60.0

NETWORK_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
ALWAYS_ALLOWED = ("about:blank",)
#: Schemes that never touch the network; fine inside a page, refused as a top-level navigation.
INLINE_SCHEMES = ("data", "blob")


def system_resolver(host: str) -> list[str]:
    """The addresses the system resolver gives for a host name."""
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})
    except socket.gaierror:
        return []


def _host_matches(host: str, domains: Sequence[str]) -> bool:
    return any(host == d or host.endswith("." + d) for d in (d.lower().strip(".") for d in domains))


#: Names Chromium answers itself with loopback, whatever DNS says (RFC 6761): they never reach the resolver.
LOOPBACK_ADDRESSES = ["127.0.0.1", "::1"]


def _is_loopback_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def _allowance(entry: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]:
    """An ``allow_addresses`` entry: an address or network, optionally with one port (``127.0.0.1:8000``, ``[::1]:8000``)."""
    text = entry.strip()
    port: int | None = None
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
        text = address
    elif text.count(":") == 1:
        text, port_text = text.split(":")
        port = int(port_text)
    return ipaddress.ip_network(text, strict=False), port


def split_allow_list(entries: Sequence[str]) -> tuple[list[str], list[str]]:
    """One allow list as people write it (``--allow``), split into (addresses, domains)."""
    addresses, domains = [], []
    for entry in entries:
        try:
            _allowance(entry)
            addresses.append(entry)
        except ValueError:
            domains.append(entry)
    return addresses, domains


@dataclass
class NavigationPolicy:
    """Allow and deny lists for domains, allowed schemes, and whether private addresses may be reached.

    ``allow_domains`` empty means any domain (less those denied). Private,
    loopback, link-local and other non-public addresses are refused unless
    ``allow_private`` is set or the address is within ``allow_addresses``
    (for example ``["127.0.0.1"]`` for a local test site, or
    ``["127.0.0.1:8000"]`` for that one port only). Host names are resolved
    to check the addresses they lead to, and the browser's connections go
    only to the addresses checked (see :mod:`tools.browser.proxy`).
    """

    allow_domains: Sequence[str] = ()
    deny_domains: Sequence[str] = ()
    allow_schemes: Sequence[str] = NETWORK_SCHEMES
    allow_private: bool = False
    allow_addresses: Sequence[str] = ()
    resolver: Resolver = field(default=system_resolver, repr=False)

    def __post_init__(self) -> None:
        try:
            self._allowed = [_allowance(entry) for entry in self.allow_addresses]
        except ValueError as exc:
            raise ValueError(f"allow_addresses: {exc} (write an address, a network or ADDRESS:PORT)") from None
        self._cache: dict[str, tuple[float, list[str]]] = {}

    def check(self, url: str, *, top_level: bool = True) -> str | None:
        """None when ``url`` may be loaded; otherwise why not."""
        return self.vet(url, top_level=top_level)[0]

    def vet(self, url: str, *, top_level: bool = True) -> tuple[str | None, list[str]]:
        """Why ``url`` is refused (None when it is not), and the addresses a connection to it may use.

        The addresses are the ones checked, so a connection made to them cannot
        be redirected by a later, different answer from DNS. An empty list with
        no reason means the name is not pinned (private addresses are allowed,
        or the name is allowed without resolving), and the connection resolves it.
        """
        if url in ALWAYS_ALLOWED:
            return None, []
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower().rstrip(".")  # `localhost.` is `localhost`
            port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
        except ValueError as exc:
            return f"malformed URL ({exc})", []
        scheme = parts.scheme.lower()
        if scheme in INLINE_SCHEMES:
            if top_level and scheme not in self.allow_schemes:
                return f"{scheme}: URLs are not opened as pages", []
            return None, []
        if scheme not in self.allow_schemes:
            return f"the {scheme or 'missing'} scheme is not allowed (allowed: {', '.join(self.allow_schemes)})", []
        if not host:
            return "the URL has no host", []
        if _host_matches(host, self.deny_domains):
            return f"{host} is on the deny list", []
        if self.allow_domains and not _host_matches(host, self.allow_domains):
            return f"{host} is not on the allow list", []
        return self._check_addresses(host, port)

    def _remembered(self, host: str) -> list[str] | None:
        """The addresses ``host`` resolved to within the last :data:`RESOLVE_TTL_S` seconds, if any."""
        cached = self._cache.get(host)
        return cached[1] if cached is not None and time.monotonic() - cached[0] < RESOLVE_TTL_S else None

    def _lookup(self, host: str) -> list[str]:
        addresses = self._remembered(host)
        if addresses is None:
            addresses = self.resolver(host)
            self._cache[host] = (time.monotonic(), addresses)
        return addresses

    def resolves_without_lookup(self, url: str) -> bool:
        """Whether :meth:`vet` can answer ``url`` at once (no DNS lookup that would block an event loop)."""
        try:
            host = (urlsplit(url).hostname or "").lower().rstrip(".")
        except ValueError:
            return True  # malformed: refused without a lookup
        if self.allow_private or not host or _is_loopback_name(host) or self._remembered(host) is not None:
            return True
        try:
            ipaddress.ip_address(host.strip("[]"))
            return True
        except ValueError:
            return False

    async def vet_async(self, url: str, *, top_level: bool = True) -> tuple[str | None, list[str]]:
        """:meth:`vet` for an event loop: a name to look up is looked up on a worker thread."""
        if self.resolves_without_lookup(url):
            return self.vet(url, top_level=top_level)
        return await asyncio.to_thread(self.vet, url, top_level=top_level)

    async def check_async(self, url: str, *, top_level: bool = True) -> str | None:
        """:meth:`check` for an event loop (see :meth:`vet_async`)."""
        return (await self.vet_async(url, top_level=top_level))[0]

    def _check_addresses(self, host: str, port: int | None) -> tuple[str | None, list[str]]:
        if self.allow_private:
            return None, []
        try:
            addresses = [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            if _is_loopback_name(host):
                addresses = LOOPBACK_ADDRESSES
            else:
                addresses = self._lookup(host)
            if not addresses:
                # What we cannot resolve, Chromium might (its own rules, another resolver): refuse unless allowed by name.
                if self.allow_domains and _host_matches(host, self.allow_domains):
                    return None, []
                return f"{host} does not resolve, so where it leads cannot be checked", []
        for text in addresses:
            address = ipaddress.ip_address(text)
            if any(address in network and allowed_port in (None, port) for network, allowed_port in self._allowed):
                continue
            if not address.is_global or address.is_multicast:
                kind = "loopback" if address.is_loopback else "private or reserved"
                return f"{host} leads to a {kind} address ({address}), which is not allowed", []
        return None, list(addresses)
