"""Weft cannot read end-to-end encrypted messages (it holds no keys to a room's sessions), so
none is lost without a word: the sender of an encrypted message in a bridged room gets a
notice from the bridge bot saying so, replying to it, and operators see it in
`weft matrix failures`. Turning encryption on in a bridged room is for the bridge alone."""

from __future__ import annotations

from urllib.parse import quote

from conftest import bridge_room, make_matrix_moderator, new_matrix_user
from harness import is_message


def notice_replying_to(event_id: str):
    def match(e: dict) -> bool:
        return (is_message(e, "m.notice")
                and "encrypted" in e["content"].get("body", "")
                and e["content"].get("m.relates_to", {}).get("m.in_reply_to", {})
                .get("event_id") == event_id)
    return match


async def test_an_encrypted_message_is_refused_aloud(stack, alice, uid):
    maria = await new_matrix_user(stack, f"enc{uid}")
    room = await bridge_room(stack, f"encrypted-{uid}", [alice], [maria])
    # What a client sends once encryption is on (the ciphertext need not decrypt: weft
    # cannot try).
    sent = maria.client_api(
        "PUT", f"/_matrix/client/v3/rooms/{quote(room.matrix_id)}/send/m.room.encrypted/e{uid}",
        json={"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnAcbmV2ZXI",
              "sender_key": "c2VuZGVy", "session_id": "c2Vzc2lvbg", "device_id": "NIO"})
    event_id = sent["event_id"]
    await room.matrix_wait(maria, notice_replying_to(event_id),
                           "the bot's notice that weft cannot read it")
    failures = stack.weft.cli_ok("matrix", "failures")
    assert event_id in failures and "encrypted" in failures, failures
    assert not any("AwgAEnAcbmV2ZXI" in m["text"] for m in room.weft_history(alice.api))


async def test_nobody_but_the_bridge_may_turn_encryption_on(stack, alice, uid):
    """A bridged room's power levels keep `m.room.encryption` at 100, which only its creator
    (the bridge) holds: even a moderator cannot make the room unreadable to weft."""
    mod = await new_matrix_user(stack, f"encmod{uid}")
    room = await bridge_room(stack, f"encryption-on-{uid}", [alice], [mod])
    make_matrix_moderator(stack, room, mod.user_id)
    refused = mod.client_api(
        "PUT", f"/_matrix/client/v3/rooms/{quote(room.matrix_id)}/state/m.room.encryption/",
        json={"algorithm": "m.megolm.v1.aes-sha2"}, expect=(403,))
    assert refused["errcode"] == "M_FORBIDDEN", refused
