"""Every example that `spamtune --help` and each verb's `--help` show is a command line spamtune accepts."""

from __future__ import annotations

import argparse
import re
import shlex

from spamtune.cli import EXAMPLES, build_parser, parse


def examples(parser: argparse.ArgumentParser) -> list[str]:
    """The `spamtune ...` lines of the top-level and every (sub)verb's epilog; continuations joined, comments cut."""
    texts = {EXAMPLES}
    stack = [parser]
    while stack:
        p = stack.pop()
        texts.add(p.epilog or "")
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack += action.choices.values()
    lines = []
    for text in texts:
        for line in text.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("spamtune "):
                lines.append(re.sub(r"\s+#.*$", "", line))
    return sorted(set(lines))


def test_every_help_example_parses():
    parser = build_parser()
    lines = examples(parser)
    assert len(lines) >= 60 and any(line.startswith("spamtune lists add") for line in lines)
    for line in lines:
        argv = shlex.split(line)[1:]
        if "|" in argv:  # `... | spamtune ...`: the first command
            argv = argv[: argv.index("|")]
        try:
            args = parse(parser, argv)
        except SystemExit:
            raise AssertionError(f"a --help example does not parse: {line}") from None
        assert callable(args.func), line


def test_the_parser_starts_without_the_heavy_libraries():
    """`spamtune --help` (and a typo's error) answer at once: building every verb's parser imports no torch,
    FastAPI, SQLAlchemy, scikit-learn or pandas; their defaults come from config.py."""
    import subprocess
    import sys

    code = ("import sys; from spamtune.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'fastapi', 'sqlalchemy', 'sklearn', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
