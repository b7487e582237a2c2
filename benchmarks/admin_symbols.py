"""The README's picture of /admin's symbols: a run served with a throw-away SQLite store, two messages classified
with explanations, the newest decisions' rows of /admin photographed in headless Chromium (Debian's, as the tests
drive it).

    .venv/bin/python -m benchmarks.admin_symbols runs/stacked --out benchmarks/admin_symbols.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from spamtune.inference import TextClassifier
from spamtune.monitoring.store import PredictionStore
from spamtune.serving import ServeLimits, ServeOptions, create_app
from spamtune.serving.loadtest import post_json
from tests.conftest import running
from tests.helpers import launch_chromium

MESSAGES = ["WINNER!! As a valued network customer you have been selected to receive a £900 prize reward! To claim "
            "call 09061701461.", "Are we still on for dinner tonight? I'll bring the wine."]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/admin_symbols.png"))
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        store = PredictionStore.open(f"sqlite:///{tmp}/p.sqlite")
        app = create_app(TextClassifier.load(args.run), ServeLimits(explain_budget_s=60), ServeOptions(store=store))
        with running(app) as url:
            code, _ = post_json(url + "/classify", {"texts": MESSAGES, "explain": True}, timeout=300)
            assert code == 200, code
            app.state.service.writer.flush(10)
            with sync_playwright() as p:
                browser = launch_chromium(p)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(url + "/admin")
                page.wait_for_function("document.body.dataset.ready === '1'", timeout=60_000, polling=100)
                page.locator("#rows > tr").first.locator("xpath=ancestor::table").screenshot(path=str(args.out))
                browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
