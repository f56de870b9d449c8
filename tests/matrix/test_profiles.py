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
