"""Real parts for the Matrix end-to-end tests: a Synapse homeserver and a weft server, each a
real process on 127.0.0.1, plus thin clients for both sides.

Nothing here knows about pytest; conftest.py turns it into fixtures. Everything listens and
connects on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import quote

import requests
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOCALHOST = "127.0.0.1"

# Every process started here, so that a failing run can show the end of each log, and so
# that none outlives the test run even when fixtures never got to tear down.
STARTED: list["Process"] = []


@atexit.register
def _stop_everything() -> None:
    for p in STARTED:
        try:
            p.stop(timeout=5)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


# --------------------------------------------------------------------------------------------
# Waiting


class Timeout(AssertionError):
    """A condition did not come true in time (a test failure, not an error in the rig)."""


def wait_until(
    check: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.1,
    what: str = "condition",
) -> Any:
    """Calls `check` until it returns something truthy and returns that. Exceptions raised by
    `check` count as "not yet"; the last one is reported when time runs out."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    last_value: Any = None
    while True:
        try:
            last_value = check()
            if last_value:
                return last_value
        except AssertionError as e:
            last_error = e
        except (requests.RequestException, OSError) as e:
            last_error = e
        if time.monotonic() >= deadline:
            detail = f": {last_error}" if last_error else f" (last value: {last_value!r})"
            raise Timeout(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


async def await_until(
    check: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.1,
    what: str = "condition",
) -> Any:
    """`wait_until` for asyncio: `check` may be a plain function or return an awaitable."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    last_value: Any = None
    while True:
        try:
            last_value = check()
            if asyncio.iscoroutine(last_value) or isinstance(last_value, asyncio.Future):
                last_value = await last_value
            if last_value:
                return last_value
        except AssertionError as e:
            last_error = e
        except (requests.RequestException, OSError) as e:
            last_error = e
        if time.monotonic() >= deadline:
            detail = f": {last_error}" if last_error else f" (last value: {last_value!r})"
            raise Timeout(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        await asyncio.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Processes


@dataclass
class Process:
    """A child process whose output goes to a log file."""

    name: str
    argv: list[str]
    log_path: Path
    cwd: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen | None = None
    extra_logs: list[Path] = field(default_factory=list)

    def start(self) -> "Process":
        assert self.popen is None or self.popen.poll() is not None, f"{self.name} already runs"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"\n===== starting {self.name}: {' '.join(self.argv)}\n".encode())
        log.flush()
        self.popen = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if self not in STARTED:
            STARTED.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL, no chance to clean up: the crash the tests simulate."""
        if self.running():
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if not self.running():
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def describe_exit(self) -> str:
        if self.popen is None:
            return "never started"
        code = self.popen.poll()
        return "still running" if code is None else f"exited with {code}"


# --------------------------------------------------------------------------------------------
# Synapse


RATE_LIMIT_OFF = {"per_second": 10000, "burst_count": 100000}


def homeserver_config(
    *,
    server_name: str,
    port: int,
    workdir: Path,
    registration: Path,
    shared_secret: str,
    sender_localpart: str = "weft",
) -> dict:
    """A Synapse configuration for tests: 127.0.0.1 only, SQLite, no federation traffic, every
    rate limit raised, warnings only, logged to a file."""
    rl = RATE_LIMIT_OFF
    return {
        "server_name": server_name,
        "public_baseurl": f"http://{LOCALHOST}:{port}/",
        "pid_file": str(workdir / "homeserver.pid"),
        "report_stats": False,
        "signing_key_path": str(workdir / "signing.key"),
        "log_config": str(workdir / "log.config"),
        "media_store_path": str(workdir / "media"),
        "database": {"name": "sqlite3", "args": {"database": str(workdir / "homeserver.db")}},
        "listeners": [
            {
                "port": port,
                "bind_addresses": [LOCALHOST],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client", "federation"], "compress": False}],
            }
        ],
        "registration_shared_secret": shared_secret,
        "bcrypt_rounds": 4,  # test passwords: registering and logging in stay fast
        "enable_registration": False,
        "app_service_config_files": [str(registration)],
        # Synapse publishes nothing in its room directory by default (createRoom then quietly
        # leaves the room out); a bridge's admin must let the bridge bot publish its rooms.
        "room_list_publication_rules": [
            {"user_id": f"@{sender_localpart}:{server_name}", "action": "allow"},
        ],
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        # Nothing outside this machine: no federation to any domain, no URL previews, no stats.
        "federation_domain_whitelist": [],
        "url_preview_enabled": False,
        "enable_metrics": False,
        "rc_message": rl,
        "rc_registration": rl,
        "rc_registration_token_validity": rl,
        "rc_login": {"address": rl, "account": rl, "failed_attempts": rl},
        "rc_admin_redaction": rl,
        "rc_joins": {"local": rl, "remote": rl},
        "rc_joins_per_room": rl,
        "rc_3pid_validation": rl,
        "rc_invites": {"per_room": rl, "per_user": rl, "per_issuer": rl},
        "rc_third_party_invite": rl,
        "rc_media_create": rl,
        "rc_room_creation": rl,
        "rc_profile": rl,
        "rc_presence": {"per_user": rl},
        "rc_user_directory": rl,
        "rc_delayed_event_mgmt": rl,
        "rc_reports": rl,
        "rc_key_requests": rl,
    }


def synapse_log_config(log_file: Path) -> dict:
    return {
        "version": 1,
        "formatters": {
            "precise": {
                "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                "%(request)s - %(message)s"
            }
        },
        "filters": {"context": {"()": "synapse.logging.context.LoggingContextFilter"}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": str(log_file),
                "filters": ["context"],
                "encoding": "utf8",
            }
        },
        # Warnings only (INFO costs ~30 % throughput), but keep the appservice scheduler's
        # few lines about retries and recoveries: they explain a stalled bridge.
        "loggers": {"synapse.appservice": {"level": "INFO"}},
        "root": {"level": "WARNING", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


class Synapse:
    """One Synapse homeserver on 127.0.0.1, configured for tests."""

    def __init__(
        self,
        workdir: Path,
        *,
        registration: Path,
        server_name: str = "weft.test",
        port: int | None = None,
        python: str = sys.executable,
    ):
        self.workdir = workdir
        self.registration = registration
        self.server_name = server_name
        self.port = port or free_port()
        self.python = python
        self.shared_secret = secrets.token_hex(16)
        self.config_path = workdir / "homeserver.yaml"
        self.log_file = workdir / "homeserver.log"
        self.process = Process(
            "synapse",
            [python, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            workdir / "synapse.out",
            cwd=workdir,
            extra_logs=[self.log_file],
        )
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "media").mkdir(exist_ok=True)
        config = homeserver_config(
            server_name=self.server_name,
            port=self.port,
            workdir=self.workdir,
            registration=self.registration,
            shared_secret=self.shared_secret,
        )
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        (self.workdir / "log.config").write_text(
            yaml.safe_dump(synapse_log_config(self.log_file), sort_keys=False)
        )

    def generate_keys(self) -> None:
        if (self.workdir / "signing.key").exists():
            return
        result = subprocess.run(
            [self.python, "-m", "synapse.app.homeserver", "-c", str(self.config_path),
             "--generate-keys"],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(
                "Synapse could not generate its keys:\n" + result.stdout + result.stderr
            )

    def start(self, timeout: float = 90.0) -> "Synapse":
        """Writes the configuration if needed, starts Synapse and waits until it answers.
        Raises (never skips) when it does not come up."""
        if not self.config_path.exists():
            self.write_config()
        self.generate_keys()
        started = time.monotonic()
        self.process.start()
        deadline = started + timeout
        while True:
            if not self.process.running():
                raise RuntimeError(
                    f"Synapse {self.process.describe_exit()} while starting; last lines of "
                    f"its output:\n{self.process.tail(60)}\n--- homeserver.log:\n"
                    f"{self.log_tail(60)}"
                )
            try:
                r = requests.get(f"{self.url}/_matrix/client/versions", timeout=2)
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.process.stop()
                raise RuntimeError(
                    f"Synapse did not answer /_matrix/client/versions within {timeout:.0f} s; "
                    f"last lines of its output:\n{self.process.tail(60)}\n--- homeserver.log:\n"
                    f"{self.log_tail(60)}"
                )
            time.sleep(0.1)
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        self.process.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no homeserver.log)"

    def register_user(self, localpart: str, password: str, admin: bool = False) -> str:
        """Registers a user with the shared-secret admin API; returns the full user id."""
        base = f"{self.url}/_synapse/admin/v1/register"
        nonce = requests.get(base, timeout=10).json()["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(nonce.encode())
        mac.update(b"\x00")
        mac.update(localpart.encode())
        mac.update(b"\x00")
        mac.update(password.encode())
        mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        r = requests.post(
            base,
            json={
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
            timeout=30,
        )
        if r.status_code != 200:
            raise RuntimeError(f"registering {localpart} on Synapse: {r.status_code} {r.text}")
        return r.json()["user_id"]


# --------------------------------------------------------------------------------------------
# weft


def weft_bin() -> Path:
    """The weft binary under test: $WEFT_BIN, or target/debug/weft in this repository."""
    configured = os.environ.get("WEFT_BIN")
    path = Path(configured) if configured else REPO / "target" / "debug" / "weft"
    if not path.is_absolute():
        path = (REPO / path).resolve()
    if not path.is_file():
        raise RuntimeError(
            f"no weft binary at {path}: build it (cargo build) or set WEFT_BIN"
        )
    return path


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def check(self) -> "CommandResult":
        if self.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(self.argv[1:])}` exited with {self.returncode}:\n"
                f"{self.stdout}{self.stderr}"
            )
        return self


def run_weft(binary: Path, *args: str, cwd: Path, timeout: float = 60) -> CommandResult:
    argv = [str(binary), *args]
    env = dict(os.environ)
    env.setdefault("NO_COLOR", "1")
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    return CommandResult(argv, r.returncode, r.stdout, r.stderr)


def extract_matrix_section(stdout: str) -> str:
    """The `[matrix]` TOML table that `weft matrix registration` prints, wherever it is in
    the output (explanations may come before or after it)."""
    lines = stdout.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "[matrix]")
    except StopIteration:
        raise AssertionError(
            f"`weft matrix registration` printed no [matrix] section:\n{stdout}"
        ) from None
    section = [lines[start]]
    for line in lines[start + 1:]:
        s = line.strip()
        if s.startswith("[") or not (s == "" or s.startswith("#") or re.match(r"^[A-Za-z0-9_.\-\"]+\s*=", s)):
            break
        section.append(line)
    text = "\n".join(section).rstrip() + "\n"
    tomllib.loads(text)  # must parse on its own
    return text


class Weft:
    """One `weft serve` process with its configuration and data folder."""

    def __init__(
        self,
        workdir: Path,
        *,
        binary: Path,
        port: int | None = None,
        extra_config: str = "",
    ):
        self.workdir = workdir
        self.binary = binary
        self.port = port or free_port()
        self.data_dir = workdir / "data"
        self.config_path = workdir / "weft.toml"
        self.extra_config = extra_config
        self.process = Process(
            "weft",
            [str(binary), "--config", str(self.config_path), "serve",
             "--listen", f"{LOCALHOST}:{self.port}", "--data-dir", str(self.data_dir)],
            workdir / "weft.log",
            cwd=workdir,
            env={**os.environ, "NO_COLOR": "1",
                 "WEFT_LOG": os.environ.get("WEFT_TEST_LOG", "info")},
        )
        self.matrix_section: str | None = None
        self.registration_stdout: str | None = None

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def generate_registration(
        self, *, server_name: str, homeserver_url: str, output: Path
    ) -> CommandResult:
        result = run_weft(
            self.binary, "matrix", "registration",
            "--server-name", server_name,
            "--homeserver-url", homeserver_url,
            "--weft-url", self.url,
            "--output", str(output),
            cwd=self.workdir,
        ).check()
        self.registration_stdout = result.stdout
        self.matrix_section = extract_matrix_section(result.stdout)
        return result

    def write_config(self, matrix_section: str | None = None) -> None:
        """weft.toml: the test settings plus the `[matrix]` section the registration command
        printed (tables come last in TOML)."""
        section = matrix_section if matrix_section is not None else self.matrix_section
        self.workdir.mkdir(parents=True, exist_ok=True)
        text = (
            f'listen = "{LOCALHOST}:{self.port}"\n'
            f"data_dir = {json.dumps(str(self.data_dir))}\n"
            "rate_limit_per_minute = 0\n"
            f"{self.extra_config}\n"
        )
        if section:
            text += "\n" + section
        self.config_path.write_text(text)

    def cli(self, *args: str, timeout: float = 60) -> CommandResult:
        """`weft --config weft.toml ARGS…`, not checked."""
        return run_weft(self.binary, "--config", str(self.config_path), *args,
                        cwd=self.workdir, timeout=timeout)

    def cli_ok(self, *args: str, timeout: float = 60) -> str:
        """`weft --config weft.toml ARGS…`; raises unless it exits 0; returns stdout stripped."""
        return self.cli(*args, timeout=timeout).check().stdout.strip()

    def start(self, timeout: float = 30.0) -> "Weft":
        self.process.start()
        deadline = time.monotonic() + timeout
        while True:
            if not self.process.running():
                raise RuntimeError(
                    f"weft {self.process.describe_exit()} while starting:\n{self.process.tail(60)}"
                )
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"weft did not answer /healthz within {timeout:.0f} s:\n{self.process.tail(60)}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.stop()

    def kill9(self) -> None:
        self.process.kill9()

    # Admin CLI helpers -------------------------------------------------------------------

    def create_user(self, username: str, *, display_name: str | None = None,
                    password: str = "correct horse battery", admin: bool = False) -> "WeftUser":
        args = ["user", "create", username, "--password", password]
        if display_name:
            args += ["--display-name", display_name]
        if admin:
            args.append("--admin")
        user_id = self.cli_ok(*args)
        token = self.cli_ok("token", "create", username)
        api = WeftApi(self.url, token)
        return WeftUser(username=username, id=user_id, token=token, api=api,
                        display_name=display_name or username)

    def create_room(self, community: str, room: str, *, topic: str = "",
                    private: bool = False) -> str:
        """Creates `community/room` (and the community if needed); returns the room id."""
        group = self.cli(("group"), "create", community)
        if group.returncode != 0 and "exist" not in group.output.lower():
            group.check()
        args = ["room", "create", f"{community}/{room}", "--topic", topic]
        if private:
            args.append("--private")
        return self.cli_ok(*args)


# --------------------------------------------------------------------------------------------
# weft's REST API


class WeftApi:
    """A token-bound client for weft's Gitter-compatible REST API."""

    def __init__(self, base_url: str, token: str | None):
        self.base = base_url
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, expect: Iterable[int] = (200,), **kw) -> Any:
        kw.setdefault("timeout", 15)
        r = self.session.request(method, f"{self.base}{path}", **kw)
        if r.status_code not in tuple(expect):
            raise AssertionError(f"{method} {path} -> {r.status_code} {r.text[:500]}")
        if r.status_code == 204 or not r.content:
            return None
        ctype = r.headers.get("content-type", "")
        return r.json() if "json" in ctype else r.content

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> Any:
        return self.request("POST", path, **kw)

    # Rooms and messages --------------------------------------------------------------------

    def join(self, uri: str) -> dict:
        return self.post("/v1/rooms", json={"uri": uri})

    def send(self, room_id: str, text: str, *, parent_id: str | None = None,
             status: bool | None = None) -> dict:
        body: dict[str, Any] = {"text": text}
        if parent_id:
            body["parentId"] = parent_id
        if status is not None:
            body["status"] = status
        return self.post(f"/v1/rooms/{room_id}/chatMessages", json=body)

    def edit(self, room_id: str, message_id: str, text: str) -> dict:
        return self.request("PUT", f"/v1/rooms/{room_id}/chatMessages/{message_id}",
                            json={"text": text})

    def delete(self, room_id: str, message_id: str) -> None:
        self.request("DELETE", f"/v1/rooms/{room_id}/chatMessages/{message_id}",
                     expect=(204,))

    def message(self, room_id: str, message_id: str) -> dict | None:
        r = self.session.get(f"{self.base}/v1/rooms/{room_id}/chatMessages/{message_id}",
                             timeout=15)
        if r.status_code == 404:
            return None
        assert r.status_code == 200, f"GET message -> {r.status_code} {r.text[:300]}"
        return r.json()

    def thread(self, room_id: str, message_id: str) -> list[dict]:
        return self.get(f"/v1/rooms/{room_id}/chatMessages/{message_id}/thread")

    def react(self, room_id: str, message_id: str, emoji: str) -> list[dict]:
        return self.post(f"/v1/rooms/{room_id}/chatMessages/{message_id}/reactions",
                         json={"emoji": emoji})

    def unreact(self, room_id: str, message_id: str, emoji: str) -> list[dict]:
        return self.request(
            "DELETE",
            f"/v1/rooms/{room_id}/chatMessages/{message_id}/reactions/{quote(emoji, safe='')}",
        )

    def upload(self, room_id: str, name: str, data: bytes, mime: str, *,
               text: str | None = None, parent_id: str | None = None) -> dict:
        fields: dict[str, Any] = {}
        if text is not None:
            fields["text"] = (None, text)
        if parent_id is not None:
            fields["parentId"] = (None, parent_id)
        fields["file"] = (name, data, mime)
        return self.post(f"/v1/rooms/{room_id}/files", files=fields, timeout=60)

    def download(self, url: str) -> bytes:
        r = self.session.get(f"{self.base}{url}", timeout=30)
        assert r.status_code == 200, f"GET {url} -> {r.status_code}"
        return r.content

    def messages(self, room_id: str, **params) -> list[dict]:
        return self.get(f"/v1/rooms/{room_id}/chatMessages", params=params)

    def history(self, room_id: str, include_threads: bool = True) -> list[dict]:
        """Every message of a room, oldest first (deleted placeholders included)."""
        out: list[dict] = []
        before: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100, "includeThreads": str(include_threads).lower()}
            if before:
                params["beforeId"] = before
            page = self.messages(room_id, **params)
            out = page + out
            if len(page) < 100:
                return out
            before = page[0]["id"]

    def unread(self, room_id: str) -> dict:
        return self.get(f"/v1/user/me/rooms/{room_id}/unreadItems")


@dataclass
class WeftUser:
    username: str
    id: str
    token: str
    api: WeftApi
    display_name: str

    def mxid(self, server_name: str) -> str:
        """The puppet a weft user is on Matrix: @{username lowercased}-{id}:server."""
        return f"@{self.username.lower()}-{self.id}:{server_name}"


# --------------------------------------------------------------------------------------------
# The Matrix side: a real client library (matrix-nio)


class MatrixUser:
    """A registered Matrix user driving matrix-nio's AsyncClient, with a record of every
    timeline event its syncs have delivered (raw event JSON, per room)."""

    SYNC_FILTER = {
        "room": {
            "timeline": {"limit": 200},
            "state": {"lazy_load_members": True},
            "ephemeral": {"not_types": ["*"]},
        },
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    }

    def __init__(self, client, homeserver_url: str, password: str):
        self.client = client
        self.homeserver_url = homeserver_url
        self.password = password
        self.timeline: dict[str, list[dict]] = {}
        self.seen: dict[str, set[str]] = {}

    @property
    def user_id(self) -> str:
        return self.client.user_id

    @property
    def access_token(self) -> str:
        return self.client.access_token

    @classmethod
    async def login(cls, homeserver_url: str, user_id: str, password: str,
                    display_name: str | None = None) -> "MatrixUser":
        import nio

        client = nio.AsyncClient(homeserver_url, user_id,
                                 config=nio.AsyncClientConfig(store_sync_tokens=False))
        resp = await client.login(password, device_name="weft-e2e")
        if not isinstance(resp, nio.LoginResponse):
            await client.close()
            raise RuntimeError(f"Matrix login of {user_id} failed: {resp}")
        me = cls(client, homeserver_url, password)
        if display_name:
            await me.check(client.set_displayname(display_name), "set display name")
        await me.sync(timeout_ms=0)
        return me

    async def close(self) -> None:
        await self.client.close()

    async def check(self, awaitable, what: str):
        """Awaits a nio call and raises if it answered with an error response."""
        import nio

        resp = await awaitable
        if isinstance(resp, nio.ErrorResponse):
            raise AssertionError(f"{self.user_id}: {what} failed: {resp}")
        if isinstance(resp, tuple) and resp and isinstance(resp[0], nio.ErrorResponse):
            raise AssertionError(f"{self.user_id}: {what} failed: {resp[0]}")
        return resp

    # Syncing --------------------------------------------------------------------------------

    async def sync(self, timeout_ms: int = 500) -> None:
        import nio

        resp = await self.client.sync(timeout=timeout_ms, sync_filter=self.SYNC_FILTER)
        if not isinstance(resp, nio.SyncResponse):
            raise AssertionError(f"{self.user_id}: sync failed: {resp}")
        for room_id, room in resp.rooms.join.items():
            if room.timeline.limited and self.timeline.get(room_id):
                # The server skipped events: take the room's full history instead, so that
                # nothing a test waits for falls into the gap.
                history = await self.history(room_id)
                self.timeline[room_id] = history
                self.seen[room_id] = {e.get("event_id") for e in history}
            self._add(room_id, [e.source for e in room.timeline.events])

    def _add(self, room_id: str, events: list[dict]) -> None:
        timeline = self.timeline.setdefault(room_id, [])
        seen = self.seen.setdefault(room_id, set())
        for e in events:
            if e.get("event_id") not in seen:
                seen.add(e.get("event_id"))
                timeline.append(e)

    def events(self, room_id: str, etype: str | None = None) -> list[dict]:
        evs = self.timeline.get(room_id, [])
        return [e for e in evs if etype is None or e.get("type") == etype]

    async def wait_for_event(self, room_id: str, match: Callable[[dict], bool],
                             timeout: float = 10.0, what: str = "an event") -> dict:
        """Syncs until an event in `room_id` satisfies `match`; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events(room_id):
                if match(e):
                    return e
            if time.monotonic() >= deadline:
                seen = [(e.get("type"), e.get("sender"), e.get("content"))
                        for e in self.events(room_id)[-8:]]
                raise Timeout(
                    f"{self.user_id} saw no {what} in {room_id} within {timeout:.0f} s; "
                    f"last events: {json.dumps(seen, ensure_ascii=False)[:3000]}"
                )
            await self.sync(timeout_ms=int(min(1000, max(50, (deadline - time.monotonic()) * 1000))))

    async def settle(self, seconds: float = 2.0) -> None:
        """Keeps syncing for a while so that anything late (an echo) has a chance to show."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.sync(timeout_ms=int(max(50, (deadline - time.monotonic()) * 1000)))

    # Acting ---------------------------------------------------------------------------------

    async def join(self, room_or_alias: str) -> str:
        resp = await self.check(self.client.join(room_or_alias), f"join {room_or_alias}")
        await self.sync(timeout_ms=0)
        return resp.room_id

    async def send(self, room_id: str, content: dict, etype: str = "m.room.message",
                   txn_id: str | None = None) -> str:
        resp = await self.check(
            self.client.room_send(room_id, etype, content, tx_id=txn_id,
                                  ignore_unverified_devices=True),
            f"send {etype}",
        )
        return resp.event_id

    async def send_text(self, room_id: str, body: str, **extra) -> str:
        return await self.send(room_id, {"msgtype": "m.text", "body": body, **extra})

    async def redact(self, room_id: str, event_id: str, reason: str | None = None) -> str:
        resp = await self.check(self.client.room_redact(room_id, event_id, reason),
                                "redact")
        return resp.event_id

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        return await self.send(
            room_id,
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}},
            etype="m.reaction",
        )

    async def upload(self, data: bytes, mime: str, filename: str) -> str:
        import io

        resp, _ = await self.check(
            self.client.upload(io.BytesIO(data), content_type=mime, filename=filename,
                               filesize=len(data)),
            "upload",
        )
        return resp.content_uri

    def download(self, mxc: str) -> bytes:
        """Downloads through authenticated media (the unauthenticated endpoint is off)."""
        assert mxc.startswith("mxc://"), mxc
        server, media_id = mxc[len("mxc://"):].split("/", 1)
        r = requests.get(
            f"{self.homeserver_url}/_matrix/client/v1/media/download/{server}/{media_id}",
            headers={"Authorization": f"Bearer {self.access_token}"},
            timeout=30,
        )
        assert r.status_code == 200, f"media download {mxc} -> {r.status_code} {r.text[:200]}"
        return r.content

    async def history(self, room_id: str) -> list[dict]:
        """Every event of the room from its creation on, in timeline order (/messages)."""
        import nio

        out: list[dict] = []
        token: str | None = None
        while True:
            resp = await self.client.room_messages(
                room_id, start=token, direction=nio.MessageDirection.front, limit=1000
            )
            if not isinstance(resp, nio.RoomMessagesResponse):
                raise AssertionError(f"/messages failed: {resp}")
            out.extend(e.source for e in resp.chunk)
            if not resp.chunk or not resp.end or resp.end == token:
                return out
            token = resp.end

    def client_api(self, method: str, path: str, expect: Iterable[int] = (200,),
                   **kw) -> Any:
        """A raw client-server API call as this user (for what matrix-nio lacks); returns the
        JSON body, or raises unless the status is one of `expect`."""
        kw.setdefault("timeout", 15)
        r = requests.request(method, f"{self.homeserver_url}{path}",
                             headers={"Authorization": f"Bearer {self.access_token}"}, **kw)
        if r.status_code not in tuple(expect):
            raise AssertionError(f"{method} {path} -> {r.status_code} {r.text[:500]}")
        return r.json() if r.content else None

    def directory_lists(self, room_id: str) -> bool:
        """Whether the homeserver's public room directory lists the room."""
        since = None
        while True:
            params = {"limit": 500, **({"since": since} if since else {})}
            page = self.client_api("GET", "/_matrix/client/v3/publicRooms", params=params)
            if any(r.get("room_id") == room_id for r in page.get("chunk", [])):
                return True
            since = page.get("next_batch")
            if not since:
                return False

    def alias_target(self, alias: str) -> str | None:
        """The room an alias points to, or None if it points nowhere."""
        r = requests.get(f"{self.homeserver_url}/_matrix/client/v3/directory/room/"
                         f"{quote(alias, safe='')}",
                         headers={"Authorization": f"Bearer {self.access_token}"}, timeout=15)
        if r.status_code == 404:
            return None
        assert r.status_code == 200, f"alias {alias} -> {r.status_code} {r.text[:300]}"
        return r.json()["room_id"]

    async def room_state(self, room_id: str, etype: str, state_key: str = "") -> dict | None:
        import nio

        resp = await self.client.room_get_state_event(room_id, etype, state_key)
        if isinstance(resp, nio.RoomGetStateEventResponse):
            return resp.content
        return None


class EphemeralWatch:
    """Follows one room's ephemeral events of one type (`m.typing`, `m.receipt`) through a
    sync stream of a Matrix user's own: its own position, so the harness's timeline sync is
    left alone, and each poll continues from the last (Synapse answers identical initial
    syncs from a cache for a while, so repeating one would show nothing new)."""

    def __init__(self, homeserver_url: str, viewer: "MatrixUser", matrix_room: str, etype: str):
        self.url = f"{homeserver_url}/_matrix/client/v3/sync"
        self.headers = {"Authorization": f"Bearer {viewer.access_token}"}
        self.room = matrix_room
        self.etype = etype
        self.filter = json.dumps({
            "room": {"rooms": [matrix_room], "timeline": {"limit": 1}, "state": {"types": []},
                     "ephemeral": {"types": [etype]}},
            "presence": {"not_types": ["*"]}, "account_data": {"not_types": ["*"]}})
        self.since: str | None = None

    def poll(self, timeout_ms: int = 500) -> list[dict]:
        """The room's events of the type since the last poll (the first: the current ones)."""
        params = {"filter": self.filter, "timeout": str(timeout_ms)}
        if self.since:
            params["since"] = self.since
        r = requests.get(self.url, params=params, headers=self.headers, timeout=30)
        r.raise_for_status()
        body = r.json()
        self.since = body["next_batch"]
        room = body.get("rooms", {}).get("join", {}).get(self.room, {})
        return [e for e in room.get("ephemeral", {}).get("events", [])
                if e.get("type") == self.etype]


# --------------------------------------------------------------------------------------------
# Small helpers for assertions


def relates_to(event: dict) -> dict:
    return event.get("content", {}).get("m.relates_to") or {}


def is_message(event: dict, msgtype: str | None = None) -> bool:
    if event.get("type") != "m.room.message":
        return False
    content = event.get("content", {})
    if not content:  # redacted
        return False
    return msgtype is None or content.get("msgtype") == msgtype


def is_edit(event: dict) -> bool:
    return relates_to(event).get("rel_type") == "m.replace"


def live_messages(events: Iterable[dict]) -> list[dict]:
    """Room messages that are neither edits nor redacted, in order."""
    return [e for e in events if is_message(e) and not is_edit(e)]


def tiny_png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (200, 30, 90)) -> bytes:
    """A valid PNG, made here (no files shipped)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


# --------------------------------------------------------------------------------------------
# A whole stack: Synapse with weft as its application service


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 between weft and Synapse that passes every request on,
    except those a test asked to fail: `fail(method, path_pattern, status, times)` answers the
    next `times` matching requests with `status` (and a Matrix error body) instead, and
    `hang(method, path_pattern, seconds)` holds them first. `hits` counts the faults it
    served, so a test can show the fault really happened."""

    def __init__(self, upstream: str):
        import http.server
        import threading

        self.upstream = upstream.rstrip("/")
        self.rules: list[dict] = []
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rule = proxy._take(self.command, self.path)
                if rule is not None and rule.get("hang"):
                    time.sleep(rule["hang"])  # a homeserver that does not answer in time
                    rule = None
                if rule is not None:
                    data = json.dumps({"errcode": rule["errcode"],
                                       "error": "injected by the test proxy"}).encode()
                    self.send_response(rule["status"])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                try:
                    r = requests.request(self.command, proxy.upstream + self.path,
                                         headers=headers, data=body, timeout=60,
                                         allow_redirects=False)
                except requests.RequestException:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                         "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_PUT = do_POST = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.server.server_address[1]}"

    def fail(self, method: str, path_pattern: str, status: int, times: int = 1,
             errcode: str = "M_UNKNOWN") -> str:
        """Fails the next `times` requests matching; returns the rule's name for `hits`."""
        name = f"{method} {path_pattern} {status}"
        with self.lock:
            self.rules.append({"method": method, "pattern": re.compile(path_pattern),
                               "status": status, "left": times, "errcode": errcode,
                               "name": name})
        return name

    def hang(self, method: str, path_pattern: str, seconds: float, times: int = 1000) -> str:
        """Holds the next `times` matching requests for `seconds` before passing them on."""
        name = f"{method} {path_pattern} hang"
        with self.lock:
            self.rules.append({"method": method, "pattern": re.compile(path_pattern),
                               "status": 0, "left": times, "errcode": "", "name": name,
                               "hang": seconds})
        return name

    def _take(self, method: str, path: str) -> dict | None:
        with self.lock:
            for rule in self.rules:
                if rule["left"] > 0 and rule["method"] == method and rule["pattern"].search(path):
                    rule["left"] -= 1
                    self.hits[rule["name"]] = self.hits.get(rule["name"], 0) + 1
                    return rule
        return None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Stack:
    """Synapse plus a weft server registered with it as an application service.

    `prepare()` runs `weft matrix registration` (the registration file is what Synapse loads
    and what weft reads), writes weft.toml with the `[matrix]` section the command printed,
    and writes Synapse's configuration and keys. `start()` starts both and waits until both
    answer; `stop()` stops both."""

    def __init__(self, workdir: Path, *, binary: Path, python: str = sys.executable,
                 server_name: str = "weft.test", proxied: bool = False):
        self.workdir = workdir
        self.server_name = server_name
        self.proxied = proxied
        self.proxy: FaultProxy | None = None
        self.registration_path = workdir / "registration.yaml"
        self.weft = Weft(workdir / "weft", binary=binary)
        self.synapse = Synapse(workdir / "synapse", registration=self.registration_path,
                               server_name=server_name, python=python)

    def prepare(self) -> "Stack":
        self.weft.workdir.mkdir(parents=True, exist_ok=True)
        if self.proxied and self.proxy is None:
            self.proxy = FaultProxy(self.synapse.url)
        self.weft.generate_registration(
            server_name=self.server_name,
            homeserver_url=self.proxy.url if self.proxy else self.synapse.url,
            output=self.registration_path,
        )
        if not self.registration_path.is_file():
            raise RuntimeError(
                f"`weft matrix registration` wrote no file at {self.registration_path}"
            )
        self.weft.write_config()
        self.synapse.write_config()
        self.synapse.generate_keys()
        return self

    def start(self) -> "Stack":
        self.synapse.start()
        self.weft.start()
        return self

    def stop(self) -> None:
        self.weft.stop()
        self.synapse.stop()
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None

    @property
    def registration(self) -> dict:
        return yaml.safe_load(self.registration_path.read_text())

    def puppet(self, user: "WeftUser") -> str:
        return user.mxid(self.server_name)

    def alias(self, community: str, room: str) -> str:
        return f"#{community}_{room}:{self.server_name}"

    def synapse_request(self, method: str, path: str, *, as_user: str | None = None,
                        **kw) -> requests.Response:
        """Calls Synapse's client-server API with the AS token, as `as_user` if given (what
        weft itself does, for a test to act behind weft's back)."""
        params = dict(kw.pop("params", {}) or {})
        if as_user:
            params["user_id"] = as_user
        kw.setdefault("timeout", 15)
        return requests.request(
            method, f"{self.synapse.url}{path}", params=params,
            headers={"Authorization": f"Bearer {self.registration['as_token']}"}, **kw)

    def appservice_request(self, method: str, path: str, *, token: str | None = "hs",
                           **kw) -> requests.Response:
        """Calls weft's AS API as the homeserver would (Bearer hs_token by default)."""
        headers = kw.pop("headers", {})
        if token == "hs":
            token = self.registration["hs_token"]
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kw.setdefault("timeout", 15)
        return requests.request(method, f"{self.weft.url}/_matrix/app/v1{path}",
                                headers=headers, **kw)
