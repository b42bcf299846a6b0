"""The tuning protocol: seeded distinct trials, validation-only selection, the best config file."""

import json
import textwrap

import pytest

from tfrs_llmrec.config import ConfigError, load_experiment
from tfrs_llmrec.config.loader import parse_override
from tfrs_llmrec.workflow import tuning


def write_config(tmp_path, space, trials=4, seed=0):
    path = tmp_path / "configs" / "exp.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(f"""
        name: exp
        output_dir: {tmp_path / 'runs'}
        model: {{name: mf_bpr}}
        tune:
          trials: {trials}
          seed: {seed}
          space: {space}
    """), encoding="utf-8")
    return path


SPACE = ("[{key: train.learning_rate, values: [0.001, 0.005]}, "
         "{key: model.l2_weight, values: [0.0, 0.00001, 0.0001]}]")


def test_trials_are_distinct_seeded_and_cover_a_small_grid(tmp_path):
    config = load_experiment(write_config(tmp_path, SPACE, trials=4))
    trials = tuning.draw_trials(config)
    combos = [tuple(trial.values.values()) for trial in trials]
    assert len(combos) == 4 and len(set(combos)) == 4
    assert [trial.index for trial in trials] == [0, 1, 2, 3]
    assert tuning.draw_trials(config) == trials
    others = [tuning.draw_trials(load_experiment(write_config(tmp_path, SPACE, trials=4, seed=seed)))
              for seed in range(1, 6)]
    assert any(other != trials for other in others)  # the seed decides which combinations run
    whole = tuning.draw_trials(load_experiment(write_config(tmp_path, SPACE, trials=50)))
    assert sorted(tuple(trial.values.values()) for trial in whole) == sorted(
        (lr, l2) for lr in (0.001, 0.005) for l2 in (0.0, 0.00001, 0.0001))


def test_trial_overrides_keep_types_and_force_the_validation_split(tmp_path):
    path = write_config(tmp_path, SPACE)
    config = load_experiment(path, ["eval.split=test"])
    trial = tuning.Trial(3, {"train.learning_rate": 0.00001, "model.l2_weight": 0.0})
    trial_config = load_experiment(path, ["eval.split=test", *tuning.trial_overrides(config, trial)])
    assert trial_config.train.learning_rate == 0.00001 and trial_config.model.l2_weight == 0.0
    assert trial_config.eval.split == "valid" and not trial_config.export.enabled
    assert trial_config.name == "exp-tune/trial-03"


def test_a_bad_space_fails_before_any_trial(tmp_path):
    path = write_config(tmp_path, "[{key: train.learning_rat, values: [0.1]}]")
    config = load_experiment(path)
    with pytest.raises(ConfigError, match="learning_rat"):
        tuning.check_space(config, lambda extra: load_experiment(path, extra))
    path = write_config(tmp_path, "[{key: train.learning_rate, values: [-1.0]}]")
    with pytest.raises(ConfigError, match="train.learning_rate"):
        tuning.check_space(load_experiment(path), lambda extra: load_experiment(path, extra))
    with pytest.raises(ConfigError, match="tune.space"):
        empty = write_config(tmp_path, "[]")
        tuning.check_space(load_experiment(empty), lambda extra: load_experiment(empty, extra))
    with pytest.raises(ConfigError, match="searched twice"):
        load_experiment(write_config(tmp_path, "[{key: seed, values: [1]}, {key: seed, values: [2]}]"))


def write_trial_run(run_dir, split, value):
    run_dir.mkdir(parents=True)
    summary = {"overall": {"recall@20": value, "ndcg@20": value / 2}}
    (run_dir / "metrics.json").write_text(json.dumps({"split": split, "models": {"mf_bpr": {"summary": summary}}}))
    (run_dir / "train_result.json").write_text(json.dumps({"best_epoch": 2, "epochs_completed": 4, "seconds": 1.5}))


def test_selection_reads_validation_only_and_ties_go_to_the_earlier_trial(tmp_path):
    config = load_experiment(write_config(tmp_path, SPACE))
    trials = tuning.draw_trials(config)
    values = [0.21, 0.25, 0.25, 0.19]
    outcomes = []
    for trial, value in zip(trials, values):
        write_trial_run(tmp_path / f"t{trial.index}", "valid", value)
        outcomes.append(tuning.trial_outcome(config, trial, tmp_path / f"t{trial.index}"))
    best = tuning.best_outcome(outcomes)
    assert best["trial"] == 1 and best["value"] == 0.25 and best["values"] == trials[1].values
    write_trial_run(tmp_path / "on-test", "test", 0.9)
    with pytest.raises(ValueError, match="'valid' only"):
        tuning.trial_outcome(config, trials[0], tmp_path / "on-test")


def test_the_best_config_includes_the_searched_one_with_the_chosen_values(tmp_path):
    path = write_config(tmp_path, SPACE)
    config = load_experiment(path, ["train.epochs=7", "name=renamed"])
    outcome = {"trial": 2, "values": {"train.learning_rate": 0.001, "model.l2_weight": 0.00001},
               "metric": "recall@20", "value": 0.3}
    output = tmp_path / "configs" / "tuned" / "exp.yaml"
    fixed = tuning.fixed_values(["train.epochs=7", "name=renamed"], parse_override)
    assert fixed == {"train.epochs": 7}
    text = tuning.best_config_text(path, output, config.name, outcome, [outcome], fixed)
    output.parent.mkdir(parents=True)
    output.write_text(text)
    assert "include: ../exp.yaml" in text and str(tmp_path) not in text.split("include:")[1].splitlines()[0]
    tuned = load_experiment(output)
    assert tuned.name == "renamed-tuned" and tuned.train.learning_rate == 0.001
    assert tuned.model.l2_weight == 0.00001 and tuned.train.epochs == 7
    assert tuned.tune.space == config.tune.space  # the search it came from stays declared
