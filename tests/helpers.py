"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from spamtune.config import TrainArgs


def minilm_args(**kw) -> TrainArgs:
    return TrainArgs(**{"backend": "hf", "model": "all-minilm-l6-v2", "trainable": "all", "lr": 2e-4, "epochs": 4,
                        "eval_freq": 1000, **kw})


CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def launch_chromium(playwright):
    """Debian's headless Chromium driven by Playwright (no browser download; scripts/test.sh installs it), with the
    flags that keep it off this machine's closed network."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian chromium is required (scripts/test.sh installs it)"
    return playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
