"""A bridged room's name and topic are the same from Element and from weft: the Matrix room
is named after the weft room (not its URI), a change in weft reaches Matrix, and a change on
Matrix by someone whose power level allows it reaches weft; an empty name is put back."""

from __future__ import annotations

from conftest import DELIVERY_TIMEOUT, bridge_room, make_matrix_moderator, new_matrix_user
from harness import await_until


def set_state(user, room, etype: str, content: dict, expect=(200,)):
    return user.client_api("PUT", f"/_matrix/client/v3/rooms/{room.matrix_id}/state/{etype}/",
                           json=content, expect=expect)


async def matrix_shows(user, room, etype: str, field: str, wanted: str) -> None:
    async def check():
        content = await user.room_state(room.matrix_id, etype)
        assert content and content.get(field) == wanted, content
        return True

    await await_until(check, timeout=DELIVERY_TIMEOUT, what=f"{etype} {field} = {wanted!r}")


async def weft_shows(owner, room, field: str, wanted: str) -> None:
    def check():
        got = owner.api.get(f"/v1/rooms/{room.weft_id}")
        assert got.get(field) == wanted, got
        return True

    await await_until(check, timeout=DELIVERY_TIMEOUT, what=f"weft's {field} = {wanted!r}")


async def test_names_and_topics_cross_both_ways(stack, alice, uid):
    owner = stack.weft.create_user(f"owner{uid}", admin=True)
    maria = await new_matrix_user(stack, f"rd{uid}")
    room = await bridge_room(stack, f"details-{uid}", [alice], [maria])
    weft_room = owner.api.get(f"/v1/rooms/{room.weft_id}")
    assert weft_room["displayName"] == f"details-{uid}", weft_room
    # Named after the weft room, not its URI (that is the alias).
    await matrix_shows(maria, room, "m.room.name", "name", f"details-{uid}")

    # Weft → Matrix.
    owner.api.request("PUT", f"/v1/rooms/{room.weft_id}",
                      json={"name": f"Renamed {uid}", "topic": f"topic from weft {uid}"})
    await matrix_shows(maria, room, "m.room.name", "name", f"Renamed {uid}")
    await matrix_shows(maria, room, "m.room.topic", "topic", f"topic from weft {uid}")

    # A member without power cannot change them: the homeserver refuses.
    set_state(maria, room, "m.room.name", {"name": "nope"}, expect=(403,))

    # Matrix → weft, from a Matrix moderator.
    make_matrix_moderator(stack, room, maria.user_id)
    set_state(maria, room, "m.room.name", {"name": f"Named on Matrix {uid}"})
    set_state(maria, room, "m.room.topic", {"topic": f"topic from Matrix {uid}"})
    await weft_shows(owner, room, "displayName", f"Named on Matrix {uid}")
    await weft_shows(owner, room, "topic", f"topic from Matrix {uid}")

    # A weft room always has a name: one removed on Matrix is put back.
    set_state(maria, room, "m.room.name", {"name": ""})
    await matrix_shows(maria, room, "m.room.name", "name", f"Named on Matrix {uid}")
    assert owner.api.get(f"/v1/rooms/{room.weft_id}")["displayName"] == f"Named on Matrix {uid}"


async def test_a_room_avatar_set_on_matrix_reaches_weft(stack, alice, uid):
    import requests

    from harness import tiny_png

    owner = stack.weft.create_user(f"owner{uid}", admin=True)
    maria = await new_matrix_user(stack, f"ra{uid}")
    room = await bridge_room(stack, f"avatar-{uid}", [alice], [maria])
    make_matrix_moderator(stack, room, maria.user_id)
    picture = tiny_png(4, 4, (10, 90, 200))
    mxc = await maria.upload(picture, "image/png", "room.png")
    set_state(maria, room, "m.room.avatar", {"url": mxc})

    def avatar() -> str:
        url = owner.api.get(f"/v1/rooms/{room.weft_id}").get("avatarUrl") or ""
        assert url.startswith("/matrix-avatars/"), url
        return url

    url = await await_until(avatar, timeout=DELIVERY_TIMEOUT, what="the room's avatar in weft")
    served = requests.get(f"{stack.weft.url}{url}", timeout=15)
    assert served.status_code == 200 and served.content == picture
