"""Weft's avatars on Matrix: a weft user's avatar at an allowed origin becomes their puppet's
(uploaded once, changed when it changes, taken away when it is), one anywhere else never makes
weft fetch it; a weft room's avatar becomes its Matrix room's, and one set on Matrix that weft
refuses is put back."""

from __future__ import annotations

import http.server
import threading
from urllib.parse import quote

from conftest import DELIVERY_TIMEOUT, bridge_room, make_matrix_moderator, new_matrix_user
from harness import await_until, tiny_png

RED, BLUE = tiny_png(2, 2, (220, 20, 20)), tiny_png(3, 3, (20, 20, 220))


class AvatarHost:
    """An image host on 127.0.0.1 that counts what it was asked for."""

    def __init__(self):
        images = {"/red.png": RED, "/blue.png": BLUE}
        self.asked: list[str] = []
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                host.asked.append(self.path)
                body = images.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()


def puppet_avatar(viewer, mxid: str) -> str:
    got = viewer.client_api("GET", f"/_matrix/client/v3/profile/{quote(mxid)}",
                            expect=(200, 404)) or {}
    return got.get("avatar_url") or ""


def room_avatar(viewer, room_id: str) -> str:
    got = viewer.client_api("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.avatar/",
                            expect=(200, 404)) or {}
    return got.get("url") or ""


async def test_weft_avatars_reach_matrix_only_from_allowed_origins(make_stack, uid):
    host = AvatarHost()
    stack = make_stack()
    config = stack.weft.config_path
    config.write_text(config.read_text().replace(
        "[matrix]\n", f'[matrix]\navatar_origins = ["{host.origin}"]\nroom_changes = "revert"\n', 1))
    stack.start()
    alice = stack.weft.create_user(f"alice{uid}")
    owner = stack.weft.create_user(f"owner{uid}", admin=True)
    maria = await new_matrix_user(stack, f"av{uid}")
    try:
        alice.api.request("PATCH", "/v1/user/me", json={"avatarUrl": f"{host.origin}/red.png"})
        room = await bridge_room(stack, f"avatars-{uid}", [alice, owner], [maria])
        alice.api.send(room.weft_id, "hello with a face")
        puppet = stack.puppet(alice)
        red = await await_until(lambda: puppet_avatar(maria, puppet), timeout=DELIVERY_TIMEOUT,
                                what="the puppet's avatar")
        assert red.startswith("mxc://"), red
        assert maria.download(red) == RED, "the puppet's avatar is the weft user's image"

        # A change crosses; an avatar elsewhere is never fetched and leaves the puppet's.
        alice.api.request("PATCH", "/v1/user/me", json={"avatarUrl": f"{host.origin}/blue.png"})
        blue = await await_until(lambda: (a := puppet_avatar(maria, puppet)) != red and a,
                                 timeout=DELIVERY_TIMEOUT, what="the puppet's new avatar")
        assert maria.download(blue) == BLUE
        asked = len(host.asked)
        alice.api.request("PATCH", "/v1/user/me", json={"avatarUrl": "http://127.0.0.2:9/x.png"})
        alice.api.request("PATCH", "/v1/user/me", json={"avatarUrl": None})
        await await_until(lambda: puppet_avatar(maria, puppet) == "", timeout=DELIVERY_TIMEOUT,
                          what="the puppet's avatar taken away")
        assert len(host.asked) == asked, host.asked
        # Back to one uploaded before: no second fetch.
        alice.api.request("PATCH", "/v1/user/me", json={"avatarUrl": f"{host.origin}/red.png"})
        await await_until(lambda: puppet_avatar(maria, puppet) == red, timeout=DELIVERY_TIMEOUT,
                          what="the first avatar again")
        assert host.asked.count("/red.png") == 1, host.asked

        # A weft room that never had an avatar leaves the Matrix room's alone when it
        # changes otherwise (one set on Matrix that weft has no copy of, say).
        from conftest import bot_of
        path = f"/_matrix/client/v3/rooms/{quote(room.matrix_id)}/state/m.room.avatar/"
        r = stack.synapse_request("PUT", path, as_user=bot_of(stack), json={"url": red})
        assert r.status_code == 200, r.text
        owner.api.request("PUT", f"/v1/rooms/{room.weft_id}", json={"topic": "a new topic"})
        await await_until(lambda: maria.client_api(
            "GET", f"/_matrix/client/v3/rooms/{quote(room.matrix_id)}/state/m.room.topic/")
            .get("topic") == "a new topic", timeout=DELIVERY_TIMEOUT, what="the topic on Matrix")
        assert room_avatar(maria, room.matrix_id) == red, "weft took away an avatar it never set"

        # A weft room's avatar is the Matrix room's.
        owner.api.request("PUT", f"/v1/rooms/{room.weft_id}",
                          json={"avatarUrl": f"{host.origin}/blue.png"})
        await await_until(lambda: room_avatar(maria, room.matrix_id) == blue,
                          timeout=DELIVERY_TIMEOUT, what="the Matrix room's avatar")
        # A Matrix moderator's avatar is put back (room_changes = "revert").
        make_matrix_moderator(stack, room, maria.user_id)
        maria.client_api("PUT", f"/_matrix/client/v3/rooms/{quote(room.matrix_id)}/state/m.room.avatar/",
                         json={"url": red})
        await await_until(lambda: room_avatar(maria, room.matrix_id) == blue,
                          timeout=DELIVERY_TIMEOUT, what="weft's room avatar put back")
    finally:
        await maria.close()
        host.stop()
