"""Fine-tuning (book §6.6–6.7), in the order a run goes through it:

    prefix_cache.py   the exact fast path: frozen layers run once per message
    loss.py           the book's calc_loss_batch / calc_loss_loader / calc_accuracy_loader, for any task
    setup.py          TrainSetup: the model (built by backends/), the data (loaders) and the optimisation
    state.py          TrainState / History and the resume checkpoint
    fit.py            the loop, with callbacks and a metric-logger seam
    calibrate.py      after the fit: temperature, operating point (binary), label thresholds (multi-label), the
                      n-gram models, the drift reference (calibration/), the memo of logits (runs.LogitsMemo)
    run.py            the whole run: train_run, resume_run
    plots.py          the book's plot_values (loss and accuracy curves) and the evaluation's figures
"""

from spamtune.training.calibrate import load_best_epoch
from spamtune.training.fit import Callback, JsonlLogger, KeepSetup, MetricLogger, fit
from spamtune.training.run import resume_run, train_run
from spamtune.training.setup import TrainSetup, setup
from spamtune.training.state import History, TrainState

__all__ = ["Callback", "History", "JsonlLogger", "KeepSetup", "MetricLogger", "TrainSetup", "TrainState", "fit",
           "load_best_epoch", "resume_run", "setup", "train_run"]
