"""Serving versions (issue 18): following a registry across a swap under load (no error, every answer wholly one
version's), a version that fails to load, shadow mode and canary mode; monitor's view of them."""

from __future__ import annotations

import concurrent.futures
import json
import random
import threading
import time

import pytest

from spamtune.cli import main
from spamtune.config import TrainArgs
from spamtune.data import read_split
from spamtune.inference import TextClassifier
from spamtune.lifecycle import Registry
from spamtune.monitoring.store import PredictionStore
from spamtune.serving import ModelSource, ServeLimits, ServeOptions, create_app
from spamtune.serving.loadtest import post_json
from spamtune.serving.models import in_canary
from tests.conftest import running


@pytest.fixture(scope="module")
def second_run(tmp_path_factory, tiny_gpt2_dir, data_dir):
    """Another tiny run (another seed): the challenger."""
    from spamtune.training import train_run

    run = tmp_path_factory.mktemp("second") / "run"
    train_run(TrainArgs(model=str(tiny_gpt2_dir), epochs=1, limit=48, lr=2e-3, seed=7), data_dir, run)
    return run


@pytest.fixture(scope="module")
def texts(data_dir) -> list[str]:
    return list(read_split(data_dir / "test.csv")["Text"])


def registry_with(tmp_path, *runs) -> Registry:
    reg = Registry(tmp_path / "reg")
    for run in runs:
        reg.add(run)
    reg.promote(1)
    return reg


def test_a_promotion_swaps_the_model_under_load_without_an_error(tiny_run, second_run, texts, tmp_path):
    reg = registry_with(tmp_path, tiny_run, second_run)
    a, b = reg.version(1).run_id, reg.version(2).run_id
    store = PredictionStore.open(f"sqlite:///{tmp_path / 'p.sqlite'}")
    opts = ServeOptions(store=store, source=ModelSource(registry=str(reg.root), poll_s=0.05), registry_version=1)
    app = create_app(TextClassifier.load(reg.current_dir()), ServeLimits(batch_window_ms=5), opts)
    answers: list[tuple[float, float, int, list]] = []  # sent, answered, status, results
    rng = random.Random(0)
    requests = [rng.sample(texts, rng.randint(1, 4)) for _ in range(400)]

    with running(app) as url:
        def send(batch):
            sent = time.monotonic()
            code, body = post_json(url + "/classify", {"texts": batch})
            answers.append((sent, time.monotonic(), code, body["results"] if code == 200 else body))

        def promote_midway():
            while len(answers) < 80:
                time.sleep(0.01)
            reg.promote(2, force=True, reason="test")

        promoter = threading.Thread(target=promote_midway)
        promoter.start()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(send, requests))
        promoter.join()
        code, health = post_json(url + "/classify", {"texts": ["one more"]})
        assert code == 200 and health["results"][0]["run_id"] == b
        assert app.state.service.deployment.version == 2 and app.state.service.deployment.swaps == 1
        assert app.state.service.writer.flush(10)

    assert [c for _, _, c, _ in answers] == [200] * len(requests)  # nothing dropped, nothing failed
    per_request = [{r["run_id"] for r in results} for _, _, _, results in answers]
    assert all(len(ids) == 1 and ids <= {a, b} for ids in per_request)  # each answer wholly one version's
    seen = [next(iter(ids)) for ids in per_request]
    assert seen.count(a) >= 80 and seen.count(b) >= 20
    first_b = min(done for (_, done, _, _), rid in zip(answers, seen) if rid == b)
    later = [rid for (sent, _, _, _), rid in zip(answers, seen) if sent > first_b]
    assert later and set(later) == {b}  # once the new version answered, the old one never does again
    recorded = {r["id"]: r["run_id"] for r in store.iter_all()}
    for _, _, _, results in answers:  # every record carries the run that answered
        assert all(recorded[r["id"]] == r["run_id"] for r in results)


def test_a_version_that_fails_to_load_is_skipped_and_the_old_one_keeps_answering(tiny_run, second_run, tmp_path):
    reg = registry_with(tmp_path, tiny_run, second_run)
    serving = TextClassifier.load(reg.current_dir())
    reg.promote(2, force=True)
    # damaged after its promotion (the registry refuses to promote a damaged version), before the server loads it
    (reg.version_dir(2) / "model.safetensors").write_bytes(b"damaged")
    opts = ServeOptions(source=ModelSource(registry=str(reg.root), poll_s=0.05), registry_version=1)
    app = create_app(serving, ServeLimits(), opts)
    with running(app) as url:
        deadline = time.monotonic() + 10
        while app.state.service.deployment.last_swap_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        code, body = post_json(url + "/classify", {"texts": ["still here?"]})
        assert code == 200 and body["results"][0]["run_id"] == reg.version(1).run_id
        import urllib.request

        health = json.loads(urllib.request.urlopen(url + "/health").read())
        assert health["registry_version"] == 1 and "version 2" in health["last_swap_error"]


def test_shadow_mode_records_both_and_returns_the_primary(tiny_run, second_run, texts, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'p.sqlite'}"
    primary, shadow = TextClassifier.load(tiny_run), TextClassifier.load(second_run)
    app = create_app(primary, ServeLimits(), ServeOptions(store=PredictionStore.open(db), shadow=shadow))
    sample = texts[:40]
    with running(app) as url:
        code, body = post_json(url + "/classify", {"texts": sample[:20]})
        code2, body2 = post_json(url + "/classify", {"texts": sample[20:]})
        assert code == code2 == 200
        results = body["results"] + body2["results"]
        assert {r["run_id"] for r in results} == {primary.run_id}
        deadline = time.monotonic() + 10
        store = PredictionStore.open(db)
        while len(store.shadow_pairs()) < 40 and time.monotonic() < deadline:
            app.state.service.writer.flush(1)
    pairs = store.shadow_pairs()
    assert sorted(p["id"] for p in pairs) == sorted(r["id"] for r in results) and store.count() == 40
    expected = shadow.predict(sample)
    by_id = {p["id"]: p for p in pairs}
    assert [by_id[r["id"]]["shadow_label"] for r in results] == list(expected)  # the shadow's own decisions
    assert {p["shadow_run_id"] for p in pairs} == {shadow.run_id}
    agree = sum(by_id[r["id"]]["shadow_label"] == r["label"] for r in results)
    capsys.readouterr()
    assert main(["monitor", "--db", db, "--out", str(tmp_path / "m"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    (sh,) = summary["shadow"]
    assert (sh["run_id"], sh["shadow_run_id"], sh["n"]) == (primary.run_id, shadow.run_id, 40)
    assert sh["label_agreement"] == pytest.approx(agree / 40) and sh["disagreements"] == 40 - agree
    assert "Shadow " in (tmp_path / "m" / "monitor.html").read_text()


def test_canary_answers_its_share_by_message(tiny_run, second_run, texts, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'p.sqlite'}"
    primary, canary = TextClassifier.load(tiny_run), TextClassifier.load(second_run)
    app = create_app(primary, ServeLimits(), ServeOptions(store=PredictionStore.open(db), canary=canary,
                                                          source=ModelSource(canary_share=0.3)))
    sample = texts[:60]
    with running(app) as url:
        got = {t: post_json(url + "/classify", {"texts": [t]})[1]["results"][0] for t in sample}
        again = post_json(url + "/classify", {"texts": sample[:5]})[1]["results"]
        assert app.state.service.writer.flush(10)
    to_canary = {t for t in sample if in_canary(t, 0.3)}
    assert 8 <= len(to_canary) <= 30
    assert {t for t, r in got.items() if r["run_id"] == canary.run_id} == to_canary
    assert all(got[t]["label"] == canary.predict([t])[0] for t in to_canary)  # the canary decided them
    assert {r["run_id"] for r in again} == {got[sample[0]]["run_id"]}  # a request goes where its first goes
    capsys.readouterr()
    assert main(["monitor", "--db", db, "--out", str(tmp_path / "m"), "--json"]) == 0
    by_run = {r["run_id"]: r["n"] for r in json.loads(capsys.readouterr().out.splitlines()[-1])["by_run"]}
    n_canary = sum(t in to_canary for t in sample) + (5 if sample[0] in to_canary else 0)  # (repeats counted)
    assert by_run == {canary.run_id: n_canary, primary.run_id: 65 - n_canary}


def test_serve_cli_refuses_before_loading(tiny_run, tmp_path, capsys):
    for argv, message in (([], "give a run directory or --registry"),
                          ([str(tiny_run), "--registry", str(tmp_path)], "not both"),
                          (["--registry", str(tmp_path / "empty")], "no current version yet"),
                          ([str(tiny_run), "--canary", str(tiny_run), "--canary-share", "1.5"], "--canary-share")):
        assert main(["serve", *argv, "--no-store"]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
