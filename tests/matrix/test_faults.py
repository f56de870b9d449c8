"""Transient failures are retried, never acknowledged and dropped: a media download that fails
once arrives when the homeserver sends the transaction again; a puppet that is not in the
room any more (it left, or was kicked) joins again and its message arrives."""

from __future__ import annotations

from conftest import MATRIX_PASSWORD, bridge_room
from harness import MatrixUser, await_until, is_message, tiny_png


async def test_media_download_that_fails_once_arrives(make_stack, uid):
    stack = make_stack(proxied=True)
    stack.start()
    alice = stack.weft.create_user(f"alice{uid}")
    user_id = stack.synapse.register_user(f"mira{uid}", MATRIX_PASSWORD)
    mira = await MatrixUser.login(stack.synapse.url, user_id, MATRIX_PASSWORD, "Mira")
    try:
        room = await bridge_room(stack, f"flaky-media-{uid}", [alice], [mira])
        png = tiny_png(5, 3, (1, 2, 3))
        mxc = await mira.upload(png, "image/png", f"flaky-{uid}.png")
        rule = stack.proxy.fail("GET", r"/_matrix/client/v1/media/download/", 502, times=1)
        await mira.send(room.matrix_id, {
            "msgtype": "m.image", "body": f"flaky-{uid}.png", "url": mxc,
            "info": {"mimetype": "image/png", "size": len(png)},
        })
        message = await room.weft_wait(
            lambda m: any(a.get("name") == f"flaky-{uid}.png" for a in m.get("attachments", [])),
            "the image, once the homeserver sent its transaction again", timeout=60,
            api=alice.api)
        assert stack.proxy.hits.get(rule) == 1, "the download never failed: the test proved nothing"
        assert alice.api.download(message["attachments"][0]["url"]) == png
        assert stack.weft.cli_ok("matrix", "failures") == "", "a retried download was recorded as a failure"
    finally:
        await mira.close()


async def test_puppet_that_left_rejoins_and_the_message_arrives(room, stack, alice, maria, uid):
    alice.api.send(room.weft_id, f"first {uid}")
    await room.matrix_wait(maria, lambda e: is_message(e) and e["content"]["body"] == f"first {uid}",
                           "alice's first message")
    puppet = stack.puppet(alice)
    # The puppet leaves behind weft's back (as a kick would make it): weft still believes it
    # is in the room, and the homeserver refuses its next message with 403.
    r = stack.synapse_request("POST", f"/_matrix/client/v3/rooms/{room.matrix_id}/leave",
                              as_user=puppet, json={})
    assert r.status_code == 200, r.text
    alice.api.send(room.weft_id, f"second {uid}")
    await room.matrix_wait(maria, lambda e: is_message(e) and e["content"]["body"] == f"second {uid}",
                           "alice's message after her puppet left", timeout=30)

    async def joined():
        member = await maria.room_state(room.matrix_id, "m.room.member", puppet)
        return member and member.get("membership") == "join"

    await await_until(joined, what="the puppet to be back in the room")


async def test_a_file_larger_than_it_claims_is_refused_while_it_streams(make_stack, uid):
    """The size a Matrix client declares is not trusted: weft stops reading a download once it
    passes its upload limit, and tells the sender, instead of buffering the whole file."""
    stack = make_stack()
    stack.weft.extra_config = "max_upload_mb = 1"
    stack.weft.write_config()
    stack.start()
    alice = stack.weft.create_user(f"alice{uid}")
    user_id = stack.synapse.register_user(f"liar{uid}", MATRIX_PASSWORD)
    liar = await MatrixUser.login(stack.synapse.url, user_id, MATRIX_PASSWORD, "Liar")
    try:
        room = await bridge_room(stack, f"big-file-{uid}", [alice], [liar])
        big = b"\0" * (3 * 1024 * 1024)
        mxc = await liar.upload(big, "application/octet-stream", f"big-{uid}.bin")
        sent = await liar.send(room.matrix_id, {
            "msgtype": "m.file", "body": f"big-{uid}.bin", "url": mxc,
            "info": {"mimetype": "application/octet-stream", "size": 100},
        })
        notice = await room.matrix_wait(
            liar, lambda e: is_message(e, "m.notice")
            and e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == sent,
            "the bot's notice about the file")
        assert "limit" in notice["content"]["body"], notice
        assert not any(a.get("name") == f"big-{uid}.bin"
                       for m in room.weft_history(alice.api) for a in m.get("attachments", []))
    finally:
        await liar.close()


async def test_new_senders_wait_for_no_profile_look_up(make_stack, uid):
    """The homeserver waits for weft's answer to a transaction: a sender weft has not met is
    posted under their Matrix ID at once, and their profile is looked up in the background.
    Here the homeserver holds every profile request for half a minute; the transaction full of
    new senders must be answered long before."""
    import time

    stack = make_stack(proxied=True)
    stack.start()
    alice = stack.weft.create_user(f"alice{uid}")
    user_id = stack.synapse.register_user(f"host{uid}", MATRIX_PASSWORD)
    host = await MatrixUser.login(stack.synapse.url, user_id, MATRIX_PASSWORD, "Host")
    try:
        room = await bridge_room(stack, f"new-senders-{uid}", [alice], [host])
        rule = stack.proxy.hang("GET", r"/_matrix/client/v3/profile/", seconds=30)
        senders = [f"@new{i}x{uid}:{stack.server_name}" for i in range(40)]
        events = [{"type": "m.room.message", "room_id": room.matrix_id, "sender": s,
                   "event_id": f"$new-{uid}-{i}", "origin_server_ts": 1,
                   "content": {"msgtype": "m.text", "body": f"hello {i} {uid}"}}
                  for i, s in enumerate(senders)]
        started = time.monotonic()
        r = stack.appservice_request("PUT", f"/transactions/new-senders-{uid}",
                                     json={"events": events}, timeout=60)
        answered_in = time.monotonic() - started
        assert r.status_code == 200, r.text
        assert answered_in < 10, f"the transaction waited {answered_in:.1f} s for the homeserver"
        texts = {m["text"]: m for m in room.weft_history(alice.api)}
        first = texts[f"hello 0 {uid}"]
        assert first["virtualUser"]["externalId"] == senders[0]
        await await_until(lambda: stack.proxy.hits.get(rule, 0) > 0, timeout=10,
                          what="the profile look-ups, made in the background")
    finally:
        await host.close()
