"""Profiles kept in sync: a weft user's display name on their puppet, a Matrix user's display
name and avatar on their virtual user in weft (the avatar served by weft itself). Each test uses its own users so that renaming does not
disturb the others."""

from __future__ import annotations

from urllib.parse import quote

import requests

from conftest import DELIVERY_TIMEOUT, MATRIX_PASSWORD, bridge_room
from harness import MatrixUser, await_until, is_message, tiny_png


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


async def test_matrix_avatar_is_served_by_weft(stack, alice, uid):
    user_id = stack.synapse.register_user(f"ava{uid}", MATRIX_PASSWORD)
    ava = await MatrixUser.login(stack.synapse.url, user_id, MATRIX_PASSWORD, "Ava")
    try:
        room = await bridge_room(stack, f"avatar-matrix-{uid}", [alice], [ava])
        await ava.send_text(room.matrix_id, f"before {uid}")
        first = await room.weft_wait(lambda m: m.get("text") == f"before {uid}",
                                     "ava's message")
        picture = tiny_png(3, 3, (20, 140, 90))
        mxc = await ava.upload(picture, "image/png", "me.png")
        # Setting a profile avatar updates her member event in every room she is in.
        await ava.check(ava.client.set_avatar(mxc), "set avatar")

        def avatar() -> str:
            url = alice.api.message(room.weft_id, first["id"])["virtualUser"]["avatarUrl"] or ""
            assert url.startswith("/matrix-avatars/"), url
            return url

        url = await await_until(avatar, timeout=DELIVERY_TIMEOUT,
                                what="ava's avatar on her virtual user")
        served = requests.get(f"{stack.weft.url}{url}", timeout=15)
        assert served.status_code == 200, served.text
        assert served.content == picture
        assert served.headers["content-type"] == "image/png"
        assert served.headers.get("x-content-type-options") == "nosniff"
        # Weft serves what it fetched, nothing else of the homeserver's media.
        other = await ava.upload(tiny_png(), "image/png", "other.png")
        server, media = other.removeprefix("mxc://").split("/", 1)
        unknown = requests.get(f"{stack.weft.url}/matrix-avatars/{server}/{media}", timeout=15)
        assert unknown.status_code == 404

        # She takes her picture away: weft draws her initial again.
        ava.client_api("PUT", f"/_matrix/client/v3/profile/{quote(ava.user_id)}/avatar_url",
                       json={"avatar_url": ""})

        def no_avatar() -> bool:
            url = alice.api.message(room.weft_id, first["id"])["virtualUser"]["avatarUrl"]
            assert not url, url
            return True

        await await_until(no_avatar, timeout=DELIVERY_TIMEOUT,
                          what="ava's avatar taken away in weft")
    finally:
        await ava.close()
