"""Exactly once through a crash: kill -9 weft while messages stream both ways, restart it, and
check that both sides end with the same messages, in the same order, none lost or duplicated.

The stream runs in rounds. In each round a weft user posts PER_SIDE messages through weft's
API while, at the same time, a Matrix user sends PER_SIDE messages with matrix-nio; the next
round starts once every message so far is visible on both sides. weft is killed with SIGKILL
in the middle of some rounds and restarted a moment later, so transactions from Synapse and
outbox rows to Synapse are in flight when it dies.

What "the same order" can mean: two people writing at the same instant on two networks have no
single true order (each side sees its own message first), so within a round only each origin's
own order is fixed. Across rounds the order is total: a round's messages precede the next
round's on both sides. Both are asserted, plus that the two sides hold exactly the same
messages, each once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time

import requests

from conftest import TIMINGS, bridge_room
from harness import await_until, is_edit, live_messages, relates_to

ROUNDS = int(os.environ.get("WEFT_E2E_CRASH_ROUNDS", "8"))
PER_SIDE = int(os.environ.get("WEFT_E2E_CRASH_PER_SIDE", "20"))
# Round index -> seconds after the round starts at which weft is killed.
KILLS = {2: 0.25, 5: 0.6}
DOWN_FOR = 1.0  # seconds weft stays dead
WEFT_PACE = 0.03  # seconds between two weft posts (weft's API alone would finish at once)
CONVERGE_TIMEOUT = float(os.environ.get("WEFT_E2E_CONVERGE_TIMEOUT", "120"))


def text_for(round_no: int, origin: str, i: int) -> str:
    return f"r{round_no:02d} {origin}{i:03d}"


def round_of(text: str) -> int:
    return int(text[1:3])


async def test_kill9_during_two_way_stream(stack, alice, maria):
    room = await bridge_room(stack, "crash-two-way", [alice], [maria])
    weft = stack.weft
    puppet = stack.puppet(alice)

    def weft_texts() -> list[str]:
        return [m["text"] for m in room.weft_history() if not m.get("deleted")]

    def weft_up() -> bool:
        try:
            return requests.get(f"{weft.url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    async def post_through_weft(text: str) -> None:
        while True:
            try:
                await asyncio.to_thread(alice.api.send, room.weft_id, text)
                return
            except requests.RequestException:
                # weft died, maybe after storing the message but before answering: once it
                # is back, post again only if it really does not have the message.
                await await_until(weft_up, timeout=60, interval=0.1, what="weft to come back")
                if text in weft_texts():
                    return

    async def weft_side(texts: list[str]) -> None:
        for t in texts:
            await post_through_weft(t)
            await asyncio.sleep(WEFT_PACE)  # spread the posts over the round, like the Matrix side

    async def matrix_side(texts: list[str]) -> None:
        for t in texts:
            await maria.send_text(room.matrix_id, t)

    async def killer(round_no: int) -> None:
        if round_no not in KILLS:
            return
        await asyncio.sleep(KILLS[round_no])
        weft.kill9()
        await asyncio.sleep(DOWN_FOR)
        await asyncio.to_thread(weft.start)

    async def matrix_bodies() -> list[str]:
        history = await maria.history(room.matrix_id)
        return [e["content"].get("body") for e in live_messages(history)]

    expected: list[str] = []
    started = time.monotonic()
    for r in range(ROUNDS):
        from_weft = [text_for(r, "w", i) for i in range(PER_SIDE)]
        from_matrix = [text_for(r, "m", i) for i in range(PER_SIDE)]
        await asyncio.gather(weft_side(from_weft), matrix_side(from_matrix), killer(r))
        expected += from_weft + from_matrix
        want = set(expected)

        async def converged() -> bool:
            return want <= set(weft_texts()) and want <= set(await matrix_bodies())

        await await_until(converged, timeout=CONVERGE_TIMEOUT, interval=0.5,
                          what=f"round {r}: every message so far on both sides")
    TIMINGS["crash stream (s)"] = time.monotonic() - started

    # Quiet: give late duplicates (a retried transaction, a resent outbox row) time to show.
    await asyncio.sleep(3)
    on_weft = weft_texts()
    history = await maria.history(room.matrix_id)
    on_matrix_events = live_messages(history)
    on_matrix = [e["content"].get("body") for e in on_matrix_events]

    for side, seq in (("weft", on_weft), ("Matrix", on_matrix)):
        dups = sorted({t for t in seq if seq.count(t) > 1})
        assert not dups, f"{side} holds duplicates: {dups}"
        missing = sorted(set(expected) - set(seq))
        extra = sorted(set(seq) - set(expected))
        assert not missing and not extra, f"{side}: missing {missing}, unexpected {extra}"
        rounds = [round_of(t) for t in seq]
        assert rounds == sorted(rounds), f"{side}: a message landed in the wrong round: {seq}"
        for origin in ("w", "m"):
            mine = [t for t in seq if t[4] == origin]
            assert mine == [t for t in expected if t[4] == origin], \
                f"{side}: the {origin!r} messages are out of order"
    assert len(on_weft) == len(on_matrix) == ROUNDS * PER_SIDE * 2

    # Authors survived the crash too.
    for e in on_matrix_events:
        want_sender = puppet if e["content"]["body"][4] == "w" else maria.user_id
        assert e["sender"] == want_sender, e
    for m in room.weft_history():
        if m["text"][4] == "m":
            assert (m.get("virtualUser") or {}).get("externalId") == maria.user_id, m
        else:
            assert m["fromUser"]["id"] == alice.id, m


# --------------------------------------------------------------------------------------------
# Sent, not recorded, and the homeserver restarted in between


def redacts(e: dict) -> str | None:
    """The event a redaction redacts (top level before room v11, in content from v11 on)."""
    if e.get("type") != "m.room.redaction":
        return None
    return e.get("content", {}).get("redacts") or e.get("redacts")


async def test_resend_after_homeserver_restart_is_deduplicated(stack, alice, maria):
    """weft is killed after Synapse accepted some sends but before weft recorded them (cursor
    and mappings), Synapse restarts while weft is down, and weft sends them again under the
    same transaction ids: Synapse must still recognise them. Its memory of an application
    service's transaction ids is gone with the restart; what it kept in its database for the
    sender's device is what deduplicates here.

    To hold weft between "sent" and "recorded", the test takes SQLite's write lock on weft's
    database (reads go on in WAL mode, so the sender still finds and sends the changes, but
    every write waits). The changes are queued while Synapse is paused (SIGSTOP), so that all
    of them are in weft's log before the lock is taken: four edits and a delete (sent without
    a write each; the cursor that covers them is saved a second later) and a new message
    (whose mapping and cursor are written right after the send)."""
    room = await bridge_room(stack, "resend-after-homeserver-restart", [alice], [maria])
    weft, synapse = stack.weft, stack.synapse
    originals = [alice.api.send(room.weft_id, f"original {i}") for i in range(6)]

    async def matrix_event_of(text: str) -> dict:
        return await room.matrix_wait(
            maria, lambda e: not is_edit(e) and e.get("content", {}).get("body") == text,
            f"{text!r} on Matrix")

    events = [await matrix_event_of(f"original {i}") for i in range(6)]
    # The bot redacts: its device must exist before the lock, as creating it is a write.
    alice.api.delete(room.weft_id, originals[5]["id"])
    await room.matrix_wait(maria, lambda e: redacts(e) == events[5]["event_id"],
                           "a first redaction")

    os.kill(synapse.process.pid, signal.SIGSTOP)
    paused = True
    db = None
    try:
        for i, message in enumerate(originals[:4]):
            alice.api.edit(room.weft_id, message["id"], f"edited {i}")
        alice.api.delete(room.weft_id, originals[4]["id"])
        new_message = alice.api.send(room.weft_id, "new while paused")
        db = sqlite3.connect(weft.data_dir / "weft.db", isolation_level=None, timeout=30)
        db.execute("BEGIN IMMEDIATE")
        os.kill(synapse.process.pid, signal.SIGCONT)
        paused = False

        edited = {e["event_id"] for e in events[:4]}

        async def all_sent() -> bool:
            history = await maria.history(room.matrix_id)
            edits = {relates_to(e).get("event_id") for e in history if is_edit(e)}
            redacted = {redacts(e) for e in history}
            bodies = [e["content"].get("body") for e in live_messages(history)]
            return edited <= edits and events[4]["event_id"] in redacted \
                and "new while paused" in bodies

        # Saving the cursor waits for the lock (weft's busy timeout, 10 s) before the sender
        # goes on, so the last sends come only after that.
        await await_until(all_sent, timeout=60, interval=0.5,
                          what="the edits, the delete and the new message on Matrix")
        weft.kill9()
    finally:
        if paused:
            os.kill(synapse.process.pid, signal.SIGCONT)
        if db is not None:
            db.execute("ROLLBACK")
            db.close()

    # Nothing of that was recorded: weft will send it all again.
    with sqlite3.connect(weft.data_dir / "weft.db") as check:
        recorded = check.execute(
            "SELECT COUNT(*) FROM matrix_events WHERE weft_ref = ?", (new_message["id"],)
        ).fetchone()[0]
    assert recorded == 0, "the new message's mapping was saved before the kill"

    synapse.stop()
    synapse.start()
    weft.start()

    def mapped() -> bool:
        with sqlite3.connect(weft.data_dir / "weft.db") as check:
            return check.execute(
                "SELECT COUNT(*) FROM matrix_events WHERE weft_ref = ?", (new_message["id"],)
            ).fetchone()[0] == 1

    await await_until(mapped, timeout=60, interval=0.2,
                      what="weft to send the new message again and record it")
    await asyncio.sleep(3)  # anything else resent shows by now

    history = await maria.history(room.matrix_id)
    for i, e in enumerate(events[:4]):
        edits = [x for x in history if is_edit(x) and relates_to(x).get("event_id") == e["event_id"]]
        assert len(edits) == 1, f"edit {i} is on Matrix {len(edits)} times: {edits}"
    redactions = [x for x in history if redacts(x) == events[4]["event_id"]]
    assert len(redactions) == 1, f"the delete is on Matrix {len(redactions)} times: {redactions}"
    new = [x for x in live_messages(history) if x["content"].get("body") == "new while paused"]
    assert len(new) == 1, f"the new message is on Matrix {len(new)} times: {new}"
    with sqlite3.connect(weft.data_dir / "weft.db") as check:
        (event_id,) = check.execute(
            "SELECT matrix_event_id FROM matrix_events WHERE weft_ref = ?", (new_message["id"],)
        ).fetchone()
    assert event_id == new[0]["event_id"], "weft recorded the event Synapse first created"


# --------------------------------------------------------------------------------------------
# The sender's lease


async def test_a_sender_that_loses_its_lease_takes_it_again(stack, alice, maria):
    """Someone else takes the sender's lease behind its back (here: its epoch is bumped in the
    database, as another holder's taking would): the sender notices, stops, takes the lease
    again with a newer epoch and goes on from its saved cursor, sending everything once."""
    room = await bridge_room(stack, "sender-loses-its-lease", [alice], [maria])
    weft = stack.weft

    async def see(text: str) -> None:
        await room.matrix_wait(
            maria, lambda e: not is_edit(e) and e.get("content", {}).get("body") == text,
            f"{text!r} on Matrix")

    def epoch() -> int:
        with sqlite3.connect(weft.data_dir / "weft.db", timeout=30) as db:
            return db.execute(
                "SELECT epoch FROM leases WHERE name = 'matrix-outbound'").fetchone()[0]

    alice.api.send(room.weft_id, "before the lease moved")
    await see("before the lease moved")
    held = epoch()
    with sqlite3.connect(weft.data_dir / "weft.db", timeout=30) as db:
        db.execute("UPDATE leases SET epoch = epoch + 1 WHERE name = 'matrix-outbound'")
    await await_until(lambda: epoch() == held + 2, timeout=15, interval=0.1,
                      what="the sender to take its lease again")
    log = weft.process.log_path.read_text()
    assert "lost the Matrix sender lease" in log, "the sender says that it stopped"

    texts = [f"after the lease moved {i}" for i in range(3)]
    for t in texts:
        alice.api.send(room.weft_id, t)
    for t in texts:
        await see(t)
    await maria.settle(1.5)
    history = await maria.history(room.matrix_id)
    bodies = [e["content"].get("body") for e in live_messages(history)]
    for t in ["before the lease moved", *texts]:
        assert bodies.count(t) == 1, f"{t!r} is on Matrix {bodies.count(t)} times"
