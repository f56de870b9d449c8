"""Moderation across the bridge: weft's roles are the Matrix room's power levels, kept in sync
as they change; bans, kicks and redactions by moderators cross in both directions."""

from __future__ import annotations

from conftest import COMMUNITY, DELIVERY_TIMEOUT, BridgedRoom
from harness import await_until


async def levels(user, room) -> dict:
    content = await user.room_state(room.matrix_id, "m.room.power_levels")
    assert content is not None, "no power levels"
    return content.get("users", {})


def set_role(owner, room_id: str, user, role: str) -> None:
    owner.api.request("PUT", f"/v1/rooms/{room_id}/users/{user.id}/role", json={"role": role})


async def test_roles_are_power_levels(stack, alice, bob, maria, uid):
    owner = stack.weft.create_user(f"owner{uid}", admin=True)
    name = f"roles-{uid}"
    weft_id = stack.weft.create_room(COMMUNITY, name)
    bob.api.join(f"{COMMUNITY}/{name}")
    set_role(owner, weft_id, bob, "moderator")  # before the room is bridged
    alice.api.join(f"{COMMUNITY}/{name}")
    alias = stack.alias(COMMUNITY, name)
    room = BridgedRoom(stack, COMMUNITY, name, weft_id, alias, await maria.join(alias))
    assert (await levels(maria, room)).get(stack.puppet(bob)) == 50

    set_role(owner, weft_id, alice, "admin")

    async def alice_admin():
        users = await levels(maria, room)
        assert users.get(stack.puppet(alice)) == 100, users
        return True

    await await_until(alice_admin, timeout=DELIVERY_TIMEOUT, what="alice's puppet at power 100")

    set_role(owner, weft_id, bob, "member")

    async def bob_demoted():
        users = await levels(maria, room)
        assert stack.puppet(bob) not in users, users
        assert users.get(stack.puppet(alice)) == 100, users
        return True

    await await_until(bob_demoted, timeout=DELIVERY_TIMEOUT, what="bob's puppet back at power 0")
