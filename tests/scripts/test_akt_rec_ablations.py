"""scripts/akt_rec_ablations.py: one `llmrec run` per variant, each a valid config with its switch."""

import pytest

from tests.scripts import REPO_ROOT, load_script
from tfrs_llmrec.config import load_experiment

akt_rec_ablations = load_script("scripts/akt_rec_ablations.py", "akt_rec_ablations")
CONFIG = REPO_ROOT / "configs" / "tuned" / "ml100k_akt_rec.yaml"


def _overrides(command):
    return [command[index + 1] for index, word in enumerate(command) if word == "--set"]


def test_each_variant_command_loads_as_the_config_with_its_switch_and_the_common_overrides():
    planned = akt_rec_ablations.variant_commands(
        "llmrec", CONFIG, "akt", "runs", ["full", "no-instance-view", "equal-lambdas"], 3,
        ["eval.split=test", "model.akt_rec.lambda1=0.5"])
    full, no_instance_view, equal_lambdas = (load_experiment(CONFIG, _overrides(command)) for command, _ in planned)

    assert [config.name for config in (full, no_instance_view, equal_lambdas)] == [
        "akt-full", "akt-no-instance-view", "akt-equal-lambdas"]
    assert all(config.eval.split == "test" for config in (full, no_instance_view, equal_lambdas))
    assert full.model.akt_rec.use_instance_view and not no_instance_view.model.akt_rec.use_instance_view
    # A --set for every variant does not undo a variant's own switch.
    assert (full.model.akt_rec.lambda1, equal_lambdas.model.akt_rec.lambda1) == (0.5, 0.2)
    assert all(command[-2:] == ["--seeds", "3"] for command, _ in planned)
    assert [str(row_dir) for _, row_dir in planned] == [
        "runs/akt-full-3seeds", "runs/akt-no-instance-view-3seeds", "runs/akt-equal-lambdas-3seeds"]


def test_without_seeds_a_row_is_the_run_itself():
    [(command, row_dir)] = akt_rec_ablations.variant_commands("llmrec", CONFIG, "akt", "runs", ["no-hfa-gate"], None,
                                                              [])
    assert "--seeds" not in command and str(row_dir) == "runs/akt-no-hfa-gate"


def test_an_unknown_variant_is_refused_by_name(capsys):
    with pytest.raises(SystemExit) as exit_info:
        akt_rec_ablations.parse_args([str(CONFIG), "--variants", "full,no-gates"])
    assert exit_info.value.code != 0 and "unknown no-gates" in capsys.readouterr().err
