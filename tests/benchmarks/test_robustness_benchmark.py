"""benchmarks/robustness.py at test size: the tiny run and the TF-IDF peer through every perturbation, the table
and the chart; the normalized peer recovers what homoglyphs and zero-width characters took."""

from __future__ import annotations

from benchmarks.robustness import chart, spamtune_rows, table, tfidf_rows
from spamtune.data.perturb import PERTURBATIONS


def test_rows_table_and_chart(tiny_run, data_dir, tmp_path):
    results = {**spamtune_rows({"tiny": tiny_run}, data_dir, 80), **tfidf_rows(data_dir, None)}
    assert set(results) == {"tiny", "TF-IDF + linear SVM", "TF-IDF + linear SVM, nfkc"}
    for rows in results.values():
        assert set(rows) == {"clean", *PERTURBATIONS}
        assert all(0 <= r["recall"] <= 1 for r in rows.values())
    raw, norm = results["TF-IDF + linear SVM"], results["TF-IDF + linear SVM, nfkc"]
    assert raw["clean"]["accuracy"] > 0.9 and norm["clean"]["accuracy"] > 0.9
    # a character-n-gram model loses spam to look-alike letters and invisible characters; normalization undoes both
    for p in ("homoglyphs", "zero_width"):
        assert raw[p]["recall"] < raw["clean"]["recall"], p
        assert norm[p]["recall"] == norm["clean"]["recall"], p
    text = table(results)
    assert text.count("\n") == 1 + 3 and "| TF-IDF + linear SVM, nfkc | " in text
    chart(results, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 10_000
