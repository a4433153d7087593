"""Where a webhook may go: https, public addresses only, resolved once and connected to as checked.

A callback URL is a request the server makes on a client's behalf, so it must
not reach what only the server can reach (loopback, the cloud metadata
address, the private network). The host is resolved once; every address it
resolves to is checked, including IPv4 addresses hidden inside IPv6 ones
(mapped, compatible, 6to4, Teredo, NAT64); the request then goes to the
checked address itself, with the name kept for ``Host`` and TLS, so a DNS
answer that changes between check and connect (rebinding) cannot redirect it.
Operators open it up on purpose: ``OCRQ_WEBHOOK_ALLOW_HOSTS`` (names or
networks) and ``OCRQ_WEBHOOK_ALLOW_PRIVATE``.
"""

from __future__ import annotations

import base64
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import httpx

from ocrq.errors import CallbackNotAllowed
from ocrq.settings import Settings

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
Resolver = Callable[[str, int], list[IPAddress]]
"""``(host, port) -> addresses``; injectable, so tests need neither DNS nor /etc/hosts."""

PRIVATE_NETWORKS = tuple(
    ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
"""What ``OCRQ_WEBHOOK_ALLOW_PRIVATE`` opens: intranets. Loopback and link-local stay closed."""
NAT64_NETWORKS = (ip_network("64:ff9b::/96"), ip_network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ip_network("::/96")
NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0[xX][0-9a-fA-F]*)$")
DEFAULT_PORTS = {"http": 80, "https": 443}


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for ``host``, in its order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    return list(dict.fromkeys(addresses))


@dataclass(frozen=True, slots=True)
class CallbackTarget:
    """A checked callback: the URL as given and the address to connect to."""

    url: httpx.URL
    address: IPAddress

    def request_url(self) -> httpx.URL:
        return self.url.copy_with(host=str(self.address), username=None, password=None)

    def headers(self) -> dict[str, str]:
        """``Host`` names the receiver as the client wrote it (basic auth from the URL, if any)."""
        default = DEFAULT_PORTS.get(self.url.scheme)
        host = self.url.host if ":" not in self.url.host else f"[{self.url.host}]"
        headers = {"Host": host if self.url.port in (None, default) else f"{host}:{self.url.port}"}
        if self.url.username:
            userinfo = f"{self.url.username}:{self.url.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(userinfo).decode()
        return headers

    def extensions(self) -> dict[str, str]:
        """TLS checks the certificate against the name, not the address we connect to."""
        return {"sni_hostname": self.url.host} if self.url.scheme == "https" else {}


@dataclass(frozen=True)
class WebhookPolicy:
    allow_http: bool = False
    allow_private: bool = False
    allow_names: tuple[str, ...] = ()
    allow_networks: tuple[Network, ...] = ()
    resolver: Resolver = system_resolver

    @classmethod
    def from_settings(cls, settings: Settings, resolver: Resolver | None = None) -> WebhookPolicy:
        names, networks = _split_allow_list(settings.webhook_allow_hosts)
        return cls(
            settings.webhook_allow_http,
            settings.webhook_allow_private,
            names,
            networks,
            resolver or system_resolver,
        )

    def check(self, raw_url: str) -> CallbackTarget:
        """The target to connect to; :class:`CallbackNotAllowed` says why not."""
        url = self._parsed(raw_url)
        host = url.host.rstrip(".")
        port = url.port or DEFAULT_PORTS[url.scheme]
        addresses = self._addresses(host, port)
        if not self._name_allowed(host):
            for address in addresses:
                self._check_address(host, address)
        return CallbackTarget(url, addresses[0])

    def _parsed(self, raw_url: str) -> httpx.URL:
        try:
            url = httpx.URL(raw_url)
        except (httpx.InvalidURL, TypeError, ValueError) as error:
            raise CallbackNotAllowed(f"the callback URL is not valid: {error}") from error
        schemes = ("https", "http") if self.allow_http else ("https",)
        if url.scheme not in schemes:
            hint = "" if self.allow_http else " (plain http needs OCRQ_WEBHOOK_ALLOW_HTTP=true)"
            raise CallbackNotAllowed(f"callback URLs must use {' or '.join(schemes)}{hint}")
        if not url.host:
            raise CallbackNotAllowed("the callback URL has no host")
        return url

    def _addresses(self, host: str, port: int) -> list[IPAddress]:
        literal = _literal_address(host)
        if literal is not None:
            return [literal]
        try:
            addresses = self.resolver(host, port)
        except (OSError, UnicodeError) as error:
            raise CallbackNotAllowed(f"the callback host {host!r} does not resolve") from error
        if not addresses:
            raise CallbackNotAllowed(f"the callback host {host!r} does not resolve")
        return addresses

    def _name_allowed(self, host: str) -> bool:
        host = host.lower()
        return any(host == n or (n.startswith("*.") and host.endswith(n[1:])) for n in self.allow_names)

    def _check_address(self, host: str, address: IPAddress) -> None:
        """The refusal names the kind of address, never the address a name resolved to (internal DNS)."""
        if any(address in network for network in self.allow_networks if network.version == address.version):
            return
        reason = blocked_reason(address, self.allow_private)
        if reason is not None:
            literal = _literal_address(host) is not None
            opener = "OCRQ_WEBHOOK_ALLOW_PRIVATE" if "private" in reason else "OCRQ_WEBHOOK_ALLOW_HOSTS"
            raise CallbackNotAllowed(
                f"callbacks may not go to {host}: {'it is' if literal else 'it resolves to'} {reason} "
                f"(an operator may allow it with {opener})"
            )


def _literal_address(host: str) -> IPAddress | None:
    """An IP literal, or None for a name; numbers in any other form are refused.

    ``2130706433``, ``0177.0.0.1`` or ``127.1`` mean 127.0.0.1 to some parsers
    and a name to others: such ambiguity is what an attacker probes for.
    """
    try:
        return ip_address(host)
    except ValueError:
        pass
    if NUMERIC_LABEL.match(host.rstrip(".").rsplit(".", 1)[-1]):  # the URL standard's "ends in a number"
        raise CallbackNotAllowed(f"write the callback address {host!r} as a dotted quad or a host name")
    return None


def blocked_reason(address: IPAddress, allow_private: bool = False) -> str | None:
    """Why ocrq must not call this address (None: it is public), looking inside IPv6 forms."""
    if isinstance(address, IPv6Address):
        for inner in embedded_ipv4(address):
            if (reason := blocked_reason(inner, allow_private)) is not None:
                return f"{reason} inside an IPv6 address"
        if _is_ipv4_notation(address):  # ::ffff:a.b.c.d and ::a.b.c.d are the IPv4 address itself
            return None
    if allow_private and any(address in n for n in PRIVATE_NETWORKS if n.version == address.version):
        return None
    if address.is_multicast:
        return "a multicast address"
    if not address.is_global:
        return _kind(address)
    return None


def _kind(address: IPAddress) -> str:
    for test, name in (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address (cloud metadata lives there)"),
        (address.is_unspecified, "the unspecified address"),
        (any(address in n for n in PRIVATE_NETWORKS if n.version == address.version), "a private address"),
    ):
        if test:
            return name
    return "not a public address"


def _is_ipv4_notation(address: IPv6Address) -> bool:
    return address.ipv4_mapped is not None or (address in IPV4_COMPATIBLE and int(address) > 1)


def embedded_ipv4(address: IPv6Address) -> list[IPv4Address]:
    """IPv4 addresses an IPv6 address stands for: mapped, compatible, 6to4, Teredo, NAT64."""
    found: list[IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if any(address in n for n in NAT64_NETWORKS) or (address in IPV4_COMPATIBLE and int(address) > 1):
        found.append(IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _split_allow_list(entries: Sequence[str]) -> tuple[tuple[str, ...], tuple[Network, ...]]:
    names: list[str] = []
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            names.append(entry.lower().rstrip("."))
    return tuple(names), tuple(networks)
