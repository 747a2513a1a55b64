"""A userspace WAN link between network namespaces, for scripts/bench_wan.sh when the kernel has no netem.

Each namespace NS_k has a TUN device (`wan0`, address 10.99.k.1/16; k = 0 for the coordinator, 1..n for the
parties) that scripts/bench_wan.sh created. This process attaches to all of them and forwards every IPv4
packet to the namespace its destination address names, as `tc netem delay D loss L rate R` on both ends of
a veth pair would: each direction of each party-coordinator link serialises packets at RATE (a queue of at
most QUEUE_S seconds, tail drop beyond), drops each packet with probability LOSS, and delivers it DELAY
after it left the queue. Runs until SIGTERM.

Usage (root): python scripts/wan_link.py --delay-ms 25 --loss 0.01 --rate-mbit 50 NS_0 NS_1 ... NS_n
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import fcntl
import os
import random
import signal
import struct

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
CLONE_NEWNET = 0x40000000
QUEUE_S = 0.25  # about netem's default limit of 1000 packets at 50 Mbit/s


def attach(namespace: str, device: str = "wan0") -> int:
    """A file descriptor of the persistent TUN `device` inside `namespace` (entered for the ioctl only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace}")
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", device.encode(), IFF_TUN | IFF_NO_PI))
    finally:
        if libc.setns(own, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
        os.close(target)
        os.close(own)
    return fd


class Link:
    """Forwards packets between the TUN devices with delay, loss and a rate per direction."""

    def __init__(self, fds: list[int], delay_s: float, loss: float, rate_bps: float, seed: int) -> None:
        self.fds, self.delay_s, self.loss, self.rate_bps = fds, delay_s, loss, rate_bps
        self.busy_until: dict[tuple[int, int], float] = {}
        self.random = random.Random(seed)
        self.loop = asyncio.get_running_loop()
        self.counts = {"forwarded": 0, "lost": 0, "queue_drops": 0}

    def start(self) -> None:
        for source, fd in enumerate(self.fds):
            self.loop.add_reader(fd, self.receive, source)

    def receive(self, source: int) -> None:
        while True:
            try:
                packet = os.read(self.fds[source], 65536)
            except BlockingIOError:
                return
            if len(packet) >= 20 and packet[0] >> 4 == 4 and packet[16:18] == b"\x0a\x63":
                self.forward(source, packet[18], packet)

    def forward(self, source: int, target: int, packet: bytes) -> None:
        if target >= len(self.fds) or target == source:
            return
        if self.random.random() < self.loss:
            self.counts["lost"] += 1
            return
        now = self.loop.time()
        start = max(now, self.busy_until.get((source, target), now))
        if start - now > QUEUE_S:
            self.counts["queue_drops"] += 1
            return
        leaves = start + len(packet) * 8 / self.rate_bps
        self.busy_until[(source, target)] = leaves
        self.loop.call_at(leaves + self.delay_s, self.deliver, target, packet)

    def deliver(self, target: int, packet: bytes) -> None:
        try:
            os.write(self.fds[target], packet)
            self.counts["forwarded"] += 1
        except BlockingIOError:
            self.counts["queue_drops"] += 1


async def run(args: argparse.Namespace) -> None:
    fds = [attach(namespace) for namespace in args.namespaces]
    link = Link(fds, args.delay_ms / 1000, args.loss, args.rate_mbit * 1e6, args.seed)
    link.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"wan_link: {len(fds)} namespaces linked", flush=True)
    await stop.wait()
    print(f"wan_link: {link.counts}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=25.0, help="one way (RTT = 2x)")
    parser.add_argument("--loss", type=float, default=0.01, help="per packet and direction")
    parser.add_argument("--rate-mbit", type=float, default=50.0, help="per direction of each link")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("namespaces", nargs="+", help="coordinator's namespace first, then the parties'")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
