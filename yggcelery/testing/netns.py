"""Machines in network namespaces on one switch, and the faults of a real network (ip, nft, tc).

A :class:`Network` is a bridge in a namespace of its own (the switch) and one namespace per
machine, joined to the bridge by a veth pair: ``eth0`` inside the machine, a port named after
the machine on the switch. Addresses come from 198.18.0.0/15 (RFC 2544, reserved for network
tests) and exist only inside these namespaces; no namespace has a default route, so nothing
leaves them. Faults are applied where the network would fail, so neither end is told:

- :meth:`Network.link_down`: the machine's switch port goes down; its ``eth0`` loses carrier
  (a pulled cable) and every packet to or from it is lost;
- :meth:`Network.partition`: the switch drops every IP packet between two machines, both ways
  (nft, bridge family): a half-open connection, no RST, no FIN;
- :meth:`Network.squeeze`: the switch limits the traffic between two machines to a rate
  (htb with a u32 filter on each of the two ports; this kernel has no ``prio`` or ``netem``);
- :meth:`Network.block_local`: inside one machine, its own connections to one of its ports are
  dropped on input (a server that its own host cannot reach, while others can).

A firewall rule on the *sending* machine would not do for the first three: a packet dropped in
the sender's OUTPUT hook fails ``connect()`` with EPERM at once, which no real cable does.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from yggcelery.testing.waiting import WaitTimeout, wait_until

log = logging.getLogger(__name__)

#: Namespaces of every bed are ``ygg-<run>-<machine>``; ``<run>`` is 6 hex digits.
PREFIX = "ygg-"
NAME_RE = re.compile(r"^ygg-(?P<run>[0-9a-f]{6})-(?P<machine>[a-z][a-z0-9]*)$")
SWITCH = "net"
BRIDGE = "br0"
PREFIX_LEN = 24
_TOOLS = ("ip", "nft", "tc")


#: Python run inside a namespace (``-I -S``: stdlib only, starts in milliseconds).
_CONNECT = """import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
"""
_GET = """import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as response:
    sys.stdout.write(response.read().decode())
"""


class NetnsError(RuntimeError):
    """Raised when an ``ip``/``nft``/``tc`` command fails; the message holds it and its stderr."""


def missing_requirements() -> str | None:
    """Why network namespaces cannot be made here (not root, a tool missing), or None."""
    if os.geteuid() != 0:
        return f"network namespaces need root (running as uid {os.geteuid()})"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (Debian: apt-get install iproute2 nftables)"
    try:
        run(["ip", "netns", "list"])
    except NetnsError as exc:
        return f"`ip netns` does not work here: {exc}"
    return None


def run(argv: Sequence[str], *, stdin: str | None = None, timeout_s: float = 15.0) -> str:
    """Run one command and return its stdout; :class:`NetnsError` naming it if it fails."""
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise NetnsError(f"{shlex.join(argv)}: no answer after {timeout_s:g}s") from None
    if done.returncode != 0:
        raise NetnsError(f"{shlex.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Namespace:
    """One named network namespace (``/run/netns/<name>``)."""

    name: str

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` as run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, *command: str, stdin: str | None = None, timeout_s: float = 15.0) -> str:
        return run(self.argv(command), stdin=stdin, timeout_s=timeout_s)

    def ip(self, *args: str) -> str:
        return run(["ip", "-n", self.name, *args])

    def create(self) -> None:
        run(["ip", "netns", "add", self.name])
        self.ip("link", "set", "lo", "up")

    def accepts(self, address: str, port: int) -> bool:
        """Whether something accepts TCP connections on ``address:port``, asked from inside."""
        argv = self.argv([sys.executable, "-I", "-S", "-c", _CONNECT, address, str(port)])
        return subprocess.run(argv, check=False, timeout=15).returncode == 0

    def get_json(self, url: str, *, timeout_s: float = 5.0) -> Any:
        """GET ``url`` from inside the namespace and decode its JSON body."""
        out = self.run(sys.executable, "-I", "-S", "-c", _GET, url, str(timeout_s),
                       timeout_s=timeout_s + 10)  # fmt: skip
        return json.loads(out)

    def pids(self) -> list[int]:
        """Processes whose network namespace this is."""
        try:
            return [int(pid) for pid in run(["ip", "netns", "pids", self.name]).split()]
        except NetnsError:
            return []  # already gone

    def delete(self, *, timeout_s: float = 10.0) -> None:
        """SIGKILL every process still inside, then remove the namespace (its links go too)."""
        try:
            wait_until(self._killed_all, timeout_s=timeout_s, what=f"{self.name} emptied")
        except WaitTimeout as exc:
            raise NetnsError(f"namespace {self.name}: processes {self.pids()} survive") from exc
        if self.name in namespaces():
            run(["ip", "netns", "delete", self.name])

    def _killed_all(self) -> bool:
        """SIGKILL what is inside; True once nothing was."""
        pids = self.pids()
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return not pids


def namespaces() -> list[str]:
    """Names of every network namespace ``ip netns`` knows."""
    return [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()]


class Network:
    """A switch namespace and one namespace per machine, each on one port of the switch."""

    def __init__(self, run_id: str, addresses: Mapping[str, str]) -> None:
        self.run_id = run_id
        self.addresses = dict(addresses)
        self.switch = Namespace(f"{PREFIX}{run_id}-{SWITCH}")
        self.machines = {m: Namespace(f"{PREFIX}{run_id}-{m}") for m in self.addresses}

    def __repr__(self) -> str:
        return f"<Network {self.run_id} machines={','.join(self.machines)}>"

    def namespace(self, machine: str) -> Namespace:
        try:
            return self.machines[machine]
        except KeyError:
            known = ", ".join(self.machines)
            raise NetnsError(f"no machine {machine!r} in network {self.run_id} ({known})") from None

    @property
    def all_namespaces(self) -> list[Namespace]:
        return [self.switch, *self.machines.values()]

    def create(self) -> Network:
        """Make the switch, then each machine with its address; removes what it made on failure."""
        try:
            self.switch.create()
            self.switch.ip("link", "add", "name", BRIDGE, "type", "bridge")
            self.switch.ip("link", "set", BRIDGE, "up")
            for machine in self.machines:
                self._attach(machine)
        except BaseException:
            self.destroy()
            raise
        return self

    def _attach(self, machine: str) -> None:
        ns = self.machines[machine]
        ns.create()
        self.switch.ip(
            "link", "add", "name", machine, "type", "veth", "peer", "name", "eth0", "netns", ns.name
        )
        self.switch.ip("link", "set", machine, "master", BRIDGE, "up")
        ns.ip("addr", "add", f"{self.addresses[machine]}/{PREFIX_LEN}", "dev", "eth0")
        ns.ip("link", "set", "eth0", "up")

    def destroy(self) -> None:
        """Remove every namespace of this network (and so every link); raises at the end if
        one could not be removed, after trying all of them."""
        errors = []
        for ns in self.all_namespaces:
            try:
                ns.delete()
            except NetnsError as exc:
                errors.append(str(exc))
        if errors:
            raise NetnsError("; ".join(errors))

    def leftovers(self) -> list[str]:
        """Namespaces of this network that still exist (empty after :meth:`destroy`)."""
        mine = {ns.name for ns in self.all_namespaces}
        return sorted(mine & set(namespaces()))

    # --- faults ---------------------------------------------------------------------------

    @contextmanager
    def link_down(self, machine: str) -> Iterator[None]:
        """The machine's switch port is down within the block (its eth0 has no carrier)."""
        self.namespace(machine)
        self.switch.ip("link", "set", machine, "down")
        log.warning("netbed: link of %s down", machine)
        try:
            yield
        finally:
            self.switch.ip("link", "set", machine, "up")
            log.warning("netbed: link of %s up", machine)

    @contextmanager
    def partition(self, a: str, b: str) -> Iterator[None]:
        """The switch silently drops every IP packet between ``a`` and ``b`` within the block."""
        table = f"ygg_drop_{a}_{b}"
        ip_a, ip_b = self.addresses[a], self.addresses[b]
        self._nft(
            self.switch,
            f"table bridge {table} {{\n chain forward {{\n"
            "  type filter hook forward priority 0; policy accept;\n"
            f"  ip saddr {ip_a} ip daddr {ip_b} drop\n  ip saddr {ip_b} ip daddr {ip_a} drop\n"
            " }\n}\n",
        )
        log.warning("netbed: %s and %s partitioned (silent drop)", a, b)
        try:
            yield
        finally:
            self.switch.run("nft", "delete", "table", "bridge", table)
            log.warning("netbed: %s and %s joined again", a, b)

    @contextmanager
    def block_local(self, machine: str, port: int) -> Iterator[None]:
        """Within the block, ``machine``'s own connections to its address and ``port`` are
        dropped on input (SYNs vanish: its connects time out); other machines still get in."""
        ns, table = self.namespace(machine), f"ygg_block_{port}"
        self._nft(
            ns,
            f"table inet {table} {{\n chain input {{\n"
            "  type filter hook input priority 0; policy accept;\n"
            f'  iifname "lo" ip daddr {self.addresses[machine]} tcp dport {port} drop\n'
            " }\n}\n",
        )
        log.warning("netbed: %s cannot reach its own port %d", machine, port)
        try:
            yield
        finally:
            ns.run("nft", "delete", "table", "inet", table)
            log.warning("netbed: %s reaches its own port %d again", machine, port)

    @contextmanager
    def squeeze(self, a: str, b: str, *, rate: str) -> Iterator[None]:
        """Within the block, traffic between ``a`` and ``b`` flows at ``rate`` (``"1mbit"``)
        each way; their traffic with other machines is not limited."""
        pairs = ((b, a), (a, b))  # (port towards X, from Y): shape what Y sends to X
        for towards, source in pairs:
            self._shape(towards, self.addresses[source], rate)
        log.warning("netbed: %s <-> %s limited to %s", a, b, rate)
        try:
            yield
        finally:
            for towards, _ in pairs:
                self.switch.run("tc", "qdisc", "del", "dev", towards, "root")
            log.warning("netbed: %s <-> %s unlimited again", a, b)

    def _shape(self, port: str, source: str, rate: str) -> None:
        tc = ["tc", "-n", self.switch.name]
        run([*tc, "qdisc", "add", "dev", port, "root", "handle", "1:", "htb", "default", "1"])
        run([*tc, "class", "add", "dev", port, "parent", "1:", "classid", "1:1",
             "htb", "rate", "10gbit"])  # fmt: skip
        run([*tc, "class", "add", "dev", port, "parent", "1:", "classid", "1:2",
             "htb", "rate", rate, "ceil", rate])  # fmt: skip
        run([*tc, "filter", "add", "dev", port, "parent", "1:", "protocol", "ip", "prio", "1",
             "u32", "match", "ip", "src", f"{source}/32", "flowid", "1:2"])  # fmt: skip

    def _nft(self, ns: Namespace, ruleset: str) -> None:
        ns.run("nft", "-f", "-", stdin=ruleset)
