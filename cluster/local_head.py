"""A Ray head on 127.0.0.1 that outlives the command that started it (for Serve on one machine).

It is Ray's own `ray start --head --block`, run as a child in its own session; stopping it sends
SIGTERM to exactly that process, which takes down the Ray processes it started and nothing else
(never `ray stop`, which would kill every Ray cluster on the machine). Token auth stays on.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cluster.ray_compat import serve_cluster_env

STATE_FILE = "local_head.json"


def state_dir() -> Path:
    return Path(os.environ.get("BIOMED_HOME", Path.home() / ".biomed"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_head() -> dict | None:
    """The running local head's record, or None (a stale record is removed)."""
    path = state_dir() / STATE_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if not _alive(record["pid"]):
        path.unlink(missing_ok=True)
        return None
    return record


def prepare_driver_auth(address: str | None) -> None:
    """Make this process send Ray's auth token to the clusters this tool runs itself.

    With no address, a command joins the local head or starts an embedded cluster; both run
    with token auth on. A driver joining an existing cluster sends its token only under
    RAY_AUTH_MODE=token, which Ray reads once, when it is imported: call this before anything
    imports ray. Other clusters (an explicit address, $RAY_ADDRESS) keep the user's settings.
    """
    if os.environ.get("RAY_AUTH_MODE") or os.environ.get("RAY_ADDRESS"):
        return
    head = read_head()
    if address is None or (head is not None and address == head["address"]):
        os.environ["RAY_AUTH_MODE"] = "token"


def ensure_auth_token() -> None:
    """Generate Ray's auth token (~/.ray/auth_token) unless one exists or is given by env var."""
    # `ray start --head` enables token auth only when a token already exists.
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    if not (Path.home() / ".ray" / "auth_token").is_file():
        subprocess.run([str(Path(sys.executable).with_name("ray")), "get-auth-token", "--generate"], check=True, capture_output=True)


def start_head(*, num_cpus: int | None = None, started_by: str = "serve", timeout_s: float = 60.0) -> dict:
    """Start a local head (or return the running one): {"address", "dashboard_url", "pid",
    "started_by"}. `started_by` ("serve" or "cluster") decides which command's shutdown stops it."""
    running = read_head()
    if running is not None:
        return running
    ensure_auth_token()
    gcs_port, dashboard_port = free_port(), free_port()
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    # Its own temp dir: `ray start` records its address in <temp dir>/ray_current_cluster, and in
    # the shared /tmp/ray that stale record would steer other clusters' "auto" look-ups (Ray
    # Train's placement-group cleaner) to this head after it stops. Short: it holds socket paths.
    temp_dir = Path(tempfile.gettempdir()) / f"biomed-head-{gcs_port}"
    command = [
        str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--temp-dir={temp_dir}",
        "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
        # Ray's fixed defaults (agent HTTP 52365, client server 10001) clash with any other Ray on
        # this machine; a clashing agent disables the Jobs API ("No available agent").
        f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}",
        "--disable-usage-stats",
    ]
    if num_cpus is not None:
        command.append(f"--num-cpus={num_cpus}")
    # Jobs submitted to this head run `python -m jobs.cli ...`: the interpreter that started the
    # head (the project's venv) must come first on their PATH, activated or not.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    # Serve on this head gets direct ingress (replicas on their own ports; see ray_compat).
    env = {**serve_cluster_env(), **os.environ, "RAY_AUTH_MODE": "token", "PATH": path}
    log = open(folder / "local_head.log", "ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    record = {"address": f"127.0.0.1:{gcs_port}", "dashboard_url": f"http://127.0.0.1:{dashboard_port}", "pid": process.pid, "started_by": started_by}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"local Ray head exited with code {process.returncode}; see {folder / 'local_head.log'}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", dashboard_port)) == 0:
                break
        time.sleep(0.25)
    else:
        stop_pid(process.pid)
        raise RuntimeError(f"local Ray head did not come up in {timeout_s:.0f} s; see {folder / 'local_head.log'}")
    (folder / STATE_FILE).write_text(json.dumps(record))
    return record


def stop_pid(pid: int, *, grace_s: float = 10.0) -> None:
    """Stop the head started as `pid` and every process in its session (its process group: the
    Ray processes it spawned, and nothing else): SIGTERM, then SIGKILL after `grace_s`."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            # The group too: `ray start --block` alone can take 30 s or more to take down the
            # workers a finished job left behind.
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _alive(pid):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)
        if not _alive(pid):
            return


def stop_head(*, only_started_by: str | None = None) -> bool:
    """Stop the local head this tool started; False when none was running (or it was started by
    another command than `only_started_by`: `serve shutdown` leaves a `cluster up` head alone)."""
    record = read_head()
    if record is None or (only_started_by is not None and record.get("started_by", "serve") != only_started_by):
        return False
    stop_pid(record["pid"])
    (state_dir() / STATE_FILE).unlink(missing_ok=True)
    return True
