"""Read receipts, both ways.

Weft → Matrix: a weft user who reads a bridged room moves their puppet's `m.read` receipt to
the newest bridged message they read, so Element lists them among the readers. Only puppets
already in the Matrix room get receipts (reading makes nobody join).

Matrix → weft: a Matrix user's `m.read` receipt moves their virtual user's read mark, so the
message's `readBy` counts them and its readers list them; a private receipt does not."""

from __future__ import annotations

from urllib.parse import quote

from conftest import DELIVERY_TIMEOUT
from harness import EphemeralWatch, await_until, is_message


class ReceiptWatch:
    """Who has an `m.read` receipt on which event of a room, from a watch of its own."""

    def __init__(self, stack, viewer, matrix_room: str):
        self.stream = EphemeralWatch(stack.synapse.url, viewer, matrix_room, "m.receipt")
        self.readers: dict[str, str] = {}
        self.poll(0)

    def poll(self, timeout_ms: int = 500) -> dict[str, str]:
        for e in self.stream.poll(timeout_ms):
            for event_id, kinds in e.get("content", {}).items():
                for mxid in kinds.get("m.read", {}):
                    self.readers[mxid] = event_id
        return self.readers


async def test_a_weft_reader_moves_their_puppets_receipt(room, stack, alice, bob, maria, uid):
    # Alice has spoken, so her puppet is in the Matrix room; Bob has not.
    alice.api.send(room.weft_id, f"hello from alice {uid}")
    await room.matrix_wait(maria, lambda e: is_message(e) and uid in e["content"]["body"],
                           "alice's message")
    first = await maria.send_text(room.matrix_id, f"first {uid}")
    second = await maria.send_text(room.matrix_id, f"second {uid}")
    in_weft = await room.weft_wait(lambda m: m.get("text") == f"second {uid}", "maria's second")
    first_in_weft = await room.weft_wait(lambda m: m.get("text") == f"first {uid}", "maria's first")

    puppet = stack.puppet(alice)
    watch = ReceiptWatch(stack, maria, room.matrix_id)
    alice.api.post(f"/v1/user/me/rooms/{room.weft_id}/unreadItems",
                   json={"chat": [first_in_weft["id"]]}, expect=(200, 204))

    def reads(event_id: str):
        def check():
            seen = watch.poll()
            assert seen.get(puppet) == event_id, f"{puppet} not on {event_id}: {seen}"
            return True
        return check

    await await_until(reads(first), timeout=DELIVERY_TIMEOUT,
                      what="alice's receipt on the first message")

    bob.api.post(f"/v1/user/me/rooms/{room.weft_id}/unreadItems",
                 json={"chat": [in_weft["id"]]}, expect=(200, 204))
    alice.api.post(f"/v1/user/me/rooms/{room.weft_id}/unreadItems",
                   json={"chat": [in_weft["id"]]}, expect=(200, 204))
    await await_until(reads(second), timeout=DELIVERY_TIMEOUT,
                      what="alice's receipt moved to the second")
    assert stack.puppet(bob) not in watch.poll(0), "a receipt for a puppet not in the room"
    member = await maria.room_state(room.matrix_id, "m.room.member", stack.puppet(bob))
    assert not member or member.get("membership") != "join", "reading made bob's puppet join"


async def test_a_matrix_readers_receipt_counts_in_weft(room, stack, alice, maria, matt, uid):
    # Both have spoken, so weft has met them.
    for who in (maria, matt):
        await who.send_text(room.matrix_id, f"hello from {who.user_id} {uid}")
    await room.weft_wait(lambda m: m.get("text") == f"hello from {matt.user_id} {uid}",
                         "matt's hello")
    first = alice.api.send(room.weft_id, f"first from alice {uid}")
    second = alice.api.send(room.weft_id, f"second from alice {uid}")
    in_matrix = {}
    for message in (first, second):
        event = await room.matrix_wait(
            maria, lambda e, t=message["text"]: is_message(e) and e["content"]["body"] == t,
            message["text"])
        in_matrix[message["id"]] = event["event_id"]

    def receipt(user, kind: str, message: dict) -> None:
        event_id = quote(in_matrix[message["id"]])
        user.client_api("POST", f"/_matrix/client/v3/rooms/{quote(room.matrix_id)}"
                        f"/receipt/{kind}/{event_id}", json={})

    def readers(message: dict) -> list[str]:
        listed = alice.api.get(f"/v1/rooms/{room.weft_id}/chatMessages/{message['id']}/readBy")
        return [u["username"] for u in listed if u.get("virtual")]

    def read_by(message: dict) -> int:
        found = next(m for m in room.weft_history() if m["id"] == message["id"])
        return found["readBy"]

    # Matt reads privately, then Maria publicly: only Maria's receipt reaches anyone.
    receipt(matt, "m.read.private", second)
    receipt(maria, "m.read", first)

    def among_readers(message: dict):
        def check():
            assert maria.user_id in readers(message), readers(message)
            return True
        return check

    await await_until(among_readers(first), timeout=DELIVERY_TIMEOUT,
                      what="maria among the readers of the first message")
    assert maria.user_id not in readers(second), "a receipt on the first read the second"
    before = read_by(first)

    # Her receipt moves on: now she has read both.
    receipt(maria, "m.read", second)

    await await_until(among_readers(second), timeout=DELIVERY_TIMEOUT,
                      what="maria among the readers of the second message")
    assert maria.user_id in readers(first), "a receipt moved back"
    assert read_by(first) == before, "her mark moved, it was not counted twice"
    assert read_by(second) == len(alice.api.get(
        f"/v1/rooms/{room.weft_id}/chatMessages/{second['id']}/readBy"))
    assert matt.user_id not in readers(first) + readers(second), "a private receipt leaked"
