"""Where the browser may go: schemes, domains and addresses, decided before any connection.

The browser session asks :meth:`NavigationPolicy.check` for the model's own
navigations and, through Chromium's request interception, for every request a
page makes, each redirect hop included. A refusal is a reason in words, which
is what the model is told.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Resolver = Callable[[str], list[str]]

NETWORK_SCHEMES = ("http", "https")
ALWAYS_ALLOWED = ("about:blank",)
#: Schemes that never touch the network; fine inside a page, refused as a top-level navigation.
INLINE_SCHEMES = ("data", "blob")


def system_resolver(host: str) -> list[str]:
    """The addresses the system resolver gives for a host name."""
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None)})
    except socket.gaierror:
        return []


def _host_matches(host: str, domains: Sequence[str]) -> bool:
    return any(host == d or host.endswith("." + d) for d in (d.lower().strip(".") for d in domains))


#: Names Chromium answers itself with loopback, whatever DNS says (RFC 6761): they never reach the resolver.
LOOPBACK_ADDRESSES = ["127.0.0.1", "::1"]


def _is_loopback_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


@dataclass
class NavigationPolicy:
    """Allow and deny lists for domains, allowed schemes, and whether private addresses may be reached.

    ``allow_domains`` empty means any domain (less those denied). Private,
    loopback, link-local and other non-public addresses are refused unless
    ``allow_private`` is set or the address is within ``allow_addresses``
    (for example ``["127.0.0.1"]`` for a local test site). Host names are
    resolved to check the addresses they lead to.
    """

    allow_domains: Sequence[str] = ()
    deny_domains: Sequence[str] = ()
    allow_schemes: Sequence[str] = NETWORK_SCHEMES
    allow_private: bool = False
    allow_addresses: Sequence[str] = ()
    resolver: Resolver = field(default=system_resolver, repr=False)

    def __post_init__(self) -> None:
        self._networks = [ipaddress.ip_network(a, strict=False) for a in self.allow_addresses]
        self._cache: dict[str, list[str]] = {}

    def check(self, url: str, *, top_level: bool = True) -> str | None:
        """None when ``url`` may be loaded; otherwise why not."""
        if url in ALWAYS_ALLOWED:
            return None
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower().rstrip(".")  # `localhost.` is `localhost`
        except ValueError as exc:
            return f"malformed URL ({exc})"
        scheme = parts.scheme.lower()
        if scheme in INLINE_SCHEMES:
            if top_level and scheme not in self.allow_schemes:
                return f"{scheme}: URLs are not opened as pages"
            return None
        if scheme not in self.allow_schemes:
            return f"the {scheme or 'missing'} scheme is not allowed (allowed: {', '.join(self.allow_schemes)})"
        if not host:
            return "the URL has no host"
        if _host_matches(host, self.deny_domains):
            return f"{host} is on the deny list"
        if self.allow_domains and not _host_matches(host, self.allow_domains):
            return f"{host} is not on the allow list"
        return self._check_addresses(host)

    def _check_addresses(self, host: str) -> str | None:
        if self.allow_private:
            return None
        try:
            addresses = [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            if _is_loopback_name(host):
                addresses = LOOPBACK_ADDRESSES
            else:
                if host not in self._cache:
                    self._cache[host] = self.resolver(host)
                addresses = self._cache[host]
            if not addresses:
                # What we cannot resolve, Chromium might (its own rules, another resolver): refuse unless allowed by name.
                if self.allow_domains and _host_matches(host, self.allow_domains):
                    return None
                return f"{host} does not resolve, so where it leads cannot be checked"
        for text in addresses:
            address = ipaddress.ip_address(text)
            if any(address in network for network in self._networks):
                continue
            if not address.is_global or address.is_multicast:
                kind = "loopback" if address.is_loopback else "private or reserved"
                return f"{host} leads to a {kind} address ({address}), which is not allowed"
        return None
