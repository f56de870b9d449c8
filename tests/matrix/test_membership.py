"""Membership sync: a room whose membership is `full` has every weft member's puppet in the
Matrix room and everyone in the Matrix room among weft's members, kept so live both ways
(joins, leaves, kicks), brought up to date by `weft matrix membership … full` /
`weft matrix sync-members`, which is idempotent; a `lazy` room (the default) leaves its
Matrix people off weft's member list."""

from __future__ import annotations

from urllib.parse import quote

from conftest import DELIVERY_TIMEOUT, new_matrix_user
from harness import await_until


def joined_on_matrix(user, room_id: str) -> set[str]:
    """Who the homeserver says is joined to a room."""
    got = user.client_api("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/joined_members")
    return set(got["joined"])


def weft_members(api, room_id: str) -> dict[str, dict]:
    """A weft room's member list by username (Matrix people by Matrix ID)."""
    return {m["username"]: m for m in api.get(f"/v1/rooms/{room_id}/users", params={"limit": 100})}


async def test_a_full_room_has_everyone_on_both_sides_live(stack, uid):
    community = f"mem{uid}"
    room_id = stack.weft.create_room(community, "general")
    uri = f"{community}/general"
    alice = stack.weft.create_user(f"alice{uid}", display_name="Alice")
    bob = stack.weft.create_user(f"bob{uid}")
    carol = stack.weft.create_user(f"carol{uid}")
    for u in (alice, bob):
        u.api.join(uri)
    maria = await new_matrix_user(stack, f"mm{uid}")
    matt = await new_matrix_user(stack, f"mt{uid}")
    matrix_room = await maria.join(stack.alias(community, "general"))

    # Lazy (the default): nobody has acted, so no puppet is in, and weft lists no Matrix people.
    assert stack.puppet(alice) not in joined_on_matrix(maria, matrix_room)
    assert maria.user_id not in weft_members(alice.api, room_id)

    out = stack.weft.cli_ok("matrix", "membership", uri, "full", timeout=120)
    assert "membership full" in out and "2 member(s) in on Matrix" in out, out
    on_matrix = joined_on_matrix(maria, matrix_room)
    assert {stack.puppet(alice), stack.puppet(bob)} <= on_matrix, on_matrix
    members = weft_members(alice.api, room_id)
    assert members[maria.user_id]["virtual"] is True, members
    assert members[maria.user_id]["badge"] == "matrix"
    # The CLI wrote it: the server's cached room learns it from the log within a second.
    await await_until(lambda: alice.api.get(f"/v1/rooms/{room_id}")["userCount"] == 3,
                      timeout=DELIVERY_TIMEOUT, what="userCount counting the Matrix member")

    # A sync again changes nothing: everyone is in.
    again = stack.weft.cli_ok("matrix", "sync-members", uri, timeout=120)
    assert "0 of them joined now" in again, again

    # Live, weft → Matrix: a join joins the puppet, a leave makes it leave.
    carol.api.join(uri)
    await await_until(lambda: stack.puppet(carol) in joined_on_matrix(maria, matrix_room),
                      timeout=DELIVERY_TIMEOUT, what="carol's puppet joining with her")
    carol.api.request("DELETE", f"/v1/rooms/{room_id}/users/{carol.id}")
    await await_until(lambda: stack.puppet(carol) not in joined_on_matrix(maria, matrix_room),
                      timeout=DELIVERY_TIMEOUT, what="carol's puppet leaving with her")

    # Live, Matrix → weft: a join lists the Matrix user (with their name), a leave unlists.
    await matt.join(matrix_room)
    listed = await await_until(lambda: weft_members(alice.api, room_id).get(matt.user_id),
                               timeout=DELIVERY_TIMEOUT, what="matt listed in weft")
    assert listed["virtual"] is True
    matt.client_api("POST", f"/_matrix/client/v3/rooms/{quote(matrix_room)}/leave", json={})
    await await_until(lambda: matt.user_id not in weft_members(alice.api, room_id),
                      timeout=DELIVERY_TIMEOUT, what="matt unlisted in weft")

    # A weft moderator removes a Matrix person: off weft's list, kicked on Matrix.
    owner = stack.weft.create_user(f"owner{uid}", admin=True)
    maria_id = weft_members(alice.api, room_id)[maria.user_id]["id"]
    owner.api.request("DELETE", f"/v1/rooms/{room_id}/users/{maria_id}")
    assert maria.user_id not in weft_members(alice.api, room_id)
    bob_puppet = stack.puppet(bob)
    await await_until(lambda: maria.user_id not in joined_on_matrix_as(stack, matrix_room),
                      timeout=DELIVERY_TIMEOUT, what="maria kicked on Matrix")
    assert bob_puppet in joined_on_matrix_as(stack, matrix_room)
    await await_until(lambda: alice.api.get(f"/v1/rooms/{room_id}")["userCount"] == 2,
                      timeout=DELIVERY_TIMEOUT, what="userCount without the removed Matrix member")

    # The room stops being full: nothing would keep its list of Matrix people true, so it
    # lists none.
    await matt.join(matrix_room)
    await await_until(lambda: matt.user_id in weft_members(alice.api, room_id),
                      timeout=DELIVERY_TIMEOUT, what="matt listed again")
    stack.weft.cli_ok("matrix", "membership", uri, "lazy")
    await await_until(lambda: matt.user_id not in weft_members(alice.api, room_id),
                      timeout=DELIVERY_TIMEOUT, what="matt unlisted when the room became lazy")
    # Lazy: his leave and join no longer touch weft's member list.
    await matt.join(matrix_room)
    assert matt.user_id not in weft_members(alice.api, room_id)


def joined_on_matrix_as(stack, room_id: str) -> set[str]:
    """Who is joined, as the bridge bot sees it (for when no test user is in the room)."""
    from conftest import bot_of
    r = stack.synapse_request("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/joined_members",
                              as_user=bot_of(stack))
    assert r.status_code == 200, r.text
    return set(r.json()["joined"])


async def test_membership_settings_are_checked_and_a_private_room_is_never_synced(stack, uid):
    community = f"mset{uid}"
    stack.weft.create_room(community, "general")
    stack.weft.create_room(community, "staff", private=True)
    bad = stack.weft.cli("matrix", "membership", f"{community}/general", "everyone")
    assert bad.returncode != 0 and "full, lazy, off or default" in bad.output, bad.output
    missing = stack.weft.cli("matrix", "sync-members", f"{community}/nowhere")
    assert missing.returncode != 0 and "no room" in missing.output, missing.output
    private = stack.weft.cli("matrix", "sync-members", f"{community}/staff")
    assert private.returncode != 0 and "only public rooms" in private.output, private.output
    out = stack.weft.cli_ok("matrix", "membership", f"{community}/general", "off")
    assert "membership off" in out, out
    out = stack.weft.cli_ok("matrix", "membership", f"{community}/general", "default")
    assert "membership lazy" in out, out


def join_events(viewer, room_id: str, mxid: str) -> int:
    """How many `m.room.member` events joined `mxid` to the room (from any other state)."""
    import json

    flt = json.dumps({"types": ["m.room.member"], "limit": 1000})
    got = viewer.client_api("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/messages",
                            params={"dir": "b", "limit": 1000, "filter": flt})
    return sum(1 for e in got.get("chunk", [])
               if e.get("state_key") == mxid and e["content"].get("membership") == "join"
               and (e.get("unsigned", {}).get("prev_content") or {}).get("membership") != "join")


async def test_a_sync_cut_off_by_a_crash_resumes_and_joins_nobody_twice(make_stack, uid):
    """The server dies (kill -9) while the homeserver holds its joins; the joins it sent
    still happen, unknown to weft. Restarted, it takes the sync up and finishes it, and the
    command that asked for it, still waiting, reports the end: every member's puppet is in,
    each joined once."""
    import asyncio

    stack = make_stack(proxied=True)
    stack.start()
    community = f"crash{uid}"
    stack.weft.create_room(community, "general")
    uri = f"{community}/general"
    people = [stack.weft.create_user(f"m{i}x{uid}") for i in range(12)]
    for u in people:
        u.api.join(uri)
    maria = await new_matrix_user(stack, f"mc{uid}")
    try:
        matrix_room = await maria.join(stack.alias(community, "general"))
        rule = stack.proxy.hang("POST", r"/_matrix/client/v3/join/", seconds=4)
        asking = asyncio.get_running_loop().run_in_executor(
            None, lambda: stack.weft.cli_ok("matrix", "sync-members", uri, timeout=180))
        await await_until(lambda: stack.proxy.hits.get(rule, 0) >= 4, timeout=DELIVERY_TIMEOUT,
                          what="joins in flight, held by the homeserver")
        stack.weft.kill9()
        stack.proxy.rules.clear()
        await asyncio.sleep(5)  # the held joins reach the homeserver meanwhile
        stack.weft.start()
        out = await asyncio.wait_for(asking, timeout=180)
        assert "12 member(s) in on Matrix" in out, out
        joined = joined_on_matrix(maria, matrix_room)
        for u in people:
            puppet = stack.puppet(u)
            assert puppet in joined, f"{puppet} not in the room"
            assert join_events(maria, matrix_room, puppet) == 1, f"{puppet} joined twice"
    finally:
        await maria.close()


async def test_lazy_puppets_leave_with_their_users_and_off_ones_stay(stack, uid):
    community = f"lazy{uid}"
    lazy_id = stack.weft.create_room(community, "lazy")
    off_id = stack.weft.create_room(community, "off")
    alice = stack.weft.create_user(f"alice{uid}")
    maria = await new_matrix_user(stack, f"ml{uid}")
    stack.weft.cli_ok("matrix", "membership", f"{community}/off", "off")
    rooms = {}
    for name, weft_id in (("lazy", lazy_id), ("off", off_id)):
        alice.api.join(f"{community}/{name}")
        rooms[name] = await maria.join(stack.alias(community, name))
        alice.api.send(weft_id, f"hello {name}")
        await await_until(lambda r=rooms[name]: stack.puppet(alice) in joined_on_matrix(maria, r),
                          timeout=DELIVERY_TIMEOUT, what=f"alice's puppet in {name} (she spoke)")
    for weft_id in (lazy_id, off_id):
        alice.api.request("DELETE", f"/v1/rooms/{weft_id}/users/{alice.id}")
    await await_until(lambda: stack.puppet(alice) not in joined_on_matrix(maria, rooms["lazy"]),
                      timeout=DELIVERY_TIMEOUT, what="the lazy room's puppet leaving with alice")
    assert stack.puppet(alice) in joined_on_matrix(maria, rooms["off"]), "off: membership does not cross"
    # Neither lists Matrix people among weft's members.
    assert maria.user_id not in weft_members(alice.api, lazy_id)
