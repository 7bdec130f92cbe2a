"""A CPU-time sampler for the ``tollgate serve`` process of a benchmark (on when ``TOLLGATE_CPU_SAMPLES`` names a
directory; anything else started with this directory on PYTHONPATH is left alone).

py-spy samples wall-clock time of a thread that is not idle: on a loaded machine a process that is runnable but
preempted (after a socket write woke its peer, say) is sampled where it stands, and its socket writes looked like a
third of the CPU. This samples on ``ITIMER_PROF``, which counts the process's own CPU time (user and system), so a
stack is recorded per slice of CPU actually spent: a C call (a system call) is charged to the Python frame that
made it. Stacks are written every 2 s to ``<dir>/cpu-<pid>.txt``, one ``frame;frame;... count`` line per stack;
``summary.py`` sums them.

    PYTHONPATH=bench/cpu_sampler:plugins TOLLGATE_CPU_SAMPLES=/tmp/samples python bench/run.py --targets proxy ...
    python bench/cpu_sampler/summary.py /tmp/samples/cpu-*.txt
"""

import os

_DIR = os.environ.get("TOLLGATE_CPU_SAMPLES")


def _is_tollgate_serve() -> bool:
    try:
        with open("/proc/self/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return b"tollgate" in argv and b"serve" in argv


if _DIR and _is_tollgate_serve():
    import collections
    import signal
    import threading
    import time

    _counts: collections.Counter = collections.Counter()

    def _sample(signum, frame):
        stack = []
        while frame is not None:
            code = frame.f_code
            where = code.co_filename.split("site-packages/")[-1].split("plugins/")[-1]
            stack.append(f"{code.co_name} ({where}:{code.co_firstlineno})")
            frame = frame.f_back
        _counts[";".join(reversed(stack))] += 1

    def _write_every_2s(path: str) -> None:
        while True:
            time.sleep(2)
            with open(path + ".tmp", "w") as out:
                for stack, count in list(_counts.items()):
                    out.write(f"{stack} {count}\n")
            os.replace(path + ".tmp", path)

    signal.signal(signal.SIGPROF, _sample)
    signal.setitimer(signal.ITIMER_PROF, 0.0005, 0.0005)
    threading.Thread(target=_write_every_2s, args=(os.path.join(_DIR, f"cpu-{os.getpid()}.txt"),),
                     daemon=True).start()
