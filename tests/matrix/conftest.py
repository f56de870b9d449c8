"""Fixtures for the Matrix end-to-end tests: one real Synapse and one real weft per session,
weft users made with the admin CLI, Matrix users driving matrix-nio, and a freshly bridged
room per test.

Fixture API (see the report in the commit that added this rig, or read on):
- `stack` (session): harness.Stack: `.synapse` (url, register_user, log_tail), `.weft` (url,
  cli/cli_ok, create_user, create_room, kill9/start/stop), `.server_name`, `.registration`
  (parsed YAML), `.puppet(weft_user)`, `.alias(community, room)`, `.appservice_request(...)`.
- `alice`, `bob` (session): harness.WeftUser (username, id, token, display_name, `.api`:
  harness.WeftApi). `bob`'s username is capitalised ("Bob") to check puppet lowercasing.
- `maria`, `matt` (session): harness.MatrixUser (matrix-nio AsyncClient underneath, `.events`,
  `.wait_for_event`, `.settle`, `.send_text`, `.send`, `.react`, `.redact`, `.upload`,
  `.download`, `.history`).
- `room` (per test): BridgedRoom: a new public weft room `e2e/<test name>` that alice and bob
  joined through weft's API and maria and matt joined on Matrix by its alias.
- `uid` (per test): a short random string to make texts unique.
- `make_stack` (per test): builds extra stacks (e.g. with a tampered config); stopped after.
  `make_stack(proxied=True)` puts a `harness.FaultProxy` between weft and Synapse
  (`stack.proxy.fail(method, path_pattern, status, times)`).
- `DELIVERY_TIMEOUT`: seconds a bridged change may take to show on the other side
  (env WEFT_E2E_TIMEOUT, default 10).
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

import harness
from harness import MatrixUser, Stack, WeftApi, WeftUser, await_until

DELIVERY_TIMEOUT = float(os.environ.get("WEFT_E2E_TIMEOUT", "10"))
MATRIX_PASSWORD = "matrix password for tests"
COMMUNITY = "e2e"

TIMINGS: dict[str, float] = {}


# --------------------------------------------------------------------------------------------
# Session: the real parts


@pytest.fixture(scope="session")
def weft_binary() -> Path:
    return harness.weft_bin()


@pytest.fixture(scope="session")
def stack(tmp_path_factory, weft_binary):
    s = Stack(tmp_path_factory.mktemp("stack"), binary=weft_binary, python=sys.executable)
    try:
        s.prepare()
        s.start()
        TIMINGS["synapse start (s)"] = s.synapse.startup_seconds or 0.0
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def server_name(stack) -> str:
    return stack.server_name


@pytest.fixture(scope="session")
def alice(stack) -> WeftUser:
    return stack.weft.create_user("alice", display_name="Alice Weft")


@pytest.fixture(scope="session")
def bob(stack) -> WeftUser:
    return stack.weft.create_user("Bob", display_name="Bob Weft")


async def _matrix_user(stack: Stack, localpart: str, display_name: str) -> MatrixUser:
    user_id = stack.synapse.register_user(localpart, MATRIX_PASSWORD)
    return await MatrixUser.login(stack.synapse.url, user_id, MATRIX_PASSWORD, display_name)


@pytest_asyncio.fixture(scope="session")
async def maria(stack):
    user = await _matrix_user(stack, "maria", "Maria Matrix")
    yield user
    await user.close()


@pytest_asyncio.fixture(scope="session")
async def matt(stack):
    user = await _matrix_user(stack, "matt", "Matt Matrix")
    yield user
    await user.close()


# --------------------------------------------------------------------------------------------
# Per test


async def new_matrix_user(stack: Stack, localpart: str) -> MatrixUser:
    """A Matrix user of one test alone (the bot tells each sender of a refused event at most
    once a minute, so a shared user may already have been told)."""
    user_id = stack.synapse.register_user(localpart, MATRIX_PASSWORD)
    return await MatrixUser.login(stack.synapse.url, user_id, MATRIX_PASSWORD, localpart)


def bot_of(stack: Stack) -> str:
    """The bridge bot's Matrix ID."""
    return f"@{stack.registration['sender_localpart']}:{stack.server_name}"


def make_matrix_moderator(stack: Stack, room: "BridgedRoom", mxid: str) -> None:
    """Gives a Matrix user power 50 in the room, as the bridge bot (the room's creator)."""
    path = f"/_matrix/client/v3/rooms/{room.matrix_id}/state/m.room.power_levels/"
    current = stack.synapse_request("GET", path, as_user=bot_of(stack)).json()
    current.setdefault("users", {})[mxid] = 50
    r = stack.synapse_request("PUT", path, as_user=bot_of(stack), json=current)
    assert r.status_code == 200, r.text


@pytest.fixture
def uid() -> str:
    return secrets.token_hex(4)


@dataclass
class BridgedRoom:
    stack: Stack
    community: str
    name: str
    weft_id: str
    alias: str
    matrix_id: str

    @property
    def uri(self) -> str:
        return f"{self.community}/{self.name}"

    def weft_history(self, api: WeftApi | None = None) -> list[dict]:
        """Every weft message of the room, oldest first, thread replies included."""
        api = api or WeftApi(self.stack.weft.url, None)
        return api.history(self.weft_id)

    async def weft_wait(self, match, what: str, timeout: float = DELIVERY_TIMEOUT,
                        api: WeftApi | None = None) -> dict:
        """Polls weft's REST API until a message of the room satisfies `match`."""
        def find():
            return next((m for m in self.weft_history(api) if match(m)), None)

        return await await_until(find, timeout=timeout, interval=0.1,
                                 what=f"{what} in weft room {self.uri}")

    async def matrix_wait(self, user: MatrixUser, match, what: str,
                          timeout: float = DELIVERY_TIMEOUT) -> dict:
        return await user.wait_for_event(self.matrix_id, match, timeout=timeout,
                                         what=f"{what} (room {self.alias})")


def room_name_for(test_name: str) -> str:
    name = re.sub(r"^test_", "", test_name).lower()
    name = re.sub(r"[^a-z0-9]+", "-", name).strip("-")
    return name[:60] or "room"


async def bridge_room(stack: Stack, name: str, weft_users: list[WeftUser],
                      matrix_users: list[MatrixUser], private: bool = False) -> BridgedRoom:
    weft_id = stack.weft.create_room(COMMUNITY, name, topic=f"end-to-end test {name}",
                                     private=private)
    for u in weft_users:
        u.api.join(f"{COMMUNITY}/{name}")
    alias = stack.alias(COMMUNITY, name)
    matrix_id = ""
    for u in matrix_users:
        joined = await u.join(alias)
        matrix_id = matrix_id or joined
        assert joined == matrix_id, "two Matrix users joining one alias landed in two rooms"
    return BridgedRoom(stack, COMMUNITY, name, weft_id, alias, matrix_id)


@pytest_asyncio.fixture
async def room(request, stack, alice, bob, maria, matt) -> BridgedRoom:
    return await bridge_room(stack, room_name_for(request.node.name), [alice, bob],
                             [maria, matt])


@pytest.fixture
def make_stack(tmp_path_factory, weft_binary):
    """Builds extra stacks (prepared, not started); all are stopped after the test."""
    made: list[Stack] = []

    def make(proxied: bool = False) -> Stack:
        s = Stack(tmp_path_factory.mktemp("spare"), binary=weft_binary, python=sys.executable,
                  proxied=proxied)
        made.append(s)
        return s.prepare()

    yield make
    for s in made:
        s.stop()


# --------------------------------------------------------------------------------------------
# Reporting: on failure, the end of every process's logs


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A skipped test is a failed test here: the rig never skips silently (a missing plugin,
    a stray skip mark, a fixture calling pytest.skip)."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, which the Matrix end-to-end tests do not allow: {report.longrepr}"
    return report


def pytest_sessionstart(session):
    TIMINGS["_session_start"] = time.monotonic()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tr = terminalreporter
    if exitstatus != 0 and harness.STARTED:
        tr.section("logs of the processes the Matrix tests started (last lines)")
        for p in harness.STARTED:
            tr.write_line(f"----- {p.name} ({p.describe_exit()}): {p.log_path}")
            tr.write_line(p.tail(40))
            for extra in p.extra_logs:
                try:
                    lines = extra.read_text(errors="replace").splitlines()[-40:]
                except OSError:
                    continue
                tr.write_line(f"----- {p.name}: {extra}")
                tr.write_line("\n".join(lines))
    shown = {k: v for k, v in TIMINGS.items() if not k.startswith("_")}
    if shown:
        tr.write_line("matrix e2e timings: " + ", ".join(f"{k} {v:.1f}" for k, v in shown.items()))
