"""Throughput of the tutorial model on 1 process or under torchrun, and the cost of the per-step stop flag.

    python benchmarks/distributed_scaling.py --data-dir ../shared/data --batch-size 32
    torchrun --nproc-per-node 2 benchmarks/distributed_scaling.py --data-dir ../shared/data --batch-size 16

Prints one line (rank 0): processes, threads per process, per-process and global batch, steps,
seconds and sequences/s of each epoch, and the mean time of one ``any_rank`` stop-flag all-reduce.
"""

from __future__ import annotations

import argparse
import time

import torch

import seqclf
from seqclf import distributed
from seqclf.history import Record
from seqclf.trainer import Source


class EpochEndStopTrainer(seqclf.Trainer):
    """For comparison only: ranks agree on ``should_stop`` at epoch ends, not after every step."""

    _in_epoch = False

    def run_epoch(self, train: Source, evaluation: Source | None) -> Record | None:
        self._in_epoch = True
        try:
            return super().run_epoch(train, evaluation)
        finally:
            self._in_epoch = False

    def _agree_to_stop(self) -> bool:
        return self.state.should_stop if self._in_epoch else super()._agree_to_stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--train-limit", type=int, default=8192)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--no-step-flag", action="store_true", help="agree on should_stop at epoch ends only")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seqclf.seed_everything(0)
    train = seqclf.datasets.fashion_mnist(args.data_dir, train=True, download=False).subset(slice(args.train_limit))
    model = seqclf.SequenceClassifier(input_size=28, hidden_size=64, num_classes=10)
    trainer_class = EpochEndStopTrainer if args.no_step_flag else seqclf.Trainer
    trainer = trainer_class(model, epochs=args.epochs, batch_size=args.batch_size, seed=0, device="cpu")
    history = trainer.fit(train)
    calls = 200
    distributed.barrier()
    started = time.perf_counter()
    for _ in range(calls):
        distributed._any_rank(False)
    flag_us = (time.perf_counter() - started) / calls * 1e6
    if trainer.is_main_process:
        seconds = [float(value) for value in history.series("duration_s")]  # type: ignore[arg-type]
        epochs = " ".join(
            f"epoch{i}={s:.2f}s ({args.train_limit / s:.0f} seq/s)" for i, s in enumerate(seconds)
        )
        steps_per_epoch = trainer.state.step // len(seconds)
        step_ms = seconds[-1] / steps_per_epoch * 1e3
        print(
            f"step_flag={not args.no_step_flag} processes={trainer.world_size} "
            f"threads={torch.get_num_threads()} batch={trainer.batch_size} "
            f"global_batch={trainer.global_batch_size} steps/epoch={steps_per_epoch} {epochs} "
            f"step={step_ms:.2f}ms stop_flag_allreduce={flag_us:.0f}us",
            flush=True,
        )


if __name__ == "__main__":
    main()
