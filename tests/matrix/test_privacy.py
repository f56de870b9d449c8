"""Privacy follows the room: a bridged room that becomes private, or is deleted, sends nothing
more to Matrix from that moment, and its Matrix room is closed (out of the directory, alias
removed, invite only, history for members only, a notice from the bot); public again, it is
opened again. Matrix users who speak in a closed room are refused and told."""

from __future__ import annotations

import asyncio

from conftest import DELIVERY_TIMEOUT, bridge_room, new_matrix_user
from harness import await_until, is_message


def is_notice(event: dict, words: str) -> bool:
    return is_message(event, "m.notice") and words in event["content"].get("body", "")


def bodies(events: list[dict]) -> list[str]:
    return [e["content"].get("body", "") for e in events if is_message(e)]


async def closed(user, room) -> bool:
    rules = await user.room_state(room.matrix_id, "m.room.join_rules")
    history = await user.room_state(room.matrix_id, "m.room.history_visibility")
    assert rules and rules.get("join_rule") == "invite", rules
    assert history and history.get("history_visibility") == "joined", history
    assert not user.directory_lists(room.matrix_id), "still listed in the directory"
    assert user.alias_target(room.alias) is None, "the alias still points at the room"
    return True


async def opened(user, room) -> bool:
    rules = await user.room_state(room.matrix_id, "m.room.join_rules")
    history = await user.room_state(room.matrix_id, "m.room.history_visibility")
    assert rules and rules.get("join_rule") == "public", rules
    assert history and history.get("history_visibility") == "world_readable", history
    assert user.directory_lists(room.matrix_id), "not listed in the directory"
    assert user.alias_target(room.alias) == room.matrix_id, "the alias points elsewhere"
    return True


def set_security(owner, room, security: str) -> None:
    owner.api.request("PUT", f"/v1/rooms/{room.weft_id}", json={"security": security})


async def test_private_then_public_again(stack, alice, uid):
    owner = stack.weft.create_user(f"owner{uid}", admin=True)
    maria = await new_matrix_user(stack, f"pia{uid}")
    room = await bridge_room(stack, f"privacy-{uid}", [alice], [maria])
    alice.api.send(room.weft_id, f"public {uid}")
    await room.matrix_wait(maria, lambda e: is_message(e) and e["content"]["body"] == f"public {uid}",
                           "a message while public")
    assert await opened(maria, room)

    set_security(owner, room, "PRIVATE")
    await room.matrix_wait(maria, lambda e: is_notice(e, "now private"), "the bot's notice")
    await await_until(lambda: closed(maria, room), timeout=DELIVERY_TIMEOUT,
                      what="the Matrix room to close")

    alice.api.send(room.weft_id, f"secret {uid}")
    refused = await maria.send_text(room.matrix_id, f"from matrix while private {uid}")
    await room.matrix_wait(
        maria,
        lambda e: is_notice(e, "Not delivered to weft")
        and e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
        == refused,
        "a notice replying to the refused message")
    assert not any(m["text"] == f"from matrix while private {uid}"
                   for m in room.weft_history(alice.api))
    failures = stack.weft.cli_ok("matrix", "failures")
    assert refused in failures and "private on weft" in failures, failures

    set_security(owner, room, "PUBLIC")
    await room.matrix_wait(maria, lambda e: is_notice(e, "public on weft again"),
                           "the bot's notice that the room is public again")
    await await_until(lambda: opened(maria, room), timeout=DELIVERY_TIMEOUT,
                      what="the Matrix room to open again")
    alice.api.send(room.weft_id, f"public again {uid}")
    await room.matrix_wait(
        maria, lambda e: is_message(e) and e["content"]["body"] == f"public again {uid}",
        "a message once public again")
    await maria.send_text(room.matrix_id, f"matrix again {uid}")
    await room.weft_wait(lambda m: m["text"] == f"matrix again {uid}",
                         "a Matrix message once public again", api=alice.api)
    assert f"secret {uid}" not in bodies(await maria.history(room.matrix_id))
    await maria.close()


async def test_privacy_follows_the_log_when_the_homeserver_was_away(stack, alice, maria, uid):
    """With the homeserver down, the room goes private, a secret is posted, and the room goes
    public again before the sender can send anything: when the homeserver is back, the sender
    must act on what was true at each point of its log, so the secret never leaves weft."""
    owner = stack.weft.create_user(f"owner{uid}", admin=True)
    room = await bridge_room(stack, f"privacy-lag-{uid}", [alice], [maria])
    alice.api.send(room.weft_id, f"before {uid}")
    await room.matrix_wait(maria, lambda e: is_message(e) and e["content"]["body"] == f"before {uid}",
                           "a message before the outage")
    stack.synapse.stop()
    try:
        set_security(owner, room, "PRIVATE")
        alice.api.send(room.weft_id, f"secret {uid}")
        set_security(owner, room, "PUBLIC")
        alice.api.send(room.weft_id, f"after {uid}")
    finally:
        stack.synapse.start()
    await room.matrix_wait(maria, lambda e: is_message(e) and e["content"]["body"] == f"after {uid}",
                           "the message after the outage", timeout=60)
    seen = bodies(await maria.history(room.matrix_id))
    assert f"secret {uid}" not in seen, "a message posted while private reached Matrix"
    assert await opened(maria, room)


async def test_deleted_room_closes(stack, alice, uid):
    owner = stack.weft.create_user(f"owner{uid}", admin=True)
    maria = await new_matrix_user(stack, f"dora{uid}")
    room = await bridge_room(stack, f"deleted-{uid}", [alice], [maria])
    alice.api.send(room.weft_id, f"hello {uid}")
    await room.matrix_wait(maria, lambda e: is_message(e) and e["content"]["body"] == f"hello {uid}",
                           "a message before the deletion")
    owner.api.request("DELETE", f"/v1/rooms/{room.weft_id}", expect=(204,))
    await room.matrix_wait(maria, lambda e: is_notice(e, "deleted on weft"), "the bot's notice")
    await await_until(lambda: closed(maria, room), timeout=DELIVERY_TIMEOUT,
                      what="the Matrix room to close")
    # What Matrix users say there now goes nowhere, and they are told.
    refused = await maria.send_text(room.matrix_id, f"anyone? {uid}")
    await room.matrix_wait(
        maria,
        lambda e: is_notice(e, "Not delivered to weft")
        and e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
        == refused,
        "a notice replying to the refused message")
    await maria.close()


async def test_private_rooms_never_reach_matrix(stack, maria, uid):
    """A room that was private from the start answers the alias query with 404 and sends
    nothing, even once people post in it."""
    owner = stack.weft.create_user(f"owner{uid}", admin=True)
    name = f"never-{uid}"
    weft_id = stack.weft.create_room("e2e", name, private=True)
    owner.api.join(f"e2e/{name}")
    owner.api.send(weft_id, f"private from the start {uid}")
    joined = await maria.client.join(stack.alias("e2e", name))
    assert not hasattr(joined, "room_id"), f"joined a private room: {joined}"
    await asyncio.sleep(0.5)
    assert maria.alias_target(stack.alias("e2e", name)) is None
