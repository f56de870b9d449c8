"""Communities as Matrix Spaces: `#community:server` is a Space in the room directory whose
children are the community's open bridged rooms, each pointing back at it; a room made
private leaves the Space and comes back when it is public again, and a room bridged later
joins it."""

from __future__ import annotations

from urllib.parse import quote

from conftest import DELIVERY_TIMEOUT, bot_of, new_matrix_user
from harness import await_until


def state(user, room_id: str, etype: str, key: str) -> dict:
    """A state event's content ({} when there is none)."""
    path = f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{etype}/{quote(key, safe='')}"
    return user.client_api("GET", path, expect=(200, 404)) or {}


def listed(user, space: str) -> set[str]:
    """The rooms a Space lists (its non-empty `m.space.child` events)."""
    hierarchy = user.client_api("GET", f"/_matrix/client/v1/rooms/{quote(space)}/hierarchy")
    top = next(r for r in hierarchy["rooms"] if r["room_id"] == space)
    return {c["state_key"] for c in top.get("children_state", []) if c.get("content")}


def set_security(owner, weft_id: str, security: str) -> None:
    owner.api.request("PUT", f"/v1/rooms/{weft_id}", json={"security": security})


async def test_a_community_is_a_space_of_its_bridged_rooms(stack, uid):
    owner = stack.weft.create_user(f"owner{uid}", admin=True)
    community = f"space{uid}"
    stack.weft.create_room(community, "general", topic="general chat")
    help_id = stack.weft.create_room(community, "help")
    stack.weft.create_room(community, "staff", private=True)
    maria = await new_matrix_user(stack, f"sp{uid}")

    space = await maria.join(f"#{community}:{stack.server_name}")
    create = state(maria, space, "m.room.create", "")
    assert create.get("type") == "m.space", create
    assert maria.directory_lists(space), "the Space is not in the directory"
    general = maria.alias_target(stack.alias(community, "general"))
    help_room = maria.alias_target(stack.alias(community, "help"))
    assert general and help_room, "joining the Space bridged the community's public rooms"
    assert maria.alias_target(stack.alias(community, "staff")) is None, "a private room bridged"

    def lists(*rooms: str, without: tuple[str, ...] = ()):
        def check():
            now = listed(maria, space)
            assert set(rooms) <= now and not set(without) & now, now
            return True
        return check

    await await_until(lists(general, help_room), timeout=DELIVERY_TIMEOUT,
                      what="the Space listing both public rooms")
    parent = state(maria, general, "m.space.parent", space)
    assert parent.get("canonical") is True and parent.get("via"), parent

    # A room made private leaves the Space; public again, it is back.
    set_security(owner, help_id, "PRIVATE")
    await await_until(lists(general, without=(help_room,)), timeout=DELIVERY_TIMEOUT,
                      what="the private room off the Space")
    # Seen as the bridge: a closed room lets nobody outside it read its state.
    closed_parent = stack.synapse_request(
        "GET", f"/_matrix/client/v3/rooms/{quote(help_room)}/state/m.space.parent/"
        f"{quote(space, safe='')}", as_user=bot_of(stack))
    assert closed_parent.status_code == 200 and closed_parent.json() == {}, closed_parent.text
    set_security(owner, help_id, "PUBLIC")
    await await_until(lists(general, help_room), timeout=DELIVERY_TIMEOUT,
                      what="the room back in the Space")
    assert state(maria, help_room, "m.space.parent", space).get("canonical") is True

    # A room bridged later (someone joins it by alias) joins the Space.
    stack.weft.create_room(community, "later")
    later = await maria.join(stack.alias(community, "later"))
    await await_until(lists(general, help_room, later), timeout=DELIVERY_TIMEOUT,
                      what="the room bridged later in the Space")
