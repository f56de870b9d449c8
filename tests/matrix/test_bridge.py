"""Every mapping of the bridge, in both directions, through real parts: weft's REST API on one
side and a real Matrix client (matrix-nio) talking to a real Synapse on the other.

Each test gets its own bridged room (see the `room` fixture). "weft → Matrix" tests act through
weft's API and check what the Matrix client receives via /sync; "Matrix → weft" tests act with
the Matrix client and check what weft's API shows. Every test also checks that nothing echoed
back to the side it came from.
"""

from __future__ import annotations

import asyncio

from conftest import DELIVERY_TIMEOUT, BridgedRoom
from harness import (
    EphemeralWatch,
    MatrixUser,
    WeftUser,
    await_until,
    is_edit,
    is_message,
    live_messages,
    relates_to,
    tiny_png,
)

HTML = "org.matrix.custom.html"
SETTLE = 1.5  # seconds to keep watching for echoes and duplicates


# --------------------------------------------------------------------------------------------
# Predicates and checks


def body_is(text: str, msgtype: str | None = None):
    """A Matrix message (not an edit) whose body is exactly `text`."""
    def match(e: dict) -> bool:
        return is_message(e, msgtype) and not is_edit(e) and e["content"].get("body") == text
    return match


def body_contains(text: str):
    def match(e: dict) -> bool:
        return is_message(e) and not is_edit(e) and text in e["content"].get("body", "")
    return match


def text_is(text: str):
    return lambda m: m.get("text") == text and not m.get("deleted")


def text_contains(text: str):
    return lambda m: text in (m.get("text") or "") and not m.get("deleted")


async def assert_once_on_matrix(user: MatrixUser, room: BridgedRoom, match, what: str) -> None:
    """After a settling period, exactly one live Matrix message of the room matches."""
    await user.settle(SETTLE)
    found = [e for e in live_messages(user.events(room.matrix_id)) if match(e)]
    assert len(found) == 1, f"{what}: expected exactly one Matrix message, saw {len(found)}: {found}"


def assert_once_on_weft(room: BridgedRoom, match, what: str) -> None:
    found = [m for m in room.weft_history() if match(m)]
    assert len(found) == 1, f"{what}: expected exactly one weft message, saw {len(found)}: {found}"


def assert_virtual_user(message: dict, user: MatrixUser, display_name: str) -> None:
    vu = message.get("virtualUser")
    assert vu, f"message has no virtualUser: {message}"
    assert vu.get("type") == "matrix"
    assert vu.get("externalId") == user.user_id
    assert vu.get("displayName") == display_name


async def post_and_see_on_matrix(room: BridgedRoom, viewer: MatrixUser, author: WeftUser,
                                 text: str) -> tuple[dict, dict]:
    """Posts `text` as `author` through weft; returns the weft message and the Matrix event."""
    message = author.api.send(room.weft_id, text)
    event = await room.matrix_wait(viewer, body_contains(text), f"weft message {text!r}")
    return message, event


async def send_and_see_on_weft(room: BridgedRoom, sender: MatrixUser, text: str) -> tuple[str, dict]:
    """Sends `text` from Matrix; returns the Matrix event id and the weft message."""
    event_id = await sender.send_text(room.matrix_id, text)
    message = await room.weft_wait(text_is(text), f"Matrix message {text!r}")
    return event_id, message


# --------------------------------------------------------------------------------------------
# Plain text


async def test_text_weft_to_matrix(room, stack, alice, maria, uid):
    text = f"hello from weft {uid}"
    alice.api.send(room.weft_id, text)
    event = await room.matrix_wait(maria, body_is(text), "the weft message")
    puppet = stack.puppet(alice)
    assert event["sender"] == puppet
    assert event["content"]["msgtype"] == "m.text"
    # Plain text goes as plain text, as Element sends it: no HTML that repeats the body.
    assert "formatted_body" not in event["content"], event["content"]
    assert "format" not in event["content"], event["content"]

    async def puppet_profile_in_room():
        member = await maria.room_state(room.matrix_id, "m.room.member", puppet)
        assert member and member.get("membership") == "join", member
        assert member.get("displayname") == alice.display_name, member
        return True

    await await_until(puppet_profile_in_room, timeout=DELIVERY_TIMEOUT,
                      what="the puppet's display name in the room")
    await assert_once_on_matrix(maria, room, body_is(text), "weft message on Matrix")
    assert_once_on_weft(room, text_is(text), "weft message back in weft (echo)")


async def test_text_matrix_to_weft(room, maria, uid):
    text = f"hello from matrix {uid}"
    await maria.send_text(room.matrix_id, text)
    message = await room.weft_wait(text_is(text), "the Matrix message")
    assert_virtual_user(message, maria, "Maria Matrix")
    assert message["fromUser"].get("virtual") is True
    assert message["fromUser"].get("badge") == "matrix"
    assert not message.get("status")
    await assert_once_on_matrix(maria, room, body_is(text), "Matrix message (echo via a puppet)")
    assert_once_on_weft(room, text_is(text), "Matrix message in weft")


# --------------------------------------------------------------------------------------------
# Markdown <-> HTML


async def test_markdown_weft_to_matrix(room, alice, maria, uid):
    text = (f"**bold** _italic_ `code` and [a link](https://example.org/{uid})\n\n"
            f"- one\n- two {uid}")
    alice.api.send(room.weft_id, text)
    event = await room.matrix_wait(maria, body_contains(uid), "the Markdown message")
    c = event["content"]
    assert c.get("format") == HTML, c
    html = c["formatted_body"]
    assert "<strong>bold</strong>" in html
    assert "<em>italic</em>" in html
    assert "<code>code</code>" in html
    assert f'href="https://example.org/{uid}"' in html
    assert "<li>one</li>" in html
    assert "bold" in c["body"] and "italic" in c["body"] and "<strong>" not in c["body"]
    await assert_once_on_matrix(maria, room, body_contains(uid), "Markdown message")


async def test_markdown_matrix_to_weft(room, maria, uid):
    # The plain body deliberately lacks the formatting: weft must take it from the HTML.
    body = f"bold, italic, code and link {uid}"
    html = (f"<strong>bold</strong>, <em>italic</em>, <code>code</code> and "
            f'<a href="https://example.org/{uid}">link</a> {uid}<script>alert(1)</script>')
    await maria.send(room.matrix_id, {"msgtype": "m.text", "body": body,
                                      "format": HTML, "formatted_body": html})
    message = await room.weft_wait(text_contains(uid), "the formatted Matrix message")
    text = message["text"]
    assert "**bold**" in text or "__bold__" in text, text
    assert "`code`" in text, text
    assert f"](https://example.org/{uid})" in text, text
    assert "<strong>" not in text and "<em>" not in text, f"HTML left in the Markdown: {text}"
    assert "<strong>bold</strong>" in message["html"]
    assert "<em>italic</em>" in message["html"]
    assert "<code>code</code>" in message["html"]
    assert f'href="https://example.org/{uid}"' in message["html"]
    assert "<script" not in message["html"] and "<script" not in text
    assert_once_on_weft(room, text_contains(uid), "formatted Matrix message")
    await assert_once_on_matrix(maria, room, body_contains(uid), "formatted message (echo)")


# --------------------------------------------------------------------------------------------
# Mentions <-> pills and m.mentions


async def test_mention_weft_to_matrix(room, stack, alice, bob, maria, uid):
    text = f"hey @{bob.username} have a look {uid}"
    alice.api.send(room.weft_id, text)
    event = await room.matrix_wait(maria, body_contains(uid), "the message with a mention")
    c = event["content"]
    bob_mxid = stack.puppet(bob)
    assert c.get("format") == HTML
    assert f'href="https://matrix.to/#/{bob_mxid}"' in c["formatted_body"], c["formatted_body"]
    assert set(c.get("m.mentions", {}).get("user_ids", [])) == {bob_mxid}, c.get("m.mentions")


async def test_mention_of_a_matrix_user_weft_to_matrix_and_back(room, alice, maria, matt, uid):
    # Maria is on Matrix: weft users mention her by her Matrix ID.
    alice.api.send(room.weft_id, f"thanks @{maria.user_id[1:]} {uid}")
    event = await room.matrix_wait(matt, body_contains(uid), "the message mentioning a Matrix user")
    c = event["content"]
    assert f'href="https://matrix.to/#/{maria.user_id}"' in c["formatted_body"], c["formatted_body"]
    assert set(c.get("m.mentions", {}).get("user_ids", [])) == {maria.user_id}, c.get("m.mentions")
    # Matt pills Maria from Matrix: weft stores the same mention, not her display name.
    back = f"back {uid}"
    await matt.send(room.matrix_id, {
        "msgtype": "m.text",
        "body": f"Maria: {back}",
        "format": HTML,
        "formatted_body": f'<a href="https://matrix.to/#/{maria.user_id}">Maria</a>: {back}',
        "m.mentions": {"user_ids": [maria.user_id]},
    })
    message = await room.weft_wait(text_contains(back), "the Matrix message with a Matrix user's pill")
    assert message["text"].startswith(maria.user_id), message["text"]
    names = [m.get("screenName") for m in message.get("mentions", [])]
    assert maria.user_id[1:] in names, message.get("mentions")


async def test_mention_matrix_to_weft(room, stack, alice, maria, uid):
    puppet = stack.puppet(alice)
    await maria.send(room.matrix_id, {
        "msgtype": "m.text",
        "body": f"{alice.display_name}: ping {uid}",
        "format": HTML,
        "formatted_body": f'<a href="https://matrix.to/#/{puppet}">{alice.display_name}</a>: ping {uid}',
        "m.mentions": {"user_ids": [puppet]},
    })
    message = await room.weft_wait(text_contains(uid), "the Matrix message with a pill")
    assert f"@{alice.username}" in message["text"], message["text"]
    ids = [m.get("userId") for m in message.get("mentions", [])]
    assert alice.id in ids, message.get("mentions")
    unread = alice.api.unread(room.weft_id)
    assert message["id"] in unread.get("mention", []), unread


# --------------------------------------------------------------------------------------------
# /me <-> m.emote


async def test_emote_weft_to_matrix(room, stack, alice, maria, uid):
    alice.api.send(room.weft_id, f"/me waves {uid}")
    event = await room.matrix_wait(maria, body_contains(uid), "the /me message")
    assert event["content"]["msgtype"] == "m.emote", event["content"]
    assert event["content"]["body"] == f"waves {uid}"
    assert event["sender"] == stack.puppet(alice)
    await assert_once_on_matrix(maria, room, body_contains(uid), "emote")


async def test_emote_matrix_to_weft(room, maria, uid):
    await maria.send(room.matrix_id, {"msgtype": "m.emote", "body": f"dances {uid}"})
    message = await room.weft_wait(text_contains(uid), "the m.emote")
    assert message["status"] is True, message
    assert message["text"] == f"dances {uid}"
    assert_virtual_user(message, maria, "Maria Matrix")
    await assert_once_on_matrix(maria, room, body_contains(uid), "emote (echo)")


# --------------------------------------------------------------------------------------------
# Edits <-> m.replace


async def test_edit_weft_to_matrix(room, stack, alice, maria, uid):
    message = alice.api.send(room.weft_id, f"frist post {uid}")
    original = await room.matrix_wait(maria, body_is(f"frist post {uid}"), "the original")
    alice.api.edit(room.weft_id, message["id"], f"first post {uid}")
    edit = await room.matrix_wait(
        maria,
        lambda e: is_edit(e) and relates_to(e).get("event_id") == original["event_id"],
        "the m.replace edit",
    )
    assert edit["sender"] == stack.puppet(alice)
    new = edit["content"]["m.new_content"]
    assert new["body"] == f"first post {uid}"
    assert new["msgtype"] == "m.text"
    assert f"first post {uid}" in edit["content"]["body"], "no fallback body for old clients"
    await maria.settle(SETTLE)
    assert len([e for e in live_messages(maria.events(room.matrix_id))
                if uid in e["content"].get("body", "")]) == 1, "the edit became a new message"
    edits = [e for e in maria.events(room.matrix_id)
             if is_edit(e) and relates_to(e).get("event_id") == original["event_id"]]
    assert len(edits) == 1, edits
    assert_once_on_weft(room, text_is(f"first post {uid}"), "edited message in weft")


async def test_an_edit_that_adds_a_mention_notifies_only_the_newly_mentioned(
        room, alice, maria, matt, uid):
    # The review's case: the edit's top-level m.mentions (what push rules read) was empty, so
    # someone mentioned by an edit was never notified.
    message = alice.api.send(room.weft_id, f"thanks @{maria.user_id[1:]} {uid}")
    original = await room.matrix_wait(matt, body_contains(uid), "the original")
    assert original["content"]["m.mentions"]["user_ids"] == [maria.user_id]

    def edit_saying(text):
        return lambda e: (is_edit(e) and relates_to(e).get("event_id") == original["event_id"]
                          and e["content"]["m.new_content"]["body"] == text)

    first = f"thanks @{maria.user_id[1:]} and @{matt.user_id[1:]} {uid}"
    alice.api.edit(room.weft_id, message["id"], first)
    edit = await room.matrix_wait(matt, edit_saying(first), "the edit adding Matt")
    assert edit["content"]["m.mentions"]["user_ids"] == [matt.user_id], \
        "only Matt is newly mentioned"
    assert set(edit["content"]["m.new_content"]["m.mentions"]["user_ids"]) == {
        maria.user_id, matt.user_id}, "the new content mentions both"

    second = f"thanks again @{maria.user_id[1:]} and @{matt.user_id[1:]} {uid}"
    alice.api.edit(room.weft_id, message["id"], second)
    edit = await room.matrix_wait(matt, edit_saying(second), "the second edit")
    assert edit["content"]["m.mentions"].get("user_ids", []) == [], "nobody is notified twice"


async def test_edit_matrix_to_weft(room, maria, uid):
    original, message = await send_and_see_on_weft(room, maria, f"teh edit {uid}")
    await maria.send(room.matrix_id, {
        "msgtype": "m.text",
        "body": f"* the edit {uid}",
        "m.new_content": {"msgtype": "m.text", "body": f"the edit {uid}"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    })
    edited = await room.weft_wait(
        lambda m: m["id"] == message["id"] and m["text"] == f"the edit {uid}", "the edit")
    assert edited["editedAt"], edited
    matching = [m for m in room.weft_history() if uid in (m.get("text") or "")]
    assert [m["id"] for m in matching] == [message["id"]], f"edit posted as new message: {matching}"
    await maria.settle(SETTLE)
    edits = [e for e in maria.events(room.matrix_id)
             if is_edit(e) and relates_to(e).get("event_id") == original]
    assert len(edits) == 1, f"the edit echoed back to Matrix: {edits}"


# --------------------------------------------------------------------------------------------
# Threads <-> m.thread


async def test_thread_weft_to_matrix(room, stack, bob, maria, uid):
    # The root comes from Matrix, the reply from weft: both id mappings are exercised.
    root_event, root = await send_and_see_on_weft(room, maria, f"thread root {uid}")
    bob.api.send(room.weft_id, f"reply in thread {uid}", parent_id=root["id"])
    reply = await room.matrix_wait(maria, body_contains(f"reply in thread {uid}"),
                                   "the thread reply")
    rel = relates_to(reply)
    assert rel.get("rel_type") == "m.thread", rel
    assert rel.get("event_id") == root_event
    assert rel.get("is_falling_back") is True, rel
    assert rel.get("m.in_reply_to", {}).get("event_id"), rel
    assert reply["sender"] == stack.puppet(bob)
    await assert_once_on_matrix(maria, room, body_contains(f"reply in thread {uid}"), "reply")
    thread = bob.api.thread(room.weft_id, root["id"])
    assert [m["text"] for m in thread] == [f"reply in thread {uid}"]


async def test_thread_matrix_to_weft(room, alice, maria, uid):
    # The root comes from weft, the thread reply from Matrix.
    root, root_event = await post_and_see_on_matrix(room, maria, alice, f"weft root {uid}")
    await maria.send(room.matrix_id, {
        "msgtype": "m.text",
        "body": f"matrix thread reply {uid}",
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": root_event["event_id"],
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": root_event["event_id"]},
        },
    })
    reply = await room.weft_wait(text_is(f"matrix thread reply {uid}"), "the thread reply")
    assert reply.get("parentId") == root["id"], reply
    head = alice.api.message(room.weft_id, root["id"])
    assert head["threadMessageCount"] == 1, head
    assert [m["id"] for m in alice.api.thread(room.weft_id, root["id"])] == [reply["id"]]
    main_feed = alice.api.messages(room.weft_id, limit=100)
    assert reply["id"] not in [m["id"] for m in main_feed], "thread reply leaked into the feed"
    await assert_once_on_matrix(maria, room, body_contains(f"matrix thread reply {uid}"),
                                "thread reply (echo)")


def reply_content(room_id: str, parent: dict, text: str) -> dict:
    """A plain (non-thread) Matrix reply with the classic fallback quote, as clients send it."""
    parent_body = parent["content"].get("body", "")
    quoted = "\n".join(f"> {line}" for line in
                       f"<{parent['sender']}> {parent_body}".splitlines())
    return {
        "msgtype": "m.text",
        "body": f"{quoted}\n\n{text}",
        "format": HTML,
        "formatted_body": (
            f'<mx-reply><blockquote><a href="https://matrix.to/#/{room_id}/'
            f'{parent["event_id"]}">In reply to</a> <a href="https://matrix.to/#/'
            f'{parent["sender"]}">{parent["sender"]}</a><br>{parent_body}</blockquote>'
            f"</mx-reply>{text}"
        ),
        "m.relates_to": {"m.in_reply_to": {"event_id": parent["event_id"]}},
    }


async def test_plain_reply_matrix_to_weft_starts_thread(room, alice, matt, uid):
    root, root_event = await post_and_see_on_matrix(room, matt, alice, f"answer me {uid}")
    await matt.send(room.matrix_id, reply_content(room.matrix_id, root_event, f"plain reply {uid}"))
    reply = await room.weft_wait(text_contains(f"plain reply {uid}"), "the plain reply")
    assert reply["text"] == f"plain reply {uid}", "reply fallback not stripped: " + reply["text"]
    assert reply.get("parentId") == root["id"], reply


async def test_plain_reply_to_thread_reply_matrix_to_weft(room, alice, maria, matt, uid):
    root, root_event = await post_and_see_on_matrix(room, matt, alice, f"thread head {uid}")
    first = await maria.send(room.matrix_id, {
        "msgtype": "m.text",
        "body": f"first in thread {uid}",
        "m.relates_to": {"rel_type": "m.thread", "event_id": root_event["event_id"],
                         "is_falling_back": True,
                         "m.in_reply_to": {"event_id": root_event["event_id"]}},
    })
    await room.weft_wait(text_is(f"first in thread {uid}"), "the first thread reply")
    first_event = await room.matrix_wait(matt, lambda e: e.get("event_id") == first,
                                         "maria's thread reply")
    # matt answers maria's thread reply with a plain reply (no thread relation).
    await matt.send(room.matrix_id, reply_content(room.matrix_id, first_event, f"answer in thread {uid}"))
    reply = await room.weft_wait(text_contains(f"answer in thread {uid}"), "the plain reply")
    assert reply["text"] == f"answer in thread {uid}", reply["text"]
    assert reply.get("parentId") == root["id"], "a reply should join the thread of its target"
    assert len(alice.api.thread(room.weft_id, root["id"])) == 2


# --------------------------------------------------------------------------------------------
# Deletes <-> redactions


def redacts(e: dict) -> str | None:
    """The event a redaction redacts (top level before room v11, in content from v11 on)."""
    if e.get("type") != "m.room.redaction":
        return None
    return e.get("content", {}).get("redacts") or e.get("redacts")


async def test_delete_weft_to_matrix(room, stack, alice, maria, uid):
    message, event = await post_and_see_on_matrix(room, maria, alice, f"delete me {uid}")
    alice.api.delete(room.weft_id, message["id"])
    redaction = await room.matrix_wait(maria, lambda e: redacts(e) == event["event_id"],
                                       "the redaction")
    assert redaction["sender"] in (stack.puppet(alice), f"@weft:{stack.server_name}")
    history = await maria.history(room.matrix_id)
    original = next(e for e in history if e.get("event_id") == event["event_id"])
    assert not original.get("content"), f"the event was not redacted: {original}"
    assert not [m for m in room.weft_history() if text_contains(uid)(m)]


async def test_delete_matrix_to_weft(room, alice, maria, uid):
    event_id, message = await send_and_see_on_weft(room, maria, f"delete me too {uid}")
    await maria.redact(room.matrix_id, event_id, reason="test")

    def gone():
        m = alice.api.message(room.weft_id, message["id"])
        return m is None or m.get("deleted")

    await await_until(gone, timeout=DELIVERY_TIMEOUT, what="the weft message to be deleted")
    assert not [m for m in room.weft_history() if text_contains(uid)(m)]
    await maria.settle(SETTLE)
    assert len([e for e in maria.events(room.matrix_id) if redacts(e) == event_id]) == 1


# --------------------------------------------------------------------------------------------
# Files <-> m.image / m.file


async def test_file_weft_to_matrix(room, stack, alice, maria, uid):
    png = tiny_png(3, 2)
    alice.api.upload(room.weft_id, f"pixel-{uid}.png", png, "image/png")
    image = await room.matrix_wait(
        maria, lambda e: is_message(e, "m.image") and uid in e["content"].get("body", ""),
        "the m.image")
    c = image["content"]
    assert image["sender"] == stack.puppet(alice)
    assert c["url"].startswith("mxc://"), c
    assert c.get("info", {}).get("mimetype") == "image/png", c
    assert c.get("info", {}).get("size") == len(png), c
    assert maria.download(c["url"]) == png

    notes = f"some notes {uid}\n".encode() * 20
    alice.api.upload(room.weft_id, f"notes-{uid}.txt", notes, "text/plain")
    file_event = await room.matrix_wait(
        maria, lambda e: is_message(e, "m.file") and f"notes-{uid}" in e["content"].get("body", ""),
        "the m.file")
    fc = file_event["content"]
    assert fc.get("info", {}).get("mimetype", "").startswith("text/plain"), fc
    assert fc.get("info", {}).get("size") == len(notes), fc
    assert maria.download(fc["url"]) == notes
    await assert_once_on_matrix(
        maria, room, lambda e: is_message(e, "m.image") and uid in e["content"].get("body", ""),
        "image")


async def test_file_matrix_to_weft(room, alice, maria, uid):
    png = tiny_png(4, 4, (10, 200, 10))
    mxc = await maria.upload(png, "image/png", f"dot-{uid}.png")
    await maria.send(room.matrix_id, {
        "msgtype": "m.image", "body": f"dot-{uid}.png", "url": mxc,
        "info": {"mimetype": "image/png", "size": len(png), "w": 4, "h": 4},
    })
    pdf = b"%PDF-1.4\n% weft end-to-end test\n" + uid.encode() + b"\n%%EOF\n"
    mxc_pdf = await maria.upload(pdf, "application/pdf", f"report-{uid}.pdf")
    await maria.send(room.matrix_id, {
        "msgtype": "m.file", "body": f"report-{uid}.pdf", "url": mxc_pdf,
        "info": {"mimetype": "application/pdf", "size": len(pdf)},
    })

    def with_attachment(name):
        return lambda m: any(a.get("name") == name for a in m.get("attachments", []))

    image_msg = await room.weft_wait(with_attachment(f"dot-{uid}.png"), "the image attachment")
    a = image_msg["attachments"][0]
    assert a["mimeType"] == "image/png" and a["size"] == len(png), a
    assert alice.api.download(a["url"]) == png
    assert_virtual_user(image_msg, maria, "Maria Matrix")

    pdf_msg = await room.weft_wait(with_attachment(f"report-{uid}.pdf"), "the PDF attachment")
    p = pdf_msg["attachments"][0]
    assert p["mimeType"] == "application/pdf" and p["size"] == len(pdf), p
    assert alice.api.download(p["url"]) == pdf
    await maria.settle(SETTLE)
    images = [e for e in maria.events(room.matrix_id) if is_message(e, "m.image")]
    assert len(images) == 1, f"the image echoed back to Matrix: {images}"


# --------------------------------------------------------------------------------------------
# Reactions <-> m.annotation


def annotation(e: dict, event_id: str, key: str) -> bool:
    rel = relates_to(e)
    return (e.get("type") == "m.reaction" and rel.get("rel_type") == "m.annotation"
            and rel.get("event_id") == event_id and rel.get("key") == key)


async def test_reaction_weft_to_matrix(room, stack, alice, maria, uid):
    event_id, message = await send_and_see_on_weft(room, maria, f"react to me {uid}")
    alice.api.react(room.weft_id, message["id"], "👍")
    reaction = await room.matrix_wait(maria, lambda e: annotation(e, event_id, "👍"),
                                      "the m.reaction")
    assert reaction["sender"] == stack.puppet(alice)
    alice.api.unreact(room.weft_id, message["id"], "👍")
    await room.matrix_wait(maria, lambda e: redacts(e) == reaction["event_id"],
                           "the reaction's redaction")
    await maria.settle(SETTLE)
    assert len([e for e in maria.events(room.matrix_id) if annotation(e, event_id, "👍")]) == 1
    assert alice.api.message(room.weft_id, message["id"])["reactions"] == []


async def test_reaction_matrix_to_weft(room, alice, maria, uid):
    message, event = await post_and_see_on_matrix(room, maria, alice, f"celebrate {uid}")
    reaction_id = await maria.react(room.matrix_id, event["event_id"], "🎉")

    def reactions():
        return alice.api.message(room.weft_id, message["id"])["reactions"]

    await await_until(lambda: any(r["emoji"] == "🎉" and r["count"] == 1 for r in reactions()),
                      timeout=DELIVERY_TIMEOUT, what="the reaction in weft")
    await maria.settle(SETTLE)
    assert [r for r in reactions() if r["emoji"] == "🎉"][0]["count"] == 1
    assert len([e for e in maria.events(room.matrix_id)
                if annotation(e, event["event_id"], "🎉")]) == 1, "the reaction echoed back"
    await maria.redact(room.matrix_id, reaction_id)
    await await_until(lambda: not any(r["emoji"] == "🎉" for r in reactions()),
                      timeout=DELIVERY_TIMEOUT, what="the reaction to be removed in weft")


# --------------------------------------------------------------------------------------------
# No echo under concurrency


async def test_no_echo_two_way_burst(room, alice, maria, uid):
    n = 15
    weft_texts = [f"w{i:02d} {uid}" for i in range(n)]
    matrix_texts = [f"m{i:02d} {uid}" for i in range(n)]

    async def from_weft():
        for t in weft_texts:
            await asyncio.to_thread(alice.api.send, room.weft_id, t)

    async def from_matrix():
        for t in matrix_texts:
            await maria.send_text(room.matrix_id, t)

    await asyncio.gather(from_weft(), from_matrix())
    everything = set(weft_texts) | set(matrix_texts)

    await await_until(
        lambda: everything <= {m["text"] for m in room.weft_history()},
        timeout=DELIVERY_TIMEOUT * 2, what="all messages in weft")
    await room.matrix_wait(maria, body_is(weft_texts[-1]), "the last weft message",
                           timeout=DELIVERY_TIMEOUT * 2)
    await maria.settle(SETTLE * 2)
    history = await maria.history(room.matrix_id)
    matrix_bodies = [e["content"]["body"] for e in live_messages(history)
                     if uid in e["content"].get("body", "")]
    weft_bodies = [m["text"] for m in room.weft_history() if uid in (m.get("text") or "")]
    for side, bodies in (("Matrix", matrix_bodies), ("weft", weft_bodies)):
        assert sorted(bodies) == sorted(everything), f"{side} has duplicates or gaps: {bodies}"
        # Each origin's messages keep their order on both sides.
        assert [b for b in bodies if b.startswith("w")] == weft_texts, side
        assert [b for b in bodies if b.startswith("m")] == matrix_texts, side


# --------------------------------------------------------------------------------------------
# Typing notifications


class TypingWatch:
    """Who a room's `m.typing` notifications have shown typing, from a watch of its own."""

    def __init__(self, stack, viewer: MatrixUser, matrix_room: str):
        self.stream = EphemeralWatch(stack.synapse.url, viewer, matrix_room, "m.typing")
        self.stream.poll(0)  # who was typing before is not what a test waits for
        self.typing: set[str] = set()

    def poll(self) -> set[str]:
        for e in self.stream.poll():
            self.typing.update(e.get("content", {}).get("user_ids", []))
        return self.typing


async def test_typing_weft_to_matrix(room, stack, alice, maria):
    puppet = stack.puppet(alice)
    watch = TypingWatch(stack, maria, room.matrix_id)
    alice.api.post(f"/v1/rooms/{room.weft_id}/typing", expect=(200, 204))
    await await_until(lambda: puppet in watch.poll(), timeout=DELIVERY_TIMEOUT,
                      what="the weft user's puppet shown typing on Matrix")


async def test_typing_matrix_to_weft(room, stack, alice, maria, uid):
    import queue
    import threading

    import requests

    # Weft meets Maria through a message first (typing alone never creates a virtual user).
    await maria.send(room.matrix_id, {"msgtype": "m.text", "body": f"hello {uid}"})
    await room.weft_wait(text_contains(uid), "Maria's first message")
    lines: queue.Queue[str] = queue.Queue()
    stream = requests.get(f"{stack.weft.url}/stream/v1/rooms/{room.weft_id}/events",
                          headers={"Authorization": f"Bearer {alice.token}"}, stream=True,
                          timeout=(5, 2))

    def read() -> None:
        try:
            for line in stream.iter_lines():
                if line.strip():
                    lines.put(line.decode())
        except (requests.RequestException, AttributeError, ValueError):
            pass  # the test closed the stream

    threading.Thread(target=read, daemon=True).start()
    await asyncio.sleep(0.5)  # the stream is open before Maria starts typing
    await maria.check(maria.client.room_typing(room.matrix_id, True, timeout=5000), "typing")
    seen: list[dict] = []

    def maria_typing() -> bool:
        import json
        while not lines.empty():
            seen.append(json.loads(lines.get()))
        return any(f.get("resource") == "typing" and f["model"].get("username") == maria.user_id
                   for f in seen)

    try:
        await await_until(maria_typing, timeout=DELIVERY_TIMEOUT,
                          what="Maria shown typing in weft")
    finally:
        stream.close()


async def test_remote_images_in_matrix_html_are_never_loaded(room, alice, maria, uid):
    """A remote `<img>` in a Matrix message would make every weft reader's browser tell its
    sender who read it, and when: weft shows it as a link."""
    await maria.send(room.matrix_id, {
        "msgtype": "m.text", "body": f"look cat {uid}", "format": "org.matrix.custom.html",
        "formatted_body": f'look <img src="https://tracker.invalid/p.png?{uid}" alt="cat"> {uid}',
    })
    await maria.send_text(room.matrix_id, f"plain ![x](https://tracker.invalid/q.png) {uid}")
    html_msg = await room.weft_wait(lambda m: uid in m["text"] and "look" in m["text"],
                                    "the message with an image", api=alice.api)
    plain_msg = await room.weft_wait(lambda m: m["text"].startswith("plain"),
                                     "the message with Markdown image syntax", api=alice.api)
    for m in (html_msg, plain_msg):
        assert "<img" not in m["html"], m["html"]
        assert "tracker.invalid" in m["html"], m["html"]
