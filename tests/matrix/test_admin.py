"""The admin side of the bridge: `weft matrix registration` and `weft matrix ping`.

The failure cases use a spare stack (its own Synapse), so that the shared one is never
disturbed: weft is started there with a deliberately wrong configuration each time.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

import harness
from harness import Stack, free_port

SECRET_MIN_CHARS = 32


def matrix_section(*, homeserver_url: str, server_name: str, registration: Path) -> str:
    return (
        "[matrix]\n"
        f'homeserver_url = "{homeserver_url}"\n'
        f'server_name = "{server_name}"\n'
        f'registration = "{registration}"\n'
    )


def namespace_regexes(registration: dict, kind: str) -> list[dict]:
    entries = (registration.get("namespaces") or {}).get(kind) or []
    assert entries, f"no {kind} namespace in the registration: {registration}"
    return entries


def matches(entries: list[dict], value: str) -> bool:
    """Synapse's rule: `re.match` of any namespace regex."""
    return any(re.match(e["regex"], value) for e in entries)


# --------------------------------------------------------------------------------------------
# Registration


def test_registration_file(stack, alice, bob):
    reg = stack.registration
    S = stack.server_name
    assert reg["id"] == "weft"
    assert reg["url"] == stack.weft.url
    assert reg["sender_localpart"] == "weft"
    assert reg["rate_limited"] is False
    assert reg["receive_ephemeral"] is True
    assert "de.sorunome.msc2409.push_ephemeral" not in reg, "makes ephemeral events arrive twice"
    assert reg["io.element.msc4190"] is True, "devices without logins (MSC4190)"
    for key in ("as_token", "hs_token"):
        assert isinstance(reg[key], str) and len(reg[key]) >= SECRET_MIN_CHARS, key
    assert reg["as_token"] != reg["hs_token"]

    users = namespace_regexes(reg, "users")
    assert all(e.get("exclusive") is True for e in users), users
    assert matches(users, f"@weft:{S}")
    assert matches(users, stack.puppet(alice))
    assert matches(users, stack.puppet(bob))
    assert stack.puppet(bob).startswith("@bob-"), "puppet localparts are lower case"
    assert not matches(users, f"@maria:{S}"), "would claim real Matrix users"
    assert not matches(users, f"@alice:{S}")
    assert not matches(users, f"@alice-{alice.id}:elsewhere.test"), "claims another server"

    aliases = namespace_regexes(reg, "aliases")
    assert all(e.get("exclusive") is True for e in aliases), aliases
    assert matches(aliases, stack.alias("e2e", "some-room"))
    assert not matches(aliases, "#e2e_some-room:elsewhere.test")


def test_registration_prints_matrix_section(stack):
    section = tomllib.loads(stack.weft.matrix_section)["matrix"]
    assert section["homeserver_url"].rstrip("/") == stack.synapse.url
    assert section["server_name"] == stack.server_name
    written = Path(section["registration"])
    if not written.is_absolute():
        written = stack.weft.workdir / written
    assert written.resolve() == stack.registration_path.resolve()


def test_registration_tokens_are_fresh_and_file_is_private(stack, tmp_path):
    out = tmp_path / "again.yaml"
    harness.run_weft(
        stack.weft.binary, "matrix", "registration",
        "--server-name", stack.server_name, "--homeserver-url", stack.synapse.url,
        "--weft-url", stack.weft.url, "--output", str(out), cwd=tmp_path,
    ).check()
    again = yaml.safe_load(out.read_text())
    assert again["as_token"] != stack.registration["as_token"]
    assert again["hs_token"] != stack.registration["hs_token"]
    # It holds two secrets: nobody but the owner should read it.
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode & 0o077 == 0, f"registration file is readable by others (mode {mode:o})"


# --------------------------------------------------------------------------------------------
# Ping


def test_ping_succeeds(stack):
    r = stack.weft.cli("matrix", "ping")
    assert r.returncode == 0, r.output


@pytest.fixture(scope="module")
def spare(tmp_path_factory, weft_binary):
    """A second Synapse with its own registration, for breaking things on purpose."""
    s = Stack(tmp_path_factory.mktemp("spare"), binary=weft_binary, python=sys.executable)
    try:
        s.prepare()
        s.synapse.start()
        yield s
    finally:
        s.stop()


def run_ping(stack: Stack, *, registration: dict | None = None,
             homeserver_url: str | None = None, start_weft: bool = True):
    """Starts weft on the spare stack with a (possibly wrong) configuration, runs
    `weft matrix ping`, stops weft, and returns (result, seconds the ping took)."""
    reg_path = stack.registration_path
    if registration is not None:
        reg_path = stack.weft.workdir / "tampered-registration.yaml"
        reg_path.write_text(yaml.safe_dump(registration))
        os.chmod(reg_path, 0o600)
    stack.weft.write_config(matrix_section(
        homeserver_url=homeserver_url or stack.synapse.url,
        server_name=stack.server_name,
        registration=reg_path,
    ))
    try:
        if start_weft:
            stack.weft.start()
        started = time.monotonic()
        result = stack.weft.cli("matrix", "ping", timeout=90)
        return result, time.monotonic() - started
    finally:
        stack.weft.stop()


def test_ping_spare_stack_sane(spare):
    result, _ = run_ping(spare)
    assert result.returncode == 0, f"the untouched spare stack should ping:\n{result.output}"


def test_ping_fails_clearly_when_hs_token_differs(spare):
    reg = dict(spare.registration, hs_token=secrets.token_hex(32))
    result, took = run_ping(spare, registration=reg)
    assert result.returncode != 0, result.output
    assert "hs_token" in result.output, f"the message should name the hs_token:\n{result.output}"
    assert took < 30


def test_ping_fails_clearly_when_as_token_differs(spare):
    reg = dict(spare.registration, as_token=secrets.token_hex(32))
    result, took = run_ping(spare, registration=reg)
    assert result.returncode != 0, result.output
    assert "as_token" in result.output, f"the message should name the as_token:\n{result.output}"
    assert took < 30


def test_ping_fails_clearly_when_homeserver_is_down(spare):
    nowhere = f"http://{harness.LOCALHOST}:{free_port()}"
    result, took = run_ping(spare, homeserver_url=nowhere)
    assert result.returncode != 0, result.output
    assert nowhere.split("//")[1] in result.output, \
        f"the message should say which homeserver it could not reach:\n{result.output}"
    assert took < 30


def test_ping_fails_clearly_when_homeserver_cannot_reach_weft(spare):
    result, took = run_ping(spare, start_weft=False)
    assert result.returncode != 0, result.output
    assert spare.weft.url.split("//")[1] in result.output, \
        f"the message should say which weft URL the homeserver could not reach:\n{result.output}"
    assert took < 30
