"""`classify --file --engine ray`: the same scoring as `classify_file`, on a Ray cluster with Ray Data.

Ray Data reads the file in blocks (read_text for .txt/.jsonl, read_csv for .csv/.tsv), an actor pool holds one
loaded model per worker (`map_batches` with `concurrency=K`), and the driver writes the rows in input order
(Ray Data's `preserve_order`) through the same `RowWriter` as the local engine, so the columns are the same. Line
numbers and JSON lines are parsed by the local engine's own rules. On a cluster the file must be readable by the
workers (a shared filesystem or object store path); `--address` names the cluster (default: a local Ray).

Needs the optional extra: `pip install 'spamtune[ray]'`.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spamtune.errors import ConfigError, DataError
from spamtune.inference.api import TextClassifier
from spamtune.inference.cache import CacheConfig
from spamtune.inference.files import Message, StreamResult, check_input_file, check_output_format, write_output
from spamtune.inference.pipeline import Decision


@dataclass
class RayOptions:
    address: str | None = None  # a Ray cluster ("ray://head:10001", "auto"); None: start a local Ray
    num_workers: int = 1  # actors, each with its own copy of the model
    batch_size: int = 256  # messages per map_batches call
    dtype: str = "fp32"
    quantize: str | None = None
    device: str = "cpu"  # the workers' device ("cuda": one GPU per actor)
    runtime: str = "torch"  # onnx: the run is an ONNX export
    cascade: bool = True  # False: every message through the model in a --cascade run
    cache: CacheConfig = field(default_factory=lambda: CacheConfig(0))  # each worker's decision cache


class Scorer:
    """A Ray actor: loads the run once, then decides batches of messages (pandas in, pandas out)."""

    def __init__(self, run_dir: str, options: RayOptions, column: str, text_col: str, jsonl: bool,
                 threshold: float | None, review_threshold: float | None) -> None:
        self.clf = TextClassifier.load(run_dir, options.dtype, options.quantize, options.device, options.runtime,
                                       options.cascade)
        if self.clf.pipeline is not None:
            self.clf.pipeline.use_cache(options.cache)
        self.column, self.text_col, self.jsonl = column, text_col, jsonl  # column: the dataset's, from `_read`
        self.threshold, self.review_threshold = threshold, review_threshold

    def __call__(self, batch):
        from spamtune.inference.files import read_jsonl

        texts = [t if isinstance(t, str) else "" for t in batch[self.column]]
        if self.jsonl:  # the local engine's rules for each line (a JSON string, or an object's text_col / text)
            texts = [m.text for t in texts for m in
                     (read_jsonl(io.BytesIO(t.encode("utf-8", "surrogatepass") + b"\n"), "jsonl",
                                 self.clf.line_cap, self.text_col) if t.strip() else [Message(0, "")])]
        kept = [i for i, t in enumerate(texts) if t.strip()]
        decided = self.clf.decide([texts[i] for i in kept], self.threshold, self.review_threshold) if kept else []
        out = [""] * len(texts)
        for i, d in zip(kept, decided):
            out[i] = json.dumps(d.to_json())
        batch = batch.assign(text=texts, decision_json=out)
        return batch[["text", "decision_json"]]


def classify_file_ray(run_dir: str | os.PathLike, src: str | os.PathLike, out: str | os.PathLike | None,
                      options: RayOptions, threshold: float | None = None, text_col: str = "Text",
                      review_threshold: float | None = None) -> StreamResult:
    """Score `src` on Ray; rows in input order, the same columns as `classify_file`."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'spamtune[ray]'") from None
    src = Path(src)
    check_input_file(src)
    check_output_format(out)
    if options.num_workers < 1:
        raise ConfigError("--num-workers must be at least 1")
    probe = TextClassifier.load(run_dir, options.dtype, options.quantize, "cpu", options.runtime)  # fails here, once
    probe.require_single_label("--file", " (pass the messages instead)")
    names = probe.label_names
    del probe

    if not ray.is_initialized():
        # a local Ray gets one logical CPU beyond the workers': Ray Data's read tasks need one to run beside the
        # actors (each actor holds a CPU), else the pipeline waits forever on a small machine
        cpus = max(os.cpu_count() or 1, options.num_workers + 1) if options.address is None else None
        ray.init(address=options.address, num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    suffix = src.suffix.lower()
    ds, first_line, column = _read(ray, src, suffix, text_col)
    scored = ds.map_batches(
        Scorer, fn_constructor_args=(str(Path(run_dir).resolve()), options, column, text_col, suffix == ".jsonl",
                                     threshold, review_threshold),
        batch_size=options.batch_size, batch_format="pandas", concurrency=options.num_workers,
        num_gpus=1 if options.device == "cuda" else 0)
    result = StreamResult()

    def write_all(rows) -> None:
        from tqdm.auto import tqdm

        with tqdm(desc=f"classifying {src.name} on ray", unit="msg", disable=out is None) as bar:
            for number, row in enumerate(scored.iter_rows(), start=first_line):
                bar.update()
                if not row["decision_json"]:
                    result.skipped_blank += 1
                    continue
                rows.row(Message(number, row["text"]), Decision.from_json(json.loads(row["decision_json"])))
                result.classified += 1

    try:
        write_output(out, names, False, write_all)
    except ray.exceptions.RayTaskError as e:  # a worker's DataError (bad UTF-8, a bad JSON line) is the user's
        cause: Any = e.cause if hasattr(e, "cause") else None
        if isinstance(cause, (DataError, ConfigError)):
            raise type(cause)(str(cause)) from None
        raise
    return result


def _read(ray, src: Path, suffix: str, text_col: str):
    """The file as a Ray dataset of one text column, the line number of its first row, and that column's name."""
    path = str(src.resolve())
    if suffix in (".csv", ".tsv"):
        from pyarrow import csv as pacsv
        from pyarrow import string

        parse = pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",", newlines_in_values=True)
        convert = pacsv.ConvertOptions(column_types={text_col: string()}, include_columns=[text_col],
                                       strings_can_be_null=False)
        return ray.data.read_csv(path, parse_options=parse, convert_options=convert), 2, text_col
    return ray.data.read_text(path, drop_empty_lines=False), 1, "text"
