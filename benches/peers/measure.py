"""Runs one contender as a child process and measures it: wall time from spawn to exit, and the
peak resident memory of the whole process tree (the process and all its descendants, e.g. the
JVM and the Python workers of PySpark), sampled from /proc.

Each sample reads /proc/PID/status of every process known to be in the tree: the sum of their
VmRSS is the tree's resident memory at that instant, and VmHWM is each process's own exact
high-water mark since it started its program. The reported peak is the larger of the highest
sum and the highest single VmHWM, so a process whose peak falls between two samples is still
counted at its peak (only what happens after its last sample, at most one interval before it
exits, can be missed). Samples are 5 ms apart for the first 200 ms, so short runs are caught,
then 50 ms; the tree is re-discovered from /proc every 250 ms.

(`ru_maxrss` from wait4 is not used: Linux carries the forking parent's RSS over into the
child's value, so a child of a large harness would report the harness's size.)
"""
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass

FAST_SAMPLE_S, FAST_PERIOD_S = 0.005, 0.2
SAMPLE_S = 0.05
RESCAN_S = 0.25


@dataclass
class Measurement:
    exit_code: int          # negative: killed by that signal
    wall_s: float           # spawn to exit
    peak_rss_mib: float | None  # the tree's peak: max(highest sum of VmRSS, highest single VmHWM)
    largest_process_mib: float | None  # the highest VmHWM of a single process of the tree
    timed_out: bool


def _parents():
    """{pid: parent pid} of every process on the machine."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) is parenthesized and may hold spaces: split after it.
        fields = stat[stat.rfind(b")") + 2:].split()
        parents[int(entry)] = int(fields[1])
    return parents


def _descendants(root):
    children = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, ()))
    return tree


def _memory_kib(pid):
    """(VmRSS, VmHWM) of a process in KiB; (0, 0) once it has exited."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, hwm


def raise_priority():
    """Raises this (measuring) process's scheduling priority a little where allowed (as root),
    so that on a busy machine it still wakes up in time to sample and to see a child exit.
    Children get the original priority back. Returns that priority."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, base - 5)
    except PermissionError:
        pass
    return base


def run(cmd, *, env, cwd, stdout_path, stderr_path, cpus=None, timeout_s=None, priority=None):
    """Runs `cmd` to completion (or `timeout_s`, then kills its process group) and measures it.

    `cpus`: a set of CPU ids the process tree is confined to (sched_setaffinity), or None.
    `priority`: the nice value the child runs at (see raise_priority), or None to inherit ours.
    One thread samples and waits: between samples it polls a pidfd of the process, which turns
    readable the moment the process exits, so the wall time does not depend on the sampling.
    """

    def confine():
        if priority is not None:
            os.setpriority(os.PRIO_PROCESS, 0, priority)
        if cpus:
            os.sched_setaffinity(0, cpus)

    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                preexec_fn=confine, start_new_session=True)
        pidfd = os.pidfd_open(proc.pid)
        try:
            exited = select.poll()
            exited.register(pidfd, select.POLLIN)
            tree, last_scan = [proc.pid], start
            peak_sum = peak_hwm = 0
            timed_out = False
            while True:
                now = time.perf_counter()
                if now - last_scan >= RESCAN_S:
                    tree, last_scan = _descendants(proc.pid), now
                total = 0
                for pid in tree:
                    rss, hwm = _memory_kib(pid)
                    total += rss
                    peak_hwm = max(peak_hwm, hwm)
                peak_sum = max(peak_sum, total)
                if timeout_s and not timed_out and now - start >= timeout_s:
                    timed_out = True
                    os.killpg(proc.pid, signal.SIGKILL)
                interval = FAST_SAMPLE_S if now - start < FAST_PERIOD_S else SAMPLE_S
                if exited.poll(interval * 1000):
                    break
            wall = time.perf_counter() - start
        finally:
            os.close(pidfd)
        # The process has exited but is not reaped yet: while the zombie holds its pid, the
        # process group id cannot be reused, so leftover descendants (a daemon that outlived
        # its parent) are ended safely before the root is reaped.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    # No sample at all (the process exited before the harness got a CPU again, on a loaded
    # machine): the peak is unknown, not zero.
    peak = max(peak_sum, peak_hwm)
    return Measurement(exit_code=proc.returncode, wall_s=wall, peak_rss_mib=peak / 1024 if peak else None,
                       largest_process_mib=peak_hwm / 1024 if peak else None, timed_out=timed_out)
