"""weft's Application Service API as the homeserver sees it, and the rooms it creates on
demand: authentication, unknown routes, idempotent transactions, user and alias queries, and
the state of a bridged room as a Matrix client reads it."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from urllib.parse import quote

import requests

from conftest import COMMUNITY, DELIVERY_TIMEOUT
from harness import await_until


def errcode(r: requests.Response) -> str | None:
    try:
        return r.json().get("errcode")
    except ValueError:
        return None


def test_transactions_need_the_hs_token(stack):
    body = {"events": []}
    wrong = stack.appservice_request("PUT", "/transactions/e2e-wrong-token", json=body,
                                     token=secrets.token_hex(32))
    assert wrong.status_code == 403 and errcode(wrong) == "M_FORBIDDEN", wrong.text
    missing = stack.appservice_request("PUT", "/transactions/e2e-no-token", json=body,
                                       token=None)
    assert (missing.status_code, errcode(missing)) in (
        (401, "M_UNAUTHORIZED"), (403, "M_FORBIDDEN")), missing.text
    ok = stack.appservice_request("PUT", "/transactions/e2e-empty", json=body)
    assert ok.status_code == 200, ok.text


def test_unknown_appservice_route(stack):
    r = stack.appservice_request("GET", "/no-such-endpoint")
    assert r.status_code == 404 and errcode(r) == "M_UNRECOGNIZED", r.text


def test_replayed_transaction_applies_once(room, maria, uid):
    text = f"delivered twice {uid}"
    event = {
        "type": "m.room.message",
        "event_id": f"$e2e-replay-{uid}",
        "room_id": room.matrix_id,
        "sender": maria.user_id,
        "origin_server_ts": int(time.time() * 1000),
        "content": {"msgtype": "m.text", "body": text},
        "unsigned": {"age": 1},
    }
    stack = room.stack
    for txn in (f"e2e-replay-{uid}", f"e2e-replay-{uid}", f"e2e-replay-other-{uid}"):
        r = stack.appservice_request("PUT", f"/transactions/{txn}", json={"events": [event]})
        assert r.status_code == 200, r.text
    # 200 means applied: the message must already be there, once.
    found = [m for m in room.weft_history() if m.get("text") == text]
    assert len(found) == 1, found
    assert found[0]["virtualUser"]["externalId"] == maria.user_id


def recorded_transactions(stack, *txn_ids: str) -> set[str]:
    """The transaction ids weft has recorded as applied, read from its database (weft keys a
    transaction by its id and a digest of its events: `id:digest`)."""
    db = sqlite3.connect(stack.weft.data_dir / "weft.db", timeout=10)
    try:
        rows = db.execute("SELECT txn_id FROM matrix_transactions").fetchall()
        recorded = {row[0].rsplit(":", 1)[0] for row in rows}
        return recorded & set(txn_ids)
    finally:
        db.close()


def test_transactions_that_change_nothing_are_not_recorded(room, alice, maria, uid):
    """The homeserver pushes weft's own messages back to it; such a transaction changes
    nothing, and recording it would cost a commit for every message weft sends. A replay of
    it still changes nothing; a transaction that applied something is recorded."""
    stack = room.stack
    echo = {
        "type": "m.room.message",
        "event_id": f"$e2e-echo-{uid}",
        "room_id": room.matrix_id,
        "sender": stack.puppet(alice),
        "origin_server_ts": int(time.time() * 1000),
        "content": {"msgtype": "m.text", "body": f"echo {uid}"},
    }
    applied = {**echo, "event_id": f"$e2e-applied-{uid}", "sender": maria.user_id,
               "content": {"msgtype": "m.text", "body": f"applied {uid}"}}
    echo_txn, applied_txn = f"e2e-echo-{uid}", f"e2e-applied-{uid}"
    for txn, events in ((echo_txn, [echo]), (echo_txn, [echo]), (applied_txn, [applied])):
        r = stack.appservice_request("PUT", f"/transactions/{txn}", json={"events": events})
        assert r.status_code == 200, r.text
    assert recorded_transactions(stack, echo_txn, applied_txn) == {applied_txn}
    texts = [m.get("text") for m in room.weft_history()]
    assert f"echo {uid}" not in texts, texts[-5:]
    assert texts.count(f"applied {uid}") == 1, texts[-5:]


def test_one_bad_event_does_not_block_its_transaction(room, maria, uid):
    """A message weft refuses (longer than 4,096 characters) is reported and skipped; the
    messages around it in the same transaction are applied, in order."""
    def message(n: int, body: str) -> dict:
        return {
            "type": "m.room.message",
            "event_id": f"$e2e-bad-{n}-{uid}",
            "room_id": room.matrix_id,
            "sender": maria.user_id,
            "origin_server_ts": int(time.time() * 1000),
            "content": {"msgtype": "m.text", "body": body},
        }
    events = [message(1, f"before {uid}"), message(2, "x" * 5000), message(3, f"after {uid}")]
    r = room.stack.appservice_request("PUT", f"/transactions/e2e-bad-{uid}", json={"events": events})
    assert r.status_code == 200, r.text
    texts = [m.get("text") for m in room.weft_history()]
    assert f"before {uid}" in texts and f"after {uid}" in texts, texts[-5:]
    assert texts.index(f"before {uid}") < texts.index(f"after {uid}")
    assert "x" * 5000 not in texts


def test_user_query(stack, alice):
    known = stack.appservice_request("GET", f"/users/{quote(stack.puppet(alice))}")
    assert known.status_code == 200, known.text
    nobody = f"@nobody-{'0' * 24}:{stack.server_name}"
    unknown = stack.appservice_request("GET", f"/users/{quote(nobody)}")
    assert unknown.status_code == 404, unknown.text


def test_alias_query_hides_private_and_unknown_rooms(stack, maria):
    stack.weft.create_room(COMMUNITY, "secret-plans", private=True)
    for alias in (stack.alias(COMMUNITY, "secret-plans"), stack.alias(COMMUNITY, "never-made")):
        r = stack.appservice_request("GET", f"/rooms/{quote(alias)}")
        assert r.status_code == 404, f"{alias}: {r.status_code} {r.text}"
    join = requests.post(
        f"{stack.synapse.url}/_matrix/client/v3/join/{quote(stack.alias(COMMUNITY, 'secret-plans'))}",
        headers={"Authorization": f"Bearer {maria.access_token}"}, json={}, timeout=15)
    assert join.status_code == 404, join.text


async def test_room_created_on_demand(stack, maria):
    topic = "state of a bridged room"
    stack.weft.create_room(COMMUNITY, "on-demand", topic=topic)
    alias = stack.alias(COMMUNITY, "on-demand")
    room_id = await maria.join(alias)
    state = await maria.check(maria.client.room_get_state(room_id), "get room state")
    by_type: dict[str, list[dict]] = {}
    for e in state.events:
        by_type.setdefault(e["type"], []).append(e)

    def content(etype: str) -> dict:
        assert etype in by_type, f"no {etype} in the room's state: {sorted(by_type)}"
        return by_type[etype][0]["content"]

    assert content("m.room.join_rules").get("join_rule") == "public"
    assert content("m.room.history_visibility").get("history_visibility") == "world_readable"
    assert content("m.room.topic").get("topic") == topic
    assert content("m.room.name").get("name") == "on-demand", "named after the room, not its URI"
    assert content("m.room.canonical_alias").get("alias") == alias
    assert "m.bridge" in by_type and "uk.half-shot.bridge" in by_type, sorted(by_type)
    bot = f"@weft:{stack.server_name}"
    creator = by_type["m.room.create"][0]["sender"]
    assert creator == bot, f"the room should be created by the bridge bot, not {creator}"

    def published() -> bool:
        r = requests.get(f"{stack.synapse.url}/_matrix/client/v3/publicRooms",
                         headers={"Authorization": f"Bearer {maria.access_token}"},
                         params={"limit": 500}, timeout=15)
        return room_id in [c["room_id"] for c in r.json().get("chunk", [])]

    await await_until(published, timeout=DELIVERY_TIMEOUT, what="the room in the directory")


async def test_messages_after_a_homeserver_restart_arrive(room, maria, uid):
    """Synapse numbers its transactions from 1 again after a restart: a transaction whose id
    weft saw before the restart is a new one when it carries other events, and must be
    applied, not acknowledged as a replay."""
    for i in range(4):  # transactions of their own before the restart, each recorded
        await maria.send_text(room.matrix_id, f"before restart {i} {uid}")
        await room.weft_wait(lambda m, i=i: m["text"] == f"before restart {i} {uid}",
                             f"message {i} before the restart")
    room.stack.synapse.stop()
    room.stack.synapse.start()
    for i in range(4):
        await maria.send_text(room.matrix_id, f"after restart {i} {uid}")
        await room.weft_wait(lambda m, i=i: m["text"] == f"after restart {i} {uid}",
                             f"message {i} after the restart", timeout=30)


def test_a_transaction_over_three_megabytes_is_applied(stack, room, uid):
    """A homeserver transaction holds up to 100 events of up to 64 KiB: one refused for its
    size would be refused on every retry and stop all inbound traffic."""
    sender = f"@big{uid}:{stack.server_name}"
    big = {"blob": "x" * 50_000}
    events = [{"type": "org.example.large", "room_id": room.matrix_id, "sender": sender,
               "event_id": f"$large-{uid}-{i}", "origin_server_ts": 1, "content": big}
              for i in range(60)]
    events.append({"type": "m.room.message", "room_id": room.matrix_id, "sender": sender,
                   "event_id": f"$after-{uid}", "origin_server_ts": 1,
                   "content": {"msgtype": "m.text", "body": f"after the large ones {uid}"}})
    body = json.dumps({"events": events})
    assert len(body) > 3_000_000
    r = stack.appservice_request("PUT", f"/transactions/large-{uid}", data=body,
                                 headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    texts = [m["text"] for m in room.weft_history()]
    assert f"after the large ones {uid}" in texts


def test_bad_json_gets_m_not_json(stack, uid):
    r = stack.appservice_request("PUT", f"/transactions/broken-{uid}", data=b'{"events": [',
                                 headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and errcode(r) == "M_NOT_JSON", r.text
    r = stack.appservice_request("PUT", f"/transactions/array-{uid}", data=b"[]",
                                 headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and errcode(r) == "M_BAD_JSON", r.text
