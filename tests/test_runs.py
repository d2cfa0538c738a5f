"""jaxdl.runs: run folders, the settings that identify a run, and loading a saved run."""

import json
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import jaxdl as dl
from jaxdl import runs
from jaxdl.checkpoint import save_checkpoint
from jaxdl.data.text import Vocabulary
from jaxdl.loop import ResumeError


def test_identity_leaves_out_where_a_run_happens_and_how_far_it_trains():
    settings = {"lr": 0.1, "hidden": (8, 8), "epochs": 3, "out": Path("runs/x"), "resume": True, "devices": 8,
                "progress": None, "data_dir": Path("d"), "steps_per_call": 5, "vocab": Path("v.json")}
    assert runs.identity(settings) == {"lr": 0.1, "hidden": (8, 8), "vocab": "v.json"}


def test_members_have_their_own_seeds_and_folders(tmp_path):
    assert runs.members(tmp_path, 3) == [(3, tmp_path / "checkpoints")]
    assert runs.members(tmp_path, 3, 3, name="checkpoints/tagger") == [
        (3, tmp_path / "checkpoints/tagger/member1"), (4, tmp_path / "checkpoints/tagger/member2"),
        (5, tmp_path / "checkpoints/tagger/member3")]


def test_saved_members_are_found_in_numeric_order(tmp_path):
    assert runs.saved_members(tmp_path) == [tmp_path / "checkpoints"]  # a single network
    for name in ("member10", "member2", "member1", "memberx"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    assert runs.saved_members(tmp_path) == [tmp_path / "checkpoints" / f"member{i}" for i in (1, 2, 10)]


def test_a_new_run_never_trains_over_an_old_one(tmp_path):
    runs.refuse_an_old_run(tmp_path, resume=False)  # nothing there yet
    (tmp_path / "checkpoints" / "member1").mkdir(parents=True)
    (tmp_path / "checkpoints" / "member1" / "step_000000001.ckpt").write_bytes(b"")
    with pytest.raises(ResumeError, match="already holds a run's checkpoints: add --resume"):
        runs.refuse_an_old_run(tmp_path, resume=False)
    runs.refuse_an_old_run(tmp_path, resume=True)


def test_a_vocabulary_is_built_for_a_new_run_and_read_back_when_it_resumes(tmp_path):
    first = runs.run_vocabulary(tmp_path, "words.json", lambda: Vocabulary.build([["a", "b"]]), resume=False)
    again = runs.run_vocabulary(tmp_path, "words.json", lambda: Vocabulary.build([["c"]]), resume=True)
    assert again == first and (tmp_path / "words.json").exists()
    fresh = runs.run_vocabulary(tmp_path, "words.json", lambda: Vocabulary.build([["c"]]), resume=False)
    assert fresh.tokens[2:] == ("c",)


def test_metrics_json_holds_the_figures_and_the_peak_memory(tmp_path):
    path = runs.write_metrics(tmp_path, {"accuracy": 0.5})
    written = json.loads(path.read_text())
    assert written["accuracy"] == 0.5 and written["peak_rss_mb"] > 0


def test_metrics_json_says_null_for_the_peak_memory_where_the_system_does_not_report_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "resource", None)  # as on Windows: no resource module
    assert runs.peak_rss_mb() is None
    written = json.loads(runs.write_metrics(tmp_path, {"accuracy": 0.5}).read_text())
    assert written == {"accuracy": 0.5, "peak_rss_mb": None}


def build(settings, vocabularies):
    return dl.serial(dl.Embedding(len(vocabularies["words"]), 4), dl.Flatten(), dl.Dense(settings["classes"]))


def test_a_saved_ensemble_loads_with_its_model_vocabularies_and_settings(tmp_path):
    words = Vocabulary.build([["a", "b", "c"]])
    words.save(tmp_path / "words.json")
    settings = {"classes": 3, "lr": 0.1}
    model = build(settings, {"words": words})
    saved = []
    for member in runs.members(tmp_path, 0, 2):
        _, params = model.init(jax.random.key(member.seed), (-1, 2))
        state = dl.TrainState.create(params, optax.sgd(0.1), jax.random.key(0))
        save_checkpoint(member.folder, state, 1, config={**settings, "seed": member.seed})
        saved.append(params)
    run = runs.load_run(tmp_path, build, vocabularies=("words",))
    assert run.settings == {"classes": 3, "lr": 0.1, "seed": 0} and run.vocabularies["words"] == words
    assert len(run.members) == 2 and run.model_states == [None, None]
    ids = np.array([[2, 3]])
    for params, want in zip(run.members, saved):
        np.testing.assert_allclose(run.model.apply(params, ids), model.apply(want, ids), rtol=1e-6)


def test_a_folder_without_a_run_or_without_its_vocabulary_says_so(tmp_path):
    with pytest.raises(runs.RunError, match="no trained run in .*: train one first"):
        runs.load_run(tmp_path, build)
    model = build({"classes": 2}, {"words": Vocabulary.build([["a"]])})
    _, params = model.init(jax.random.key(0), (-1, 2))
    save_checkpoint(tmp_path / "checkpoints", dl.TrainState.create(params, optax.sgd(0.1), jax.random.key(0)), 1)
    with pytest.raises(runs.RunError, match="is not whole: no vocabulary at"):
        runs.load_run(tmp_path, build, vocabularies=("words",))
