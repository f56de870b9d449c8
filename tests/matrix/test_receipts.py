"""Read receipts, weft → Matrix: a weft user who reads a bridged room moves their puppet's
`m.read` receipt to the newest bridged message they read, so Element lists them among the
readers. Only puppets already in the Matrix room get receipts (reading makes nobody join)."""

from __future__ import annotations

import json

import requests

from conftest import DELIVERY_TIMEOUT
from harness import await_until, is_message


class ReceiptWatch:
    """Follows a room's `m.read` receipts through a sync stream of its own (Synapse answers
    identical initial syncs from a cache for a while, so each poll continues from the last)."""

    def __init__(self, stack, viewer, matrix_room: str):
        self.url = f"{stack.synapse.url}/_matrix/client/v3/sync"
        self.headers = {"Authorization": f"Bearer {viewer.access_token}"}
        self.room = matrix_room
        self.filter = json.dumps({
            "room": {"rooms": [matrix_room], "timeline": {"limit": 1}, "state": {"types": []},
                     "ephemeral": {"types": ["m.receipt"]}},
            "presence": {"not_types": ["*"]}, "account_data": {"not_types": ["*"]}})
        self.since: str | None = None
        self.readers: dict[str, str] = {}
        self.poll(0)

    def poll(self, timeout_ms: int = 500) -> dict[str, str]:
        """Who has an `m.read` receipt on which event, as far as the stream has shown."""
        params = {"filter": self.filter, "timeout": str(timeout_ms)}
        if self.since:
            params["since"] = self.since
        r = requests.get(self.url, params=params, headers=self.headers, timeout=30)
        r.raise_for_status()
        body = r.json()
        self.since = body["next_batch"]
        room = body.get("rooms", {}).get("join", {}).get(self.room, {})
        for e in room.get("ephemeral", {}).get("events", []):
            if e.get("type") != "m.receipt":
                continue
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
    assert stack.puppet(bob) not in watch.poll(0), \
        "a reader whose puppet is not in the room was made to join"
