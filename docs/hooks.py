"""mkdocs hooks: pages made from the code and the benchmarks at build time, never copied by hand.

- reference/cli.md: every verb's `--help`, from spamtune's own argparse parsers (nested verbs too);
- benchmarks.md: benchmarks/RESULTS.md as it is, with the charts beside it under benchmarks/.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = "100"  # argparse wraps --help to $COLUMNS: the same page on every machine


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def help_sections(parser: argparse.ArgumentParser, name: str, level: int = 2) -> list[str]:
    out = [f"{'#' * level} `{name}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    for sub_name, sub in subcommands(parser).items():
        out += help_sections(sub, f"{name} {sub_name}", min(level + 1, 4))
    return out


def cli_page() -> str:
    os.environ["COLUMNS"] = COLUMNS
    from spamtune.cli import build_parser

    parser = build_parser()
    lines = ["# Command line", "", "Generated from spamtune's parsers when the site is built (`spamtune VERB --help` "
             "prints the same).", "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, sub in subcommands(parser).items():
        lines += help_sections(sub, f"spamtune {name}")
    return "\n".join(lines)


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, "reference/cli.md", content=cli_page()))
    files.append(File.generated(config, "benchmarks.md", content=(ROOT / "benchmarks" / "RESULTS.md").read_text()))
    for png in sorted((ROOT / "benchmarks").glob("*.png")):
        files.append(File.generated(config, f"benchmarks/{png.name}", abs_src_path=str(png)))
    return files
