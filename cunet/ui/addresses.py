"""This machine's network addresses, for `cunet ui --host 0.0.0.0` (or `::`): listening on every network,
the server answers to its own addresses (`local_addresses`) and prints one that other machines can reach
(`shown_host`: the address this machine sends from, found by connecting a UDP socket without sending).

No dependency (psutil) is needed: the addresses come from the host name (DNS or /etc/hosts), the
interfaces (IPv4 by `ioctl(SIOCGIFADDR)` on each of `socket.if_nameindex`, IPv6 from /proc/net/if_inet6:
Linux) and the outbound addresses; each source is best effort.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

__all__ = ["LOOPBACK_NAMES", "WILDCARDS", "local_addresses", "outbound_address", "shown_host"]

WILDCARDS = ("0.0.0.0", "::")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
_SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address
# documentation addresses (RFC 5737, 3849): connecting a UDP socket picks the route, nothing is sent
_PROBES = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}


def outbound_address(family: socket.AddressFamily) -> str | None:
    """The address of `family` this machine sends from towards other networks; None without a route."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((_PROBES[family], 9))
            address = str(probe.getsockname()[0])
    except (OSError, KeyError):
        return None
    return None if ipaddress.ip_address(address.split("%")[0]).is_unspecified else address


def local_addresses() -> set[str]:
    """This machine's IP addresses (loopback included), as text without IPv6 zone (`%eth0`)."""
    found = set(LOOPBACK_NAMES) - {"localhost"}
    for name in {socket.gethostname(), socket.getfqdn()}:
        try:
            found |= {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
        except (OSError, UnicodeError):
            pass
    if sys.platform.startswith("linux"):
        found |= _linux_ipv4() | _linux_ipv6()
    found |= {a for a in map(outbound_address, _PROBES) if a}
    result = set()
    for address in found:
        try:
            result.add(str(ipaddress.ip_address(address.split("%")[0])))
        except ValueError:
            pass
    return result


def shown_host(host: str) -> str:
    """The host to print in the page's address for `--host host`: itself, but for a wildcard an address of
    this machine that other machines can reach (the outbound one, else another non-loopback, non-link-local
    address; 127.0.0.1 or ::1 if there is none)."""
    if host not in WILDCARDS:
        return host
    families = [socket.AF_INET] if host == "0.0.0.0" else [socket.AF_INET6, socket.AF_INET]
    for family in families:
        address = outbound_address(family)
        if address and _reachable(address):
            return address
    others = sorted(
        (a for a in local_addresses() if _reachable(a)), key=lambda a: (":" in a, a)
    )  # IPv4 first: easier to type
    if host == "0.0.0.0":
        others = [a for a in others if ":" not in a]
    return others[0] if others else ("127.0.0.1" if host == "0.0.0.0" else "::1")


def _reachable(address: str) -> bool:
    """Whether another machine could use `address` in a URL (not loopback, link-local or unspecified)."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified)


def _linux_ipv4() -> set[str]:
    found = set()
    try:
        import fcntl

        names = [name for _, name in socket.if_nameindex()]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for name in names:
                try:
                    request = struct.pack("256s", name.encode()[:15])
                    answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
                except OSError:  # no IPv4 address on this interface
                    continue
                found.add(socket.inet_ntoa(answer[20:24]))
    except (OSError, ImportError):
        pass
    return found


def _linux_ipv6() -> set[str]:
    found = set()
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            for line in f:
                fields = line.split()
                if fields and len(fields[0]) == 32:
                    found.add(str(ipaddress.IPv6Address(int(fields[0], 16))))
    except (OSError, ValueError):
        pass
    return found
