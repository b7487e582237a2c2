"""The model registry: numbered versions of runs and a `current` pointer that changes atomically.

    REG/versions/0001/   a run directory (copied in, without its resume state), plus version.json (with the
                         sha256 of its files when added: a version damaged since is refused)
    REG/comparisons/     0002-vs-0001.json: each comparison spamtune made between two versions, bound to both
                         versions' files, the policy and the data by sha256 (lifecycle.compare)
    REG/current.json     {"version": 2, "run_id": ..., "history": [1, 2]}: replaced with one rename
    REG/log.jsonl        every add, compare, promote and rollback: when, what, forced or not, why

`serve --registry REG` follows current.json and swaps the new version in without dropping a request. Promoting
needs the registry's own record of a passing comparison with the current version whose binding matches both
versions as they are now (a compare.json shipped inside a run proves nothing), or force, recorded as such;
rollback returns to the version promoted before. A version is checked when added (its weights load, complete and
finite). Changes take a lock (flock on REG/.lock, never through a symlink), so two operators cannot interleave.
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
from spamtune.lifecycle.compare import Comparison, digest_files
from spamtune.runs import RESUME, RUN_DATA, WEIGHTS, RunConfig, is_run_dir

FORMAT = "spamtune-registry/1"
POINTER, LOG, VERSION_FILE, COMPARISONS = "current.json", "log.jsonl", "version.json", "comparisons"


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
    comparison: dict[str, Any] | None  # the registry's record of its latest comparison, when there is one

    @property
    def name(self) -> str:
        return f"{self.number:04d}"


def check_loads(run_dir: Path) -> None:
    """The run loads for prediction: its weights complete and finite, its manifest and labels consistent."""
    from spamtune.inference import load_run

    try:
        load_run(run_dir)
    except SpamtuneError as e:
        raise RegistryError(f"{run_dir} is not a loadable run: {e}") from None


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
        self.comparisons_dir = self.root / COMPARISONS

    # -- reading -------------------------------------------------------------------------------------------------

    def version_dir(self, number: int) -> Path:
        path = self.versions_dir / f"{number:04d}"
        if not (path / VERSION_FILE).is_file():
            raise RegistryError(f"{self.root} has no version {number}")
        return path

    def version(self, number: int) -> Version:
        path = self.version_dir(number)
        meta = read_json(path / VERSION_FILE, CheckpointError)
        if not isinstance(meta, dict):
            raise CheckpointError(f"{path / VERSION_FILE}: not a version record (damaged?)")
        records = sorted(self.comparisons_dir.glob(f"{number:04d}-vs-*.json"))
        comparison = None
        if records:
            c = read_json(records[-1], CheckpointError)
            comparison = {"decision": c.get("decision"), "forced": c.get("forced"),
                          "champion_version": c.get("champion_version"),
                          "champion_run_id": c.get("champion_run_id")}
        run_config = RunConfig.from_dir(path)
        return Version(number, path, run_config.run_id, str(meta.get("added", "")), str(meta.get("note", "")),
                       run_config.parent, comparison)

    def versions(self) -> list[Version]:
        if not self.versions_dir.is_dir():
            return []
        numbers = sorted(int(p.name) for p in self.versions_dir.iterdir()
                         if p.name.isdigit() and (p / VERSION_FILE).is_file())
        return [self.version(n) for n in numbers]

    def pointer(self) -> dict[str, Any] | None:
        """current.json, checked (a positive version that is the last of a history of versions that exist);
        None before the first promotion."""
        path = self.root / POINTER
        if not path.exists():
            return None
        d = read_json(path, CheckpointError)

        def positive(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= 1

        if (not isinstance(d, dict) or d.get("format") != FORMAT or not positive(d.get("version"))
                or not isinstance(d.get("history"), list) or not d["history"]
                or not all(positive(v) for v in d["history"]) or d["history"][-1] != d["version"]):
            raise CheckpointError(f"{path}: not a spamtune registry pointer (damaged or edited by hand); restore it "
                                  "from log.jsonl or promote a version again with --force")
        for v in set(d["history"]):
            if not (self.versions_dir / f"{v:04d}" / VERSION_FILE).is_file():
                raise CheckpointError(f"{path}: names version {v}, which {self.root} does not have (damaged?)")
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
        """An exclusive flock on REG/.lock, opened without following a symlink and without truncating: a link
        planted there is refused, and no failing command can empty a file elsewhere."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise RegistryError(f"{self.root / '.lock'}: cannot open the registry's lock ({e.strerror}; a symlink "
                                "there is refused)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def add(self, run_dir: str | os.PathLike, note: str = "", move: bool = False) -> Version:
        """A finished run as the next version (copied, or moved when it is ours to move); not promoted."""
        run_dir = Path(run_dir)
        if not is_run_dir(run_dir):
            raise ConfigError(f"{run_dir} is not a spamtune run (no readable run manifest)")
        run_config = RunConfig.from_dir(run_dir)
        if not (run_dir / WEIGHTS).is_file():
            raise CheckpointError(f"{run_dir}: not a finished run (no {WEIGHTS})")
        check_loads(run_dir)  # truncated or non-finite weights, a wrong manifest: refused before it is a version
        with self.lock():
            if any(v.run_id == run_config.run_id for v in self.versions()):
                raise RegistryError(f"run {run_config.run_id} is already in {self.root}")
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
            if run_config.data_dir == str((run_dir / RUN_DATA).resolve()):  # a retrained run's own data moves with it
                run_config.data_dir = str((self.versions_dir / f"{number:04d}" / RUN_DATA).resolve())
                run_config.write(staging)
            write_json(staging / VERSION_FILE, {"version": number, "run_id": run_config.run_id, "added": _now(),
                                                "note": note, "source": str(run_dir.resolve()),
                                                "sha256": digest_files(staging)})
            os.rename(staging, self.versions_dir / f"{number:04d}")  # the version appears whole
            self._log({"action": "add", "version": number, "run_id": run_config.run_id, "note": note})
        return self.version(number)

    def check_intact(self, version: Version) -> None:
        """The version's files are the ones added (their sha256 in version.json)."""
        meta = read_json(version.dir / VERSION_FILE, CheckpointError)
        recorded = meta.get("sha256") if isinstance(meta, dict) else None
        if recorded is not None and recorded != digest_files(version.dir):
            raise RegistryError(f"version {version.number} was changed or damaged since it was added (its files' "
                                f"sha256 differs from {version.dir / VERSION_FILE}); add the run again")

    def record_comparison(self, challenger: int, comparison: Comparison) -> Path:
        """Keep the registry's own record of a comparison spamtune made between version `challenger` and the
        current version; its binding must match both versions' files as they are."""
        with self.lock():
            pointer = self.pointer()
            if pointer is None:
                raise RegistryError(f"{self.root} has no current version to compare with")
            champion = self.version(pointer["version"])
            target = self.version(challenger)
            binding = comparison.binding
            if (binding.get("champion") != digest_files(champion.dir)
                    or binding.get("challenger") != digest_files(target.dir)):
                raise RegistryError(f"this comparison was not made between version {challenger} and the current "
                                    f"version {champion.number} as they are: compare them (spamtune compare "
                                    f"--registry {self.root} {challenger})")
            self.comparisons_dir.mkdir(parents=True, exist_ok=True)
            path = self.comparisons_dir / f"{challenger:04d}-vs-{champion.number:04d}.json"
            write_json(path, {"challenger_version": challenger, "champion_version": champion.number,
                              "challenger_run_id": target.run_id, "champion_run_id": champion.run_id,
                              "decision": comparison.decision, "promote": comparison.promote,
                              "forced": comparison.forced, "policy": comparison.policy, "binding": binding,
                              "checks": comparison.checks, "made": _now()})
            self._log({"action": "compare", "version": challenger, "against": champion.number,
                       "decision": comparison.decision})
        return path

    def promote(self, number: int, force: bool = False, reason: str = "") -> dict[str, Any]:
        """Make `number` current. Needs the registry's record of a passing comparison with the current version,
        bound to both as they are now, unless `force`; the first promotion needs none. A version whose files
        changed since it was added is refused, forced or not."""
        with self.lock():
            target = self.version(number)
            self.check_intact(target)
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
        hint = (f"compare them first (spamtune compare --registry {self.root} {target.number}) or pass --force "
                "(recorded)")
        path = self.comparisons_dir / f"{target.number:04d}-vs-{current.number:04d}.json"
        if not path.is_file():
            raise RegistryError(f"version {target.number} has no comparison with the current version "
                                f"{current.number} ({current.run_id}) made by this registry: {hint}")
        c = read_json(path, CheckpointError)
        binding = c.get("binding", {}) if isinstance(c, dict) else {}
        if (binding.get("challenger") != digest_files(target.dir)
                or binding.get("champion") != digest_files(current.dir)):
            raise RegistryError(f"the comparison of versions {target.number} and {current.number} is not bound to "
                                f"them as they are now: {hint}")
        if c.get("decision") != "promote" or not c.get("promote"):
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
