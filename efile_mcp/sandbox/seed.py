"""A small, realistic home directory for tests, the demo and benchmarks."""

from __future__ import annotations

from pathlib import Path

#: Files in scratch/big-run: enough that removing it exceeds the default inline_max_entries (200)
#: and is queued as a background task.
BIG_RUN_FILES = 300


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def seed_sample_tree(root: Path) -> Path:
    """Populate `root` (created if missing) with the sample home; returns `root`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    log_line = "step {i:04d} loss=0.{i:04d} lr=3e-4\n"

    run1 = root / "scratch" / "run-001"
    _write(run1 / "stdout.log", "".join(log_line.format(i=i) for i in range(12)))
    _write(run1 / "stderr.log", "warning: node h07r2n05 slow to respond\n")
    _write(run1 / "result.csv", "epoch,loss\n" + "".join(f"{i},{1 / (i + 1):.4f}\n" for i in range(20)))
    _write(run1 / "checkpoints" / "ckpt-0001.pt", "fake checkpoint 1\n" * 10)
    _write(run1 / "checkpoints" / "ckpt-0002.pt", "fake checkpoint 2\n" * 10)

    run2 = root / "scratch" / "run-002"
    _write(run2 / "stdout.log", "".join(log_line.format(i=i) for i in range(5)))
    _write(run2 / "slurm-123456.out", "srun: job 123456 queued and waiting for resources\n")

    _write(root / "scratch" / "tmp.log", "temporary output\n" * 8)
    _write(
        root / "projects" / "paper (draft)" / "main.tex",
        "\\documentclass{article}\n\\begin{document}\nDraft.\n\\end{document}\n",
    )
    _write(root / "数据" / "结果.csv", "样本,值\n" + "".join(f"s{i},{i * 3}\n" for i in range(10)))
    _write(
        root / ".ssh" / "authorized_keys", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheSandboxOnly demo@laptop\n"
    )
    _write(root / ".bashrc", "export PATH=$HOME/bin:$PATH\nmodule load compiler/gcc/12\n")
    _write(root / "notes.txt", "remember: clean scratch/ before the quota review\n")

    big = root / "scratch" / "big-run"
    for i in range(BIG_RUN_FILES):
        _write(big / f"shard-{i % 3}" / f"out-{i:04d}.dat", f"block {i}\n" * 20)
    # The old run finished weeks ago: a clean-up by age ("big and old") has something to find.
    _age(big, days=OLD_RUN_DAYS)
    return root


#: How old the sample's big-run is, in days.
OLD_RUN_DAYS = 45


def _age(top: Path, *, days: float) -> None:
    import os
    import time

    stamp = time.time() - days * 86400
    for base, dirs, files in os.walk(top, topdown=False):
        for name in files + dirs:
            os.utime(os.path.join(base, name), (stamp, stamp), follow_symlinks=False)
    os.utime(top, (stamp, stamp))
