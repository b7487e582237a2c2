"""What a run decides with besides its model, fitted after the fit (training/calibrate.py) and stored in the run:

    decisions.py  the decision rule: temperature, operating point (block / review thresholds at a target FPR),
                  bands, the calibration / report halves of the unused ham, the memory's threshold, the cascade's
                  bands, and the statistics they rest on (ECE, Brier)
    stacking.py   the n-gram model (hashed word + character TF-IDF, linear SVM): stacked with the model's margin
                  (--stack ngrams) or the cascade's cheap check (--cascade ngrams)
    drift.py      the reference a run stores (held-out scores, input features, pooled states) and the tests
                  `spamtune monitor` runs against it (PSI, KS, MMD)

NumPy, SciPy and scikit-learn (torch only to write safetensors): inference, evaluation and monitoring read these
without importing training's code.
"""
