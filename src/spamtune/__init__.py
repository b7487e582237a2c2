"""spamtune: turn a pretrained decoder LLM into a text classifier.

    from spamtune import SpamClassifier
    clf = SpamClassifier.load("runs/smollm2")
    clf.predict(["WINNER! Claim your prize", "See you at 6?"])  # [(label, probability), ...]
"""

__all__ = ["SpamClassifier"]


def __getattr__(name: str):
    # lazy: `import spamtune` (the CLI's start-up) does not pay for torch until a model is needed
    if name == "SpamClassifier":
        from spamtune.predict import SpamClassifier

        return SpamClassifier
    raise AttributeError(f"module 'spamtune' has no attribute {name!r}")
