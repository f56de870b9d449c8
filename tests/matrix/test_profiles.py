"""Profiles kept in sync: a weft user's display name on their puppet, a Matrix user's display
name on their virtual user in weft. Each test uses its own users so that renaming does not
disturb the others."""

from __future__ import annotations

from conftest import DELIVERY_TIMEOUT, MATRIX_PASSWORD, bridge_room
from harness import MatrixUser, await_until, is_message


async def test_weft_rename_reaches_matrix(stack, maria, uid):
    carol = stack.weft.create_user(f"carol{uid}", display_name="Carol Before")
    room = await bridge_room(stack, f"rename-weft-{uid}", [carol], [maria])
    carol.api.send(room.weft_id, f"hello {uid}")
    puppet = stack.puppet(carol)
    await room.matrix_wait(maria, lambda e: is_message(e) and e["sender"] == puppet,
                           "carol's first message")
    carol.api.request("PATCH", "/v1/user/me", json={"displayName": "Carol After"})

    async def renamed():
        member = await maria.room_state(room.matrix_id, "m.room.member", puppet)
        assert member and member.get("displayname") == "Carol After", member
        return True

    await await_until(renamed, timeout=DELIVERY_TIMEOUT, what="the puppet's new display name")


async def test_matrix_rename_reaches_weft(stack, alice, uid):
    user_id = stack.synapse.register_user(f"mia{uid}", MATRIX_PASSWORD)
    mia = await MatrixUser.login(stack.synapse.url, user_id, MATRIX_PASSWORD, "Mia Before")
    try:
        room = await bridge_room(stack, f"rename-matrix-{uid}", [alice], [mia])
        await mia.send_text(room.matrix_id, f"hi {uid}")
        first = await room.weft_wait(lambda m: m.get("text") == f"hi {uid}", "mia's message")
        assert first["virtualUser"]["displayName"] == "Mia Before"
        await mia.check(mia.client.set_displayname("Mia After"), "rename")
        await await_until(
            lambda: alice.api.message(room.weft_id, first["id"])["virtualUser"]["displayName"]
            == "Mia After",
            timeout=DELIVERY_TIMEOUT, what="the virtual user's new display name in weft")
    finally:
        await mia.close()


async def test_member_event_about_someone_else_renames_nobody(stack, alice, uid):
    """An invite (or kick, or ban) is an `m.room.member` event whose content carries the
    *target's* profile; a hostile Matrix user can put any name there. Only a member event whose
    state_key is its sender may rename that sender, so nobody can take "Alice (admin)"."""
    user_id = stack.synapse.register_user(f"moe{uid}", MATRIX_PASSWORD)
    moe = await MatrixUser.login(stack.synapse.url, user_id, MATRIX_PASSWORD, "Moe Honest")
    try:
        room = await bridge_room(stack, f"forged-name-{uid}", [alice], [moe])
        await moe.send_text(room.matrix_id, f"before {uid}")
        before = await room.weft_wait(lambda m: m.get("text") == f"before {uid}",
                                      "moe's first message")
        assert before["virtualUser"]["displayName"] == "Moe Honest"
        victim = stack.synapse.register_user(f"victim{uid}", MATRIX_PASSWORD)
        await moe.check(
            moe.client.room_put_state(
                room.matrix_id, "m.room.member",
                {"membership": "invite", "displayname": "Alice (admin)"}, state_key=victim),
            "an invite carrying a forged name")
        await moe.send_text(room.matrix_id, f"after {uid}")
        after = await room.weft_wait(lambda m: m.get("text") == f"after {uid}",
                                     "moe's message after the invite")
        assert after["virtualUser"]["displayName"] == "Moe Honest", after["virtualUser"]
        assert alice.api.message(room.weft_id, before["id"])["virtualUser"]["displayName"] \
            == "Moe Honest"
    finally:
        await moe.close()
