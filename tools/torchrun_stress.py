"""Stress test for clean exits: run the example under torchrun many times; every run must exit 0.

A data-parallel job that trains, prints its result and then dies at interpreter exit
(``terminate called without an active exception``, SIGABRT) is marked failed by a job
scheduler. This runs the same 2-process job ``--runs`` times in a row and counts the
exit codes; it is slow (one torchrun start per run), so it is not part of the test suite.

    python tools/torchrun_stress.py --data-dir DATA --runs 20

Exits 0 when every run exited 0, 1 otherwise (printing the stderr tail of each failure).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mnist_lstm.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder holding FashionMNIST/raw")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--train-limit", type=int, default=640, help="images per run (0: the whole training set)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    args = parser.parse_args(argv)
    failures = 0
    for run in range(1, args.runs + 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(args.nproc),
                   "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
                   str(EXAMPLE), "--data-dir", args.data_dir, "--dataset", "fashion-mnist", "--epochs", "1",
                   "--batch-size", "16", "--no-download", "--no-progress"]
        if args.train_limit:
            command += ["--train-limit", str(args.train_limit)]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
        seconds = time.perf_counter() - started
        last = result.stdout.strip().splitlines()[-1:] or ["(no output)"]
        print(f"run {run}/{args.runs}: exit {result.returncode} in {seconds:.1f} s: {last[0]}", flush=True)
        if result.returncode != 0:
            failures += 1
            print("\n".join(result.stderr.strip().splitlines()[-8:]), flush=True)
    print(f"{args.runs - failures}/{args.runs} runs exited 0")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
