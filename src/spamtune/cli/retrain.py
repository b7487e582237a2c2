"""`spamtune retrain`: a challenger from the champion's data plus users' corrections, compared with the champion."""

from __future__ import annotations

import argparse
import os
import textwrap

from spamtune.cli.args import add_correction_args, add_promotion_args
from spamtune.config import MIN_FEEDBACK

EPILOG = """\
examples:
  spamtune retrain --db "$DB" --run runs/smollm2 --out runs/smollm2-r1          # compare.md tells the verdict
  spamtune retrain --db "$DB" --registry /srv/spamtune/registry --promote        # champion: current; promoted
                                                                                 # if the policy passes
  spamtune retrain --db "$DB" --registry REG --min-feedback 50 --if-drift --since 7d --promote   # from cron

  # cron, nightly at 03:00 (exits 0 with "nothing to do" until there is something to learn):
  0 3 * * *  spamtune retrain --db "$DB" --registry /srv/spamtune/registry --min-feedback 50 --promote
  # or a systemd timer: ExecStart=/opt/spamtune/bin/spamtune retrain --db ... --registry ... --promote

What it learns: corrections marked learnable, each message once, never one in test.csv or unused.csv (the
comparison's sets), never one that contradicts the training data, at most --max-share of the training rows. A
fixed --holdout share of operators' corrected messages (by sha256) is held out for the comparison; end users'
corrections are never ground truth and at most --untrusted-share of the training rows. An end user's correction
(POST /feedback) against a prediction at least --confident sure is listed for review and not learnt until an
operator confirms it (`spamtune feedback ID LABEL` or /admin), or with --learn-unreviewed. Each learnt
correction goes into train with --boost perturbed copies (homoglyphs, leetspeak, spacing...), within --max-share,
so that a handful of them move the warm-started challenger.

Promotion guards, which nothing overrides: no FPR regression on the unused ham (--fpr-margin) and no test recall
collapse (--max-recall-drop), on the splits no user can write into.

The challenger starts from the champion's trained tensors (--from-scratch: from the base model) and is then
compared with it on test, the report half of the unused ham and the held-out corrections (compare.md).
"""


def add_parser(sub) -> None:
    p = sub.add_parser("retrain", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="train a challenger on users' corrections and compare it with the champion",
                       epilog=textwrap.dedent(EPILOG))
    p.add_argument("--db", help="prediction store URL (default: sqlite in $XDG_DATA_HOME/spamtune)")
    p.add_argument("--run", help="the champion run (default with --registry: its current version)")
    p.add_argument("--registry", default=os.environ.get("SPAMTUNE_REGISTRY"),
                   help="add the challenger to this registry as the next version (default: $SPAMTUNE_REGISTRY)")
    p.add_argument("--out", help="the challenger's run directory (new; default with --registry: inside it)")
    p.add_argument("--data-dir", help="the champion's data (default: RUN/data, or the data it was trained on)")
    p.add_argument("--promote", action="store_true", help="with --registry: promote it if the policy passes")
    p.add_argument("--force", action="store_true", help="with --promote: promote even if the policy says keep "
                                                        "(recorded in the report and the registry log)")
    p.add_argument("--from-scratch", action="store_true", help="train from the base model, not a warm start")
    p.add_argument("--epochs", type=int, help="training epochs (default: the champion's)")
    p.add_argument("--min-feedback", type=int, default=MIN_FEEDBACK,
                   help=f"learnable new corrections needed, else nothing to do (default: {MIN_FEEDBACK})")
    p.add_argument("--if-drift", action="store_true",
                   help="only when the champion's recent traffic raises a drift alert (spamtune monitor's tests)")
    p.add_argument("--since", help="the traffic --if-drift tests: 24h, 7d, or a date (default: all)")
    add_correction_args(p)
    add_promotion_args(p, "promotion: ")
    p.add_argument("--dry-run", action="store_true", help="say what it would learn and why not the rest; train "
                                                          "nothing")
    p.add_argument("--json", action="store_true", help="end with one line of JSON: the plan, the comparison, "
                                                       "the version")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import contextlib
    import datetime
    from pathlib import Path

    from spamtune.errors import ConfigError
    from spamtune.lifecycle import CorrectionPolicy, PromotionPolicy, Registry, RetrainOptions, retrain
    from spamtune.lifecycle.registry import RegistryError
    from spamtune.lifecycle.retrain import champion_data_dir, check_out, clean_stale, plan
    from spamtune.monitoring.report import parse_since
    from spamtune.monitoring.store import PredictionStore

    if (args.promote or args.force) and not args.registry:
        raise ConfigError("--promote and --force need --registry")
    if args.force and not args.promote:
        raise ConfigError("--force goes with --promote")
    options = RetrainOptions(
        from_scratch=args.from_scratch, epochs=args.epochs, min_feedback=args.min_feedback, if_drift=args.if_drift,
        drift_since=parse_since(args.since),
        corrections=CorrectionPolicy(holdout=args.holdout, max_share=args.max_share, confident=args.confident,
                                     boost=args.boost,
                                     learn_unreviewed=args.learn_unreviewed, untrusted_share=args.untrusted_share),
        promotion=PromotionPolicy(fpr_margin=args.fpr_margin, recall_margin=args.recall_margin, alpha=args.alpha,
                                  max_recall_drop=args.max_recall_drop))
    registry = Registry(args.registry) if args.registry else None
    if args.run is None and registry is None:
        raise ConfigError("give the champion with --run, or --registry")
    champion = Path(args.run) if args.run else registry.current_dir()  # type: ignore[union-attr]
    if args.out is None and registry is None:
        raise ConfigError("give the challenger's directory with --out")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    out = Path(args.out) if args.out else registry.root / "incoming" / stamp  # type: ignore[union-attr]
    if registry is not None:
        for path in clean_stale(registry.root / "incoming"):
            print(f"removed {path}, left by a retrain that was killed")

    check_out(out)  # before the store is opened: a taken --out is the first thing to say
    store = PredictionStore.open(args.db, read_only=True)  # reads the corrections; writes nothing
    report: dict = {"champion": str(champion), "version": None, "promoted": False}
    if args.dry_run:
        data_dir = Path(args.data_dir) if args.data_dir else champion_data_dir(champion)
        selected, skip, _ = plan(store, champion, data_dir, options)
        _print_corrections(selected, args.db)
        print(skip or f"would train on {len(selected.learnt)} correction(s) (dry run: nothing trained)")
        return _done(args, report, "nothing to do" if skip else "would train", skip, selected)
    result = retrain(store, champion, out, args.data_dir, options)
    _print_corrections(result.corrections, args.db)
    if result.status == "nothing to do":
        print(result.reason)
        return _done(args, report, result.status, result.reason, result.corrections)
    c = result.comparison
    assert c is not None and result.run_dir is not None
    print(c.to_markdown(max_rows=10))
    print(f"challenger: {result.run_dir} (report: {result.run_dir / 'compare.md'})")
    report.update(run_dir=str(result.run_dir), comparison={k: v for k, v in c.to_json().items()
                                                           if k != "disagreements"})
    if registry is None:
        return _done(args, report, result.status, result.reason, result.corrections)
    version = registry.add(result.run_dir, note=f"retrain of {champion}: {len(result.corrections.learnt)} "
                                                "corrections", move=args.out is None)
    if args.out is None:
        with contextlib.suppress(OSError):
            out.parent.rmdir()  # REG/incoming, when nothing else is in it
    print(f"added to {registry.root} as version {version.number}")
    report.update(version=version.number, run_dir=str(version.dir))
    if c.forced is False and not c.promote and args.force:  # forced: the report says so before it is recorded
        c.forced = True
        c.write(version.dir)
        report["comparison"]["forced"] = True
    try:  # the registry's own record of this comparison, bound to both versions as they are
        registry.record_comparison(version.number, c)
    except RegistryError as e:  # the champion was not the current version (--run): promote needs a compare
        print(f"comparison not recorded in the registry: {e}")
    if not args.promote:
        return _done(args, report, result.status, result.reason, result.corrections)
    if not c.promote and not args.force:
        print(f"not promoted: the policy says keep (version {registry.current()} stays current)")
        return _done(args, report, result.status, result.reason, result.corrections)
    registry.promote(version.number, force=c.forced, reason="retrain --promote" + (" --force" if c.forced else ""))
    print(f"promoted version {version.number}" + (" (forced)" if c.forced else ""))
    report["promoted"] = True
    return _done(args, report, result.status, result.reason, result.corrections)


def _done(args: argparse.Namespace, report: dict, status: str, reason: str | None, selected) -> int:
    if args.json:
        import json

        print(json.dumps({**report, "status": status, "reason": reason, "corrections": selected.summary()},
                         default=str))
    return 0


def _print_corrections(selected, db: str | None) -> None:
    s = selected.summary()
    left = ", ".join(f"{n} {reason}" for reason, n in s["left_out"].items()) or "none"
    print(f"corrections: {s['train']} to train, {s['validation']} to validation, {s['holdout']} held out; "
          f"left out: {left}")
    if s["needs_review"]:
        from spamtune.cli.args import printable

        print(f"{len(s['needs_review'])} correction(s) contradict a confident prediction and wait for review "
              "(confirm one with: spamtune feedback" + (f" --db {db}" if db else "") + " ID LABEL):")
        for r in s["needs_review"][:20]:
            print(f"  {r['id']}  predicted {r['predicted']} ({r['confidence']:.3f}), corrected to {r['label']}: "
                  f"{printable(r['text'], 70)}")
