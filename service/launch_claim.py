"""One launch of a sweep's Ray job at a time, across threads and API processes: the launch is claimed in the
database first (db.sweeps.claim_launch, a conditional UPDATE) and the claim is a lease that a background thread
renews while the launch runs. A request that dies mid-launch stops renewing, its claim lapses within
LAUNCH_LEASE_S, and a retry launches instead; at once when the claim names a process on this host that no longer
exists (an API restarted after a crash). A request that finds the sweep being launched by another waits for that
launch to end (service.submission.launch_sweep)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from db.sweeps import claim_launch, launch_in_progress, release_launch_claim, renew_launch_claim

log = logging.getLogger(__name__)

LAUNCH_LEASE_S = 10.0  # a claim not renewed for this long has lapsed (its request died)
RENEW_EVERY_S = LAUNCH_LEASE_S / 4
WAIT_POLL_S = 0.2  # how often a waiting request looks whether the launch it waits for has ended
LAUNCH_WAIT_S = 150.0  # the longest a request waits for another's launch (a local head's start and job agent)


def new_claim() -> str:
    """`host:pid:random`: whose claim it is, so that a claim of a process that died on this host is known dead."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:16]}"


def is_dead(claim: str | None) -> bool:
    """The claim names another process on this host that no longer exists (a zombie or a reused pid counts as
    alive: then the lease decides)."""
    host, _, rest = (claim or "").partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname()[:30] or not pid.isascii() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


@contextmanager
def launch_claim(sessions: sessionmaker[Session], sweep_id: int, *, relaunch: bool = False,
                 dead_claim: str | None = None, held: str | None = None) -> Iterator[bool]:
    """True inside the block when this request holds the sweep's launch claim (renewed until the block ends, then
    released); False when it could not be taken (another request is launching, or the sweep is not queued, or has
    a job and `relaunch` is False). `dead_claim`: a claim whose process died (is_dead), taken over. `held`: the
    claim this request took when it stored the sweep (service.submission.store_sweep), kept if still ours."""
    claim = held or new_claim()
    with sessions.begin() as s:
        claimed = renew_launch_claim(s, sweep_id=sweep_id, claim=claim, lease_s=LAUNCH_LEASE_S) if held else \
            claim_launch(s, sweep_id=sweep_id, claim=claim, lease_s=LAUNCH_LEASE_S, relaunch=relaunch,
                         dead_claim=dead_claim)
    if not claimed:
        yield False
        return
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(RENEW_EVERY_S):
            try:
                with sessions.begin() as s:
                    renew_launch_claim(s, sweep_id=sweep_id, claim=claim, lease_s=LAUNCH_LEASE_S)
            except SQLAlchemyError as e:  # the next renewal may work; the claim lapses if none does
                log.warning("sweep %d: launch claim not renewed (%s)", sweep_id, type(e).__name__)

    renewer = threading.Thread(target=renew, name=f"launch-claim-{sweep_id}", daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        stop.set()
        renewer.join()
        with sessions.begin() as s:
            release_launch_claim(s, sweep_id=sweep_id, claim=claim)


def wait_while_launching(sessions: sessionmaker[Session], sweep_id: int, deadline: float) -> bool:
    """Wait while another live request holds the sweep's launch claim. True when that launch ended, its claim lapsed
    or its process died (or none was running) before `deadline` (time.monotonic()), False when the deadline came
    first."""
    while True:
        with sessions() as s:
            claim = launch_in_progress(s, sweep_id=sweep_id)
        if claim is None or is_dead(claim):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(WAIT_POLL_S)
