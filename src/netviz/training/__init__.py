"""Training, in the steps of a training script (pytorch/examples' MNIST, nanoGPT's train.py).

:func:`train` reads top to bottom: resolve the config, open the run folder, load the data, build
the model and optimiser, then per epoch :func:`train_one_epoch`, :func:`eval_accuracy`, record the
metrics and checkpoint; at the end the final checkpoint, the curves and ``summary.json``.
``train(model="mnist", train_split="test[:8000]", eval_split="test[8000:]", epochs=3, seed=1)``
returns a :class:`netviz.runs.Run`. The run folder's layout is :class:`netviz.runs.RunFolder`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netviz.runs import Run
    from netviz.sources import ModelSource

from netviz.training.config import RECIPES, TrainConfig, configure, resolve_config
from netviz.training.loop import TrainState, interrupts, load_splits, milestone_line, record_epoch, train_one_epoch
from netviz.training.session import (
    TrainingInterrupted,
    finish,
    join_processes,
    restore,
    run_epoch,
    save_interrupted,
    say_overlap,
    setup,
    start_folder,
)

__all__ = ["RECIPES", "TrainConfig", "TrainState", "TrainingInterrupted", "milestone_line", "record_epoch",
           "resolve_config", "train", "train_one_epoch"]


def train(model: str | ModelSource | None = None, *, config: str | Path | None = None, resume: str | Path | None = None,
          quiet: bool = False, **overrides: Any) -> Run:
    """Train a model and write a run folder; returns the loaded :class:`Run`.

    Keyword overrides are :class:`TrainConfig` fields (``epochs=3``, ``train_split="test[:8000]"`` ...).
    ``resume`` continues the run folder (or its ``last.pt``) exactly where it stopped, with this
    or another number of processes. Under torchrun the model is wrapped in
    DistributedDataParallel (see :func:`train_one_epoch`) and rank 0 alone writes the run folder.
    """
    started = time.time()
    # 1. config and processes
    cfg, folder, saved, source = configure(model, config, resume, overrides)
    device, ctx = join_processes(cfg, new_run=saved is None)
    # 2. data, before the run folder exists: a missing data set leaves nothing behind
    splits = load_splits(cfg)
    say_overlap(cfg, splits)
    # 3. model, data on its device, optimiser
    s = setup(cfg, source, splits, device, ctx, quiet)
    # 4. the run folder: a new one, or the interrupted one with its state restored
    if saved is None:
        start_folder(s)
    else:
        restore(s, folder, saved, quiet)
    # 5. epochs; Ctrl-C keeps a resumable checkpoint, taken between two steps
    with interrupts() as interrupt:
        try:
            while s.state.epoch < cfg.epochs:
                run_epoch(s, quiet, interrupt)
        except KeyboardInterrupt:
            save_interrupted(s, interrupt)
    # 6. final weights, curves, summary
    return finish(s, started, device, quiet)
