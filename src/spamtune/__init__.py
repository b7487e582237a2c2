"""spamtune: turn a pretrained decoder LLM into a text classifier.

    from spamtune import TextClassifier
    clf = TextClassifier.load("runs/smollm2")
    clf.predict(["WINNER! Claim your prize", "See you at 6?"])  # [(label, probability), ...]

The package follows the pipeline, top to bottom: data/ -> tokenizers, batching -> models/, weights/ ->
calibration/ (decision rules, n-grams, drift reference) -> classifier, tasks, runs -> backends/ -> training/ ->
inference/ -> evaluation/ -> serving/, export/ -> cli/.
Lower layers never import higher ones (pyproject.toml's import-linter contract holds this).
"""

__all__ = ["SpamClassifier", "TextClassifier"]


def __getattr__(name: str):
    # lazy: `import spamtune` (the CLI's start-up) does not pay for torch until a model is needed
    if name in __all__:
        from spamtune import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'spamtune' has no attribute {name!r}")
