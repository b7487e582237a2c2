"""Data stage (book §6.2): get the SMS Spam Collection or any labelled CSV, parse it without losing rows, balance,
split and write the CSVs every later stage reads.

    sources.py   where the raw file comes from (path, $SPAMTUNE_DATA, cache, UCI download), sha256-checked
    parse.py     bytes -> a Label/Text DataFrame (the SMS tab format, or any CSV/TSV)
    labels.py    LabelSet: the classes and problem type of a data set (labels.json)
    split.py     undersampling and the train/validation/test split
    stream.py    the same for a file too large to hold: two passes in blocks of rows
    prepare.py   the whole stage (`spamtune prepare`) and the readers of its output
"""

from spamtune.data.labels import LabelSet, TaskName
from spamtune.data.parse import parse_sms_collection, read_table
from spamtune.data.prepare import (
    LABELS_FILE,
    SPLIT_FILES,
    PrepareResult,
    count_rows,
    iter_split,
    prepare,
    read_label_set,
    read_split,
)

__all__ = ["LABELS_FILE", "SPLIT_FILES", "LabelSet", "PrepareResult", "TaskName", "count_rows", "iter_split",
           "parse_sms_collection", "prepare", "read_label_set", "read_split", "read_table"]
