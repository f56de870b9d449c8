#!/usr/bin/env python3
"""The Matrix test rig's Python environment.

Creates (or reuses) a virtualenv under ``target/matrix-venv`` holding everything in
``requirements.txt``: a real homeserver (Synapse), a real Matrix client library (matrix-nio),
pytest and requests. Idempotent: a stamp file in the venv holds a hash of the requirements and
of the interpreter, and when it matches nothing is installed. Standard library only, so the
system ``python3`` can run it:

    python3 tests/matrix/rig.py          # prints the venv's python on stdout

Progress goes to stderr.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
REQUIREMENTS = HERE / "requirements.txt"
VENV = REPO / "target" / "matrix-venv"
STAMP = VENV / ".weft-requirements.sha256"


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def wanted_stamp(base_python: str) -> str:
    """What the stamp must hold: the requirements and the interpreter they were installed for."""
    h = hashlib.sha256()
    h.update(REQUIREMENTS.read_bytes())
    version = subprocess.run(
        [base_python, "-c", "import sys; print(sys.version)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    h.update(version.encode())
    return h.hexdigest()


def ensure_venv(base_python: str | None = None) -> Path:
    """Returns the venv's python, creating or updating the venv first if needed."""
    base_python = base_python or shutil.which("python3") or sys.executable
    stamp = wanted_stamp(base_python)
    py = venv_python()
    if STAMP.is_file() and STAMP.read_text().strip() == stamp and py.exists():
        return py
    started = time.monotonic()
    if VENV.exists() and not py.exists():
        shutil.rmtree(VENV)
    if not VENV.exists():
        log(f"creating the Matrix test virtualenv in {VENV.relative_to(REPO)}")
        made = subprocess.run([base_python, "-m", "venv", str(VENV)])
        if made.returncode != 0:
            shutil.rmtree(VENV, ignore_errors=True)
            raise RuntimeError(
                f"{base_python} -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
            )
    if STAMP.exists():
        STAMP.unlink()
    log("installing the Matrix test requirements (Synapse, matrix-nio, pytest)")
    pip = [str(py), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["install", "-r", str(REQUIREMENTS)], check=True)
    # Written last: an interrupted install leaves no stamp and is redone next time.
    STAMP.write_text(stamp + "\n")
    log(f"Matrix test virtualenv ready in {time.monotonic() - started:.1f} s")
    return py


def main() -> int:
    try:
        py = ensure_venv()
    except (subprocess.CalledProcessError, RuntimeError) as e:
        log(f"setting up the Matrix test virtualenv failed: {e}")
        return 1
    print(py)
    return 0


if __name__ == "__main__":
    sys.exit(main())
