#!/usr/bin/env python3
"""Runs a script under torchrun on this host, as a user would: `torchrun --nproc_per_node N
script args...`, on a free loopback port so that tests may run side by side.

Debian's torchrun (torch 1.13 under Python 3.11) fails before starting a worker when no
`--redirects`/`--tee` is given ('NoneType' object has no attribute 'get': Python 3.11 no longer
lists the zero flag `Std.NONE` when iterating, so torchrun's default "0" parses to None).
`--redirects 1 --tee 1` (stdout to torchrun's log and to the console) avoids it; the README
says so too.

    under_torchrun.py [--nproc-per-node N] [--timeout S] script.py [args...]
"""

import argparse
import os
import signal
import subprocess
import sys

from free_port import free_port


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc-per-node", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    command = [sys.executable, "-m", "torch.distributed.run",
               "--nproc_per_node", str(options.nproc_per_node),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port(span=2)),
               "--redirects", "1", "--tee", "1", options.script, *options.args]
    print("+", " ".join(command), flush=True)
    # A session of its own, so that a timeout ends torchrun's workers too, not only its agent.
    with subprocess.Popen(command, start_new_session=True) as torchrun:
        try:
            return torchrun.wait(timeout=options.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(torchrun.pid, signal.SIGKILL)
            print(f"under_torchrun.py: torchrun did not finish within {options.timeout:.0f} s",
                  file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
