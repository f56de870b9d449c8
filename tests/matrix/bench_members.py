#!/usr/bin/env python3
"""Membership sync throughput, a figure and not a test: starts a real Synapse and a real weft
with the test harness, gives a weft room N members, and measures in one run:

  (s) Synapse's own rate for one application service: N users of the application service's
      namespace, each registered, given a device (MSC4190), named and joined straight to a
      bridged room's Matrix room, with as many requests in flight as weft's sync keeps (8) —
      the same four requests per person that a sync sends for a weft member who has no
      puppet yet.
  (w) `weft matrix sync-members` of another bridged room with N weft members and nobody's
      puppet in it yet: members per second, from the command's start to its end.
  (l) the latency of live messages (weft API post → a Matrix user's long-poll `/sync`), one
      every 100 ms: while nothing else runs (idle), and into the room being joined during
      (s) and during (w), so that both phases carry the same live traffic.

Run with the rig's virtualenv python (made by `python3 tests/matrix/rig.py`):

    WEFT_BIN=target/release/weft target/matrix-venv/bin/python tests/matrix/bench_members.py \\
        [--members 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_latency import PASSWORD, Receiver, pct, pick_binary  # noqa: E402
from harness import MatrixUser, Stack  # noqa: E402

IN_FLIGHT = 8


async def live_latency(session: aiohttp.ClientSession, url: str, room_id: str,
                       receiver: Receiver, tag: str, until) -> list[float]:
    """Posts on weft every 100 ms until `until()` is true; answers each post's latency to
    Matrix in ms."""
    out: list[float] = []
    i = 0
    while not until():
        text = f"live {tag} {i}"
        i += 1
        t0 = time.perf_counter()
        async with session.post(f"{url}/v1/rooms/{room_id}/chatMessages",
                                json={"text": text}) as r:
            assert r.status == 200, await r.text()
        t1 = await receiver.wait(text, timeout=60)
        out.append((t1 - t0) * 1000)
        await asyncio.sleep(max(0.0, 0.1 - (time.perf_counter() - t0)))
    return out


async def synapse_rate(stack: Stack, room: str, count: int) -> float:
    """(s): people per second, each registered, given a device, named and joined to `room`."""
    hs, token = stack.synapse.url, stack.registration["as_token"]
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async def one(i: int) -> None:
            local = f"synapse-bench-{i:024x}"
            mxid = f"@{local}:{stack.server_name}"
            as_user = {"user_id": mxid}
            steps = [
                ("POST", "/_matrix/client/v3/register", None,
                 {"type": "m.login.application_service", "username": local,
                  "inhibit_login": True}),
                ("PUT", "/_matrix/client/v3/devices/WEFT", as_user, {"display_name": "weft"}),
                ("PUT", f"/_matrix/client/v3/profile/{mxid}/displayname", as_user,
                 {"displayname": f"Member {i}"}),
                ("POST", f"/_matrix/client/v3/join/{room}", as_user, {}),
            ]
            for method, path, params, body in steps:
                while True:
                    async with http.request(method, f"{hs}{path}", params=params,
                                            json=body) as r:
                        if r.status == 429:
                            await asyncio.sleep(((await r.json()).get("retry_after_ms", 500)) / 1000)
                            continue
                        assert r.status in (200, 201), f"{path}: {r.status} {await r.text()}"
                        break

        queue = list(range(count))
        start = time.perf_counter()

        async def worker() -> None:
            while queue:
                await one(queue.pop())

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        return count / (time.perf_counter() - start)


def seed_members(stack: Stack, uri: str, count: int) -> None:
    """N weft users, members of the room (made with the CLI and joined through the API)."""
    weft = stack.weft

    def make(i: int) -> None:
        user = weft.create_user(f"member{i:05d}", display_name=f"Member {i}")
        user.api.join(uri)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(make, range(count)))


async def bench(members: int) -> dict:
    tag = secrets.token_hex(3)
    work = Path(tempfile.mkdtemp(prefix="weft-bench-members-"))
    stack = Stack(work, binary=pick_binary(), python=sys.executable)
    stack.prepare()
    stack.start()
    maria: MatrixUser | None = None
    http: aiohttp.ClientSession | None = None
    try:
        weft = stack.weft
        alice = weft.create_user("alice", display_name="Alice Weft")
        weft.create_room("bench", "base", topic="Synapse's own joins")
        weft.create_room("bench", "members", topic="membership sync benchmark")
        base_id = alice.api.join("bench/base")["id"]
        room_id = alice.api.join("bench/members")["id"]
        t0 = time.perf_counter()
        seed_members(stack, "bench/members", members)
        print(f"seeded {members} weft members in {time.perf_counter() - t0:.0f} s", flush=True)
        mxid = stack.synapse.register_user("maria", PASSWORD)
        maria = await MatrixUser.login(stack.synapse.url, mxid, PASSWORD, "Maria")
        base_matrix = await maria.join(stack.alias("bench", "base"))
        await maria.join(stack.alias("bench", "members"))
        http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {alice.token}"})
        receiver = Receiver(maria)
        receiver.start()
        await asyncio.sleep(0.5)

        # Idle latency, 10 s.
        idle_end = time.monotonic() + 10
        idle = await live_latency(http, weft.url, room_id, receiver, f"idle {tag}",
                                  lambda: time.monotonic() > idle_end)
        idle = idle[5:]

        # (s), with live messages into the room being joined.
        joining = asyncio.create_task(synapse_rate(stack, base_matrix, members))
        busy_synapse = await live_latency(http, weft.url, base_id, receiver, f"base {tag}",
                                          joining.done)
        rate_synapse = await joining
        print(f"synapse: {rate_synapse:.1f} people/s", flush=True)

        # (w): the CLI asks, the server syncs; live messages into the room being synced.
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            str(weft.binary), "--config", str(weft.config_path), "matrix", "sync-members",
            "bench/members", cwd=str(weft.workdir), stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        busy = await live_latency(http, weft.url, room_id, receiver, f"busy {tag}",
                                  lambda: proc.returncode is not None)
        out, _ = await proc.communicate()
        took = time.perf_counter() - start
        assert proc.returncode == 0, out
        print(out.decode().strip(), flush=True)
        receiver.task.cancel()
        return {
            "members": members,
            "synapse_rate": rate_synapse,
            "weft_rate": members / took,
            "weft_seconds": took,
            "idle": idle,
            "busy_synapse": busy_synapse,
            "busy": busy,
        }
    finally:
        if http is not None:
            await http.close()
        if maria is not None:
            await maria.close()
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=2000)
    args = parser.parse_args()
    r = asyncio.run(bench(args.members))
    print(f"members: {r['members']}")
    print(f"(s) Synapse, one application service, {IN_FLIGHT} in flight: "
          f"{r['synapse_rate']:.1f} people/s (register, device, name, join)")
    print(f"(w) weft matrix sync-members: {r['weft_rate']:.1f} members/s "
          f"({r['weft_seconds']:.1f} s), {r['weft_rate'] / r['synapse_rate']:.2f} of (s)")
    for name, label in (("idle", "idle"), ("busy_synapse", "during (s)"),
                        ("busy", "during (w)")):
        v = r[name]
        print(f"(l) live message weft → Matrix, {label}: n={len(v)} p50 {pct(v, 50):.1f} ms, "
              f"p99 {pct(v, 99):.1f} ms")
    print(f"    p99 during (w) / idle: {pct(r['busy'], 99) / pct(r['idle'], 99):.2f}; "
          f"during (s) / idle: {pct(r['busy_synapse'], 99) / pct(r['idle'], 99):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
