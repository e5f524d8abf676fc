"""What protects a run directory while a run trains in it: one run per workdir (a lock that a dead run's
successor takes over), a write and free-space check before training, and SIGTERM/SIGINT turned into "finish the
step, save a checkpoint, exit" so a preempted run resumes where it stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

from jaxdl.errors import WorkdirError

LOCK_NAME = '.jaxdl.lock'


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class WorkdirLock:
    """`WORKDIR/.jaxdl.lock` holds the pid and host of the run training there. A live holder on this host makes a
    second run fail at once; a holder that is dead (crashed, killed) is taken over with a note."""

    def __init__(self, workdir: Path):
        self.path = Path(workdir) / LOCK_NAME
        self.taken_over: dict | None = None
        self._held = False

    def acquire(self) -> WorkdirLock:
        record = {'pid': os.getpid(), 'host': socket.gethostname(), 'since': time.strftime('%Y-%m-%dT%H:%M:%S')}
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = self._holder()
            if holder and holder.get('pid') != os.getpid():
                if holder.get('host') != record['host']:
                    raise WorkdirError(
                        f'{self.path.parent} is in use by a run on host {holder.get("host")} (pid {holder.get("pid")}, '
                        f'since {holder.get("since")}); if that run is gone, delete {self.path} and try again'
                    ) from None
                if _alive(int(holder.get('pid', -1))):
                    raise WorkdirError(
                        f'{self.path.parent} is in use by another jaxdl run (pid {holder["pid"]}, since '
                        f'{holder.get("since")}); wait for it, stop it, or train into another --workdir'
                    ) from None
            self.taken_over = holder
            temporary = self.path.with_suffix(f'.{os.getpid()}')
            temporary.write_text(json.dumps(record))
            os.replace(temporary, self.path)  # atomic: two successors cannot both believe they hold it
        else:
            with os.fdopen(fd, 'w') as f:
                f.write(json.dumps(record))
        self._held = True
        return self

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None  # unreadable or half-written: nobody can prove they hold it

    def release(self) -> None:
        if self._held and (self._holder() or {}).get('pid') == os.getpid():
            self.path.unlink(missing_ok=True)
        self._held = False


def check_writable(workdir: Path, needed_bytes: int = 0) -> None:
    """Fails before training when the workdir cannot be written or has clearly too little free space."""
    import shutil

    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f'.write_test.{os.getpid()}'
        probe.write_bytes(b'ok')
        probe.unlink()
    except OSError as e:
        raise WorkdirError(
            f'cannot write to the workdir {workdir}: {e.strerror or e}; choose a writable --workdir'
        ) from None
    free = shutil.disk_usage(workdir).free
    if needed_bytes and free < needed_bytes:
        raise WorkdirError(
            f'{workdir} has {free / 2**20:.1f} MiB free, but checkpoints of this run need about '
            f'{needed_bytes / 2**20:.1f} MiB (two latest + best + one being written); free space or '
            f'choose another --workdir'
        )


class StopSignals:
    """Inside `with`, SIGTERM and SIGINT ask the training loop to stop after the current step (it then saves a
    checkpoint and raises Preempted) instead of killing the process mid-write. A second SIGINT stops at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: str | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals to the main thread only
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
