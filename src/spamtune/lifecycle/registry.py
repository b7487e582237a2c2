"""The model registry: numbered versions of runs and a `current` pointer that changes atomically.

    REG/versions/0001/   a run directory (copied in, without its resume state), plus version.json
    REG/versions/0002/   ...and compare.json / compare.md when it was compared with the version it would replace
    REG/current.json     {"version": 2, "run_id": ..., "history": [1, 2]}: replaced with one rename
    REG/log.jsonl        every add, promote and rollback: when, what, forced or not, why

`serve --registry REG` follows current.json and swaps the new version in without dropping a request. Promoting
needs a passing comparison with the current version (or force, recorded as such); rollback returns to the
version promoted before. Changes take a lock (flock on REG/.lock), so two operators cannot interleave.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spamtune.errors import CheckpointError, ConfigError, SpamtuneError
from spamtune.fsutil import read_json, write_json
from spamtune.lifecycle.compare import COMPARE_JSON
from spamtune.runs import RESUME, RUN_DATA, WEIGHTS, RunConfig, is_run_dir

FORMAT = "spamtune-registry/1"
POINTER, LOG, VERSION_FILE = "current.json", "log.jsonl", "version.json"


class RegistryError(SpamtuneError):
    """A registry operation the registry's state does not allow (no such version, nothing to roll back to, a
    promotion without a passing comparison)."""


@dataclass
class Version:
    number: int
    dir: Path
    run_id: str
    added: str
    note: str
    parent: str | None  # the run_id it was warm-started from
    comparison: dict[str, Any] | None  # compare.json's decision, champion and checks, when there is one

    @property
    def name(self) -> str:
        return f"{self.number:04d}"


def parse_version(text: str | int) -> int:
    """"3", "0003" or "v3" -> 3."""
    m = re.fullmatch(r"v?0*(\d+)", str(text).strip())
    if not m or int(m[1]) < 1:
        raise ConfigError(f"{text!r} is not a version number (1, 0001 or v1)")
    return int(m[1])


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class Registry:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--registry {self.root}: exists and is not a directory")
        self.versions_dir = self.root / "versions"

    # -- reading -------------------------------------------------------------------------------------------------

    def version_dir(self, number: int) -> Path:
        path = self.versions_dir / f"{number:04d}"
        if not (path / VERSION_FILE).is_file():
            raise RegistryError(f"{self.root} has no version {number}")
        return path

    def version(self, number: int) -> Version:
        path = self.version_dir(number)
        meta = read_json(path / VERSION_FILE, CheckpointError)
        comparison = None
        if (path / COMPARE_JSON).is_file():
            c = read_json(path / COMPARE_JSON, CheckpointError)
            comparison = {"decision": c.get("decision"), "forced": c.get("forced"),
                          "champion_run_id": c.get("champion", {}).get("run_id")}
        run = RunConfig.from_dir(path)
        return Version(number, path, run.run_id, meta.get("added", ""), meta.get("note", ""), run.parent, comparison)

    def versions(self) -> list[Version]:
        if not self.versions_dir.is_dir():
            return []
        numbers = sorted(int(p.name) for p in self.versions_dir.iterdir()
                         if p.name.isdigit() and (p / VERSION_FILE).is_file())
        return [self.version(n) for n in numbers]

    def pointer(self) -> dict[str, Any] | None:
        """current.json, checked; None before the first promotion."""
        path = self.root / POINTER
        if not path.exists():
            return None
        d = read_json(path, CheckpointError)
        if (not isinstance(d, dict) or d.get("format") != FORMAT or not isinstance(d.get("version"), int)
                or not isinstance(d.get("history"), list)):
            raise CheckpointError(f"{path}: not a spamtune registry pointer (damaged?)")
        return d

    def current(self) -> int | None:
        p = self.pointer()
        return None if p is None else p["version"]

    def current_dir(self) -> Path:
        """The run directory `serve --registry` answers with."""
        number = self.current()
        if number is None:
            raise RegistryError(f"{self.root} has no current version yet: promote one (spamtune registry promote N)")
        return self.version_dir(number)

    def resolve(self, ref: str) -> Path:
        """A version number of this registry, or "current", as a run directory."""
        return self.current_dir() if ref == "current" else self.version_dir(parse_version(ref))

    # -- changing ------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def add(self, run_dir: str | os.PathLike, note: str = "", move: bool = False) -> Version:
        """A finished run as the next version (copied, or moved when it is ours to move); not promoted."""
        run_dir = Path(run_dir)
        if not is_run_dir(run_dir):
            raise ConfigError(f"{run_dir} is not a spamtune run (no readable run manifest)")
        run = RunConfig.from_dir(run_dir)
        if not (run_dir / WEIGHTS).is_file():
            raise CheckpointError(f"{run_dir}: not a finished run (no {WEIGHTS})")
        with self.lock():
            if any(v.run_id == run.run_id for v in self.versions()):
                raise RegistryError(f"run {run.run_id} is already in {self.root}")
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            numbers = [int(p.name) for p in self.versions_dir.iterdir() if p.name.isdigit()]
            number = max(numbers, default=0) + 1
            staging = self.versions_dir / f".adding-{number:04d}"
            shutil.rmtree(staging, ignore_errors=True)
            if move:
                shutil.move(run_dir, staging)
                shutil.rmtree(staging / RESUME, ignore_errors=True)
            else:
                shutil.copytree(run_dir, staging, ignore=shutil.ignore_patterns(RESUME))
            if run.data_dir == str((run_dir / RUN_DATA).resolve()):  # a retrained run's own data moves with it
                run.data_dir = str((self.versions_dir / f"{number:04d}" / RUN_DATA).resolve())
                run.write(staging)
            write_json(staging / VERSION_FILE, {"version": number, "run_id": run.run_id, "added": _now(),
                                                "note": note, "source": str(run_dir.resolve())})
            os.rename(staging, self.versions_dir / f"{number:04d}")  # the version appears whole
            self._log({"action": "add", "version": number, "run_id": run.run_id, "note": note})
        return self.version(number)

    def promote(self, number: int, force: bool = False, reason: str = "") -> dict[str, Any]:
        """Make `number` current. Needs its comparison with the current version to say "promote" (compare.json
        in the version, made against the current version's run), unless `force`; the first promotion needs
        none."""
        with self.lock():
            target = self.version(number)
            pointer = self.pointer()
            if pointer is not None and pointer["version"] == number:
                raise RegistryError(f"version {number} is current already")
            if pointer is not None and not force:
                self._require_passing(target, self.version(pointer["version"]))
            history = ([] if pointer is None else pointer["history"]) + [number]
            self._write_pointer(target, history)
            entry = {"action": "promote", "version": number, "run_id": target.run_id,
                     "from": None if pointer is None else pointer["version"], "forced": force, "reason": reason}
            self._log(entry)
        return entry

    def rollback(self, reason: str = "") -> dict[str, Any]:
        """Back to the version promoted before the current one."""
        with self.lock():
            pointer = self.pointer()
            if pointer is None or len(pointer["history"]) < 2:
                raise RegistryError(f"{self.root}: no earlier promoted version to roll back to")
            history = pointer["history"][:-1]
            target = self.version(history[-1])
            self._write_pointer(target, history)
            entry = {"action": "rollback", "version": target.number, "run_id": target.run_id,
                     "from": pointer["version"], "reason": reason}
            self._log(entry)
        return entry

    def log(self) -> list[dict[str, Any]]:
        path = self.root / LOG
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _require_passing(self, target: Version, current: Version) -> None:
        c = target.comparison
        hint = (f"compare them first (spamtune compare --registry {self.root} {target.number}) or pass --force "
                "(recorded)")
        if c is None or c["champion_run_id"] != current.run_id:
            raise RegistryError(f"version {target.number} has no comparison with the current version "
                                f"{current.number} ({current.run_id}): {hint}")
        if c["decision"] != "promote":
            raise RegistryError(f"version {target.number} did not pass the promotion policy against version "
                                f"{current.number} (see {target.dir / 'compare.md'}): {hint}")

    def _write_pointer(self, target: Version, history: list[int]) -> None:
        write_json(self.root / POINTER, {"format": FORMAT, "version": target.number, "run_id": target.run_id,
                                         "history": history, "updated": _now()})  # temp file + rename

    def _log(self, entry: dict[str, Any]) -> None:
        with open(self.root / LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps({"at": _now(), **entry}) + "\n")
            f.flush()
            os.fsync(f.fileno())
