"""The bridge's Matrix users (puppets and the bot) send from a device of their own, so that
the homeserver keeps their transaction ids in its database, across its restarts (the restart
itself is in test_crash.py): the device is made when a puppet is registered, lazily for a
puppet an older weft registered, again when the homeserver forgot it, and through appservice
login when the registration predates MSC4190.
"""

from __future__ import annotations

import sqlite3

import requests
import yaml

from conftest import MATRIX_PASSWORD, bridge_room
from harness import MatrixUser, Stack, is_edit, live_messages

DEVICE = "WEFT"


def appservice(stack: Stack, method: str, path: str, **kw) -> requests.Response:
    """A client-server API call as the application service (with its as_token)."""
    headers = {"Authorization": f"Bearer {stack.registration['as_token']}"}
    return requests.request(method, f"{stack.synapse.url}/_matrix/client/v3{path}",
                            headers=headers, timeout=15, **kw)


def devices_of(stack: Stack, mxid: str) -> list[str]:
    r = appservice(stack, "GET", "/devices", params={"user_id": mxid})
    assert r.status_code == 200, f"devices of {mxid}: {r.status_code} {r.text}"
    return [d["device_id"] for d in r.json()["devices"]]


def delete_device(stack: Stack, mxid: str, device: str) -> None:
    r = appservice(stack, "DELETE", f"/devices/{device}", params={"user_id": mxid}, json={})
    assert r.status_code == 200, f"deleting {mxid}'s {device}: {r.status_code} {r.text}"
    assert device not in devices_of(stack, mxid)


def recorded_device(stack: Stack, mxid: str) -> str | None:
    with sqlite3.connect(stack.weft.data_dir / "weft.db") as db:
        row = db.execute("SELECT device_id FROM matrix_puppets WHERE mxid = ?",
                         (mxid,)).fetchone()
    return row[0] if row else None


def access_tokens(stack: Stack, mxid: str) -> int:
    """How many access tokens the homeserver holds for `mxid` (from its database)."""
    with sqlite3.connect(stack.synapse.workdir / "homeserver.db") as db:
        return db.execute("SELECT COUNT(*) FROM access_tokens WHERE user_id = ?",
                          (mxid,)).fetchone()[0]


def redacts(e: dict) -> str | None:
    if e.get("type") != "m.room.redaction":
        return None
    return e.get("content", {}).get("redacts") or e.get("redacts")


async def post_and_see(room, user, maria: MatrixUser, text: str) -> tuple[dict, dict]:
    message = user.api.send(room.weft_id, text)
    event = await room.matrix_wait(
        maria, lambda e: not is_edit(e) and e.get("content", {}).get("body") == text,
        f"{text!r} on Matrix")
    return message, event


async def assert_once(room, maria: MatrixUser, text: str) -> None:
    await maria.settle(1.5)
    history = await maria.history(room.matrix_id)
    found = [e for e in live_messages(history) if e["content"].get("body") == text]
    assert len(found) == 1, f"{text!r} is on Matrix {len(found)} times"


async def test_puppets_and_the_bot_send_from_their_devices(room, stack, alice, maria, uid):
    puppet, bot = stack.puppet(alice), f"@weft:{stack.server_name}"
    message, event = await post_and_see(room, alice, maria, f"from a device {uid}")
    assert event["sender"] == puppet
    assert DEVICE in devices_of(stack, puppet)
    assert recorded_device(stack, puppet) == DEVICE
    # Deletes are redacted by the bot, from its own device.
    alice.api.delete(room.weft_id, message["id"])
    await room.matrix_wait(maria, lambda e: redacts(e) == event["event_id"], "the redaction")
    assert DEVICE in devices_of(stack, bot)
    assert recorded_device(stack, bot) == DEVICE
    # MSC4190: devices without logins, so no access token lies around for anyone.
    assert access_tokens(stack, puppet) == 0
    assert access_tokens(stack, bot) == 0


async def test_a_device_the_homeserver_forgot_is_made_again(room, stack, alice, maria, uid):
    puppet = stack.puppet(alice)
    await post_and_see(room, alice, maria, f"before {uid}")
    delete_device(stack, puppet, DEVICE)
    text = f"after the device was deleted {uid}"
    await post_and_see(room, alice, maria, text)
    assert DEVICE in devices_of(stack, puppet)
    await assert_once(room, maria, text)


async def test_a_puppet_from_before_devices_gets_one(room, stack, bob, maria, uid):
    """A puppet that an older weft registered has no device, neither recorded nor on the
    homeserver: its first send makes one."""
    puppet = stack.puppet(bob)
    await post_and_see(room, bob, maria, f"registered {uid}")
    stack.weft.stop()
    delete_device(stack, puppet, DEVICE)
    with sqlite3.connect(stack.weft.data_dir / "weft.db") as db:
        db.execute("UPDATE matrix_puppets SET device_id = NULL WHERE mxid = ?", (puppet,))
    stack.weft.start()
    text = f"first send with a device {uid}"
    await post_and_see(room, bob, maria, text)
    assert DEVICE in devices_of(stack, puppet)
    assert recorded_device(stack, puppet) == DEVICE
    await assert_once(room, maria, text)


async def test_a_registration_without_msc4190_logs_devices_in(make_stack):
    """A registration written before weft asked for MSC4190: weft warns, and makes the devices
    through appservice login instead."""
    s = make_stack()
    registration = yaml.safe_load(s.registration_path.read_text())
    assert registration.pop("io.element.msc4190") is True
    s.registration_path.write_text(yaml.safe_dump(registration, sort_keys=False))
    s.start()
    carol = s.weft.create_user("carol", display_name="Carol Weft")
    user_id = s.synapse.register_user("mara", MATRIX_PASSWORD)
    mara = await MatrixUser.login(s.synapse.url, user_id, MATRIX_PASSWORD, "Mara Matrix")
    try:
        room = await bridge_room(s, "no-msc4190", [carol], [mara])
        message, event = await post_and_see(room, carol, mara, "sent from a logged-in device")
        carol.api.delete(room.weft_id, message["id"])
        await room.matrix_wait(mara, lambda e: redacts(e) == event["event_id"], "the redaction")
        for mxid in (s.puppet(carol), f"@weft:{s.server_name}"):
            assert DEVICE in devices_of(s, mxid), mxid
            assert recorded_device(s, mxid) == DEVICE, mxid
            assert access_tokens(s, mxid) == 1, f"{mxid} logged in once"
        log = s.weft.process.log_path.read_text()
        assert "io.element.msc4190" in log and "appservice login" in log, \
            "weft warns about the older registration"
    finally:
        await mara.close()
