#!/usr/bin/env python3
"""Matrix bridge latency, a figure and not a test: starts a real Synapse and a real weft with
the test harness and measures, one message at a time (each waits for the previous to arrive):

  (a) Synapse alone: a matrix-nio user sends in a plain Matrix room; another user's long-poll
      `/sync` receives it.
  (e) the same with the content Element sends: `"m.mentions": {}` (intentional mentions),
      which every message weft sends carries too and which Synapse takes longer over.
  (s) Synapse alone in the bridged room: the same between two matrix-nio users, in the room
      weft bridges. Synapse does more for every event there (it also pushes each one to the
      application service), so this is the floor a message from weft sits on, and what
      (b) and (c) are compared with.
  (b) weft → Matrix: `POST /v1/rooms/:id/chatMessages` on weft (with aiohttp, the HTTP client
      matrix-nio uses) until the bridged event shows in a matrix-nio user's long-poll `/sync`.
  (c) Matrix → weft: matrix-nio sends in the bridged room until
      `GET /v1/rooms/:id/chatMessages?afterId=…`, polled in a tight loop, returns it.

Run with the rig's virtualenv python (made by `python3 tests/matrix/rig.py`):

    target/matrix-venv/bin/python tests/matrix/bench_latency.py [--messages 200]

WEFT_BIN picks the weft binary (default target/release/weft, then target/debug/weft).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
from harness import MatrixUser, Stack  # noqa: E402

PASSWORD = "matrix password for the benchmark"
WARMUP = 10


def pick_binary() -> Path:
    if os.environ.get("WEFT_BIN"):
        return Path(os.environ["WEFT_BIN"]).resolve()
    for profile in ("release", "debug"):
        path = REPO / "target" / profile / "weft"
        if path.is_file():
            return path
    return harness.weft_bin()


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Receiver:
    """Long-polls `/sync` for one Matrix user without pause and notes when each body arrives."""

    def __init__(self, user: MatrixUser):
        self.user = user
        self.arrived: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future] = {}
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        import nio

        while True:
            resp = await self.user.client.sync(timeout=30000, sync_filter=MatrixUser.SYNC_FILTER)
            now = time.perf_counter()
            if not isinstance(resp, nio.SyncResponse):
                continue
            for room in resp.rooms.join.values():
                for event in room.timeline.events:
                    body = event.source.get("content", {}).get("body")
                    if isinstance(body, str):
                        self.arrived.setdefault(body, now)
                        fut = self.waiters.pop(body, None)
                        if fut and not fut.done():
                            fut.set_result(now)

    def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def wait(self, body: str, timeout: float = 30) -> float:
        if body in self.arrived:
            return self.arrived[body]
        fut = asyncio.get_running_loop().create_future()
        self.waiters[body] = fut
        return await asyncio.wait_for(fut, timeout)


async def poll_weft(session: aiohttp.ClientSession, url: str, room_id: str, after: str | None,
                    text: str, timeout: float = 30) -> tuple[float, str]:
    """Polls weft until a message with `text` shows after `after`; returns when and its id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        params = {"limit": "100"}
        if after:
            params["afterId"] = after
        async with session.get(f"{url}/v1/rooms/{room_id}/chatMessages", params=params) as r:
            page = await r.json()
        for m in page:
            if m.get("text") == text:
                return time.perf_counter(), m["id"]
    raise TimeoutError(f"weft never showed {text!r}")


async def bench(messages: int) -> dict[str, list[float]]:
    tag = secrets.token_hex(3)
    work = Path(tempfile.mkdtemp(prefix="weft-bench-latency-"))
    stack = Stack(work, binary=pick_binary(), python=sys.executable)
    stack.prepare()
    stack.start()
    users: list[MatrixUser] = []
    weft_http: aiohttp.ClientSession | None = None
    try:
        weft = stack.weft
        alice = weft.create_user("alice", display_name="Alice Weft")
        weft.create_room("bench", "latency", topic="latency benchmark")
        room_id = alice.api.join("bench/latency")["id"]
        for name in ("maria", "matt"):
            mxid = stack.synapse.register_user(name, PASSWORD)
            users.append(await MatrixUser.login(stack.synapse.url, mxid, PASSWORD, name.title()))
        maria, matt = users
        bridged = await maria.join(stack.alias("bench", "latency"))
        assert await matt.join(bridged) == bridged
        created = await maria.check(maria.client.room_create(invite=[matt.user_id]), "create")
        plain = created.room_id
        await matt.join(plain)

        # weft is called with the same HTTP client library matrix-nio uses (aiohttp, on the
        # same event loop), so that no path pays for a slower client than the others.
        weft_http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {alice.token}"})
        receiver = Receiver(matt)
        receiver.start()
        await asyncio.sleep(0.5)
        out: dict[str, list[float]] = {"a": [], "e": [], "s": [], "b": [], "c": []}

        # (a), (e), (s) and (b) take turns, so that a slow spell of the machine hits all three.
        for i in range(WARMUP + messages):
            # (a) Synapse client → client, plain room.
            body = f"a {tag} {i}"
            t0 = time.perf_counter()
            await maria.send_text(plain, body)
            t1 = await receiver.wait(body)
            if i >= WARMUP:
                out["a"].append((t1 - t0) * 1000)
            # (e) the same with the content Element sends.
            body = f"e {tag} {i}"
            t0 = time.perf_counter()
            await maria.send_text(plain, body, **{"m.mentions": {}})
            t1 = await receiver.wait(body)
            if i >= WARMUP:
                out["e"].append((t1 - t0) * 1000)
            # (s) Synapse client → client, bridged room.
            body = f"s {tag} {i}"
            t0 = time.perf_counter()
            await maria.send_text(bridged, body)
            t1 = await receiver.wait(body)
            if i >= WARMUP:
                out["s"].append((t1 - t0) * 1000)
            # (b) weft API post → Matrix /sync.
            text = f"b {tag} {i}"
            t0 = time.perf_counter()
            async with weft_http.post(f"{weft.url}/v1/rooms/{room_id}/chatMessages",
                                      json={"text": text}) as r:
                assert r.status == 200, await r.text()
            t1 = await receiver.wait(text)
            if i >= WARMUP:
                out["b"].append((t1 - t0) * 1000)

        receiver.task.cancel()
        # (c) Matrix send → weft API.
        last = alice.api.messages(room_id, limit=1)[-1]["id"]
        for i in range(WARMUP + messages):
            text = f"c {tag} {i}"
            t0 = time.perf_counter()
            await maria.send_text(bridged, text)
            t1, last = await poll_weft(weft_http, weft.url, room_id, last, text)
            if i >= WARMUP:
                out["c"].append((t1 - t0) * 1000)
        return out
    finally:
        if weft_http is not None:
            await weft_http.close()
        for u in users:
            await u.close()
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    out = asyncio.run(bench(args.messages))
    names = {
        "a": "(a) Synapse alone, nio send -> nio /sync",
        "e": "(e) the same, content as Element sends it",
        "s": "(s) the same in the bridged room",
        "b": "(b) weft POST -> nio /sync (bridged)",
        "c": "(c) nio send -> weft GET (bridged, polled)",
    }
    binary = pick_binary()
    print(f"binary: {binary.relative_to(REPO) if binary.is_relative_to(REPO) else binary}")
    print(f"{'path':45} {'n':>5} {'p50 ms':>8} {'p99 ms':>8}")
    for k, label in names.items():
        v = out[k]
        print(f"{label:45} {len(v):5d} {pct(v, 50):8.1f} {pct(v, 99):8.1f}")
    for base_key in ("s", "e", "a"):
        base = pct(out[base_key], 50)
        for k in ("b", "c"):
            added = pct(out[k], 50) - base
            print(f"weft added at p50, {k} vs {base_key}: {added:+.1f} ms ({added / base * 100:+.0f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
