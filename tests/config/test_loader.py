import textwrap
from pathlib import Path

import pytest

from tfrs_llmrec.config import ConfigError, ExperimentConfig, load_experiment
from tfrs_llmrec.config.loader import config_hash, dump_yaml, from_dict, load_config, parse_override


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_valid_config_fills_defaults(tmp_path):
    path = write(tmp_path, "x.yaml", """
        name: exp
        model:
          tower:
            dim: 32
            hidden_dims: [128, 64]
        train:
          epochs: 4
    """)
    config = load_experiment(path)
    assert isinstance(config, ExperimentConfig)
    assert config.model.tower.dim == 32
    assert config.model.tower.hidden_dims == [128, 64]
    assert config.train.epochs == 4
    assert config.train.batch_size == 1024  # default
    assert config.eval.ks == [10, 20, 50]


def test_int_is_accepted_where_float_is_expected(tmp_path):
    config = load_experiment(write(tmp_path, "x.yaml", "name: e\ntrain: {learning_rate: 1}\n"))
    assert config.train.learning_rate == 1.0 and isinstance(config.train.learning_rate, float)


def test_unknown_key_names_file_path_and_suggests(tmp_path):
    path = write(tmp_path, "x.yaml", "name: e\ntrain:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as raised:
        load_experiment(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: train.epoch: unknown key")
    assert "epochs" in message


def test_wrong_type_names_file_and_key_path(tmp_path):
    path = write(tmp_path, "x.yaml", "name: e\nmodel:\n  tower:\n    dim: big\n")
    with pytest.raises(ConfigError) as raised:
        load_experiment(path)
    assert str(raised.value) == f"{path}: model.tower.dim: expected int, got 'big'"


def test_bool_is_not_an_int(tmp_path):
    path = write(tmp_path, "x.yaml", "name: e\ntrain: {epochs: true}\n")
    with pytest.raises(ConfigError, match=r"train\.epochs: expected int"):
        load_experiment(path)


def test_list_element_type_error_has_index(tmp_path):
    path = write(tmp_path, "x.yaml", "name: e\neval: {ks: [10, twenty]}\n")
    with pytest.raises(ConfigError, match=r"eval\.ks\[1\]: expected int, got 'twenty'"):
        load_experiment(path)


def test_literal_choice_is_enforced(tmp_path):
    path = write(tmp_path, "x.yaml", "name: e\nexport: {indexes: [scann, annoy]}\n")
    with pytest.raises(ConfigError, match=r"export\.indexes\[1\]: expected one of .*'scann'.*got 'annoy'"):
        load_experiment(path)


def test_bounds_are_enforced(tmp_path):
    path = write(tmp_path, "x.yaml", "name: e\ntrain: {epochs: 0}\n")
    with pytest.raises(ConfigError, match=r"train\.epochs: 0 is out of range \[1, inf\]"):
        load_experiment(path)


def test_cross_field_validation_names_key(tmp_path):
    path = write(tmp_path, "x.yaml", "name: e\ndata: {split_ratios: [0.5, 0.1, 0.1]}\n")
    with pytest.raises(ConfigError, match=r"data\.split_ratios: expected three fractions summing to 1"):
        load_experiment(path)


def test_eimf_over_remi_without_remis_terms_is_refused(tmp_path):
    path = write(tmp_path, "x.yaml", "name: e\nmodel: {name: eimf, eimf: {backbone: remi}}\n")
    with pytest.raises(ConfigError, match=r"model\.eimf\.backbone: 'remi' needs model\.sequence\.hard_negative_beta"):
        load_experiment(path)
    with_terms = load_experiment(path, ["model.sequence.hard_negative_beta=1.0"])
    assert with_terms.model.eimf.backbone == "remi"
    assert load_experiment(path, ["model.name=remi"]).model.name == "remi"


def test_missing_required_key(tmp_path):
    path = write(tmp_path, "x.yaml", "seed: 1\n")
    with pytest.raises(ConfigError, match=r"name: .*required"):
        load_experiment(path)


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="config file not found") as raised:
        load_experiment(missing)
    assert str(missing) in str(raised.value)


def test_missing_include_names_including_file(tmp_path):
    path = write(tmp_path, "x.yaml", "include: base.yaml\nname: e\n")
    with pytest.raises(ConfigError) as raised:
        load_experiment(path)
    assert "base.yaml" in str(raised.value) and f"included from {path}" in str(raised.value)


def test_invalid_yaml_reports_line(tmp_path):
    path = write(tmp_path, "x.yaml", "name: e\ntrain: [unclosed\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+"):
        load_experiment(path)


def test_include_merges_mappings_and_child_overrides(tmp_path):
    write(tmp_path, "base.yaml", """
        seed: 7
        model: {tower: {dim: 16, hidden_dims: [32]}, temperature: 0.1}
        eval: {ks: [5]}
    """)
    path = write(tmp_path, "child.yaml", """
        include: base.yaml
        name: child
        model: {tower: {dim: 48}}
    """)
    config = load_experiment(path)
    assert config.seed == 7
    assert config.model.tower.dim == 48
    assert config.model.tower.hidden_dims == [32]  # kept from base: mappings merge key by key
    assert config.model.temperature == 0.1
    assert config.eval.ks == [5]


def test_error_in_included_file_names_that_file(tmp_path):
    base = write(tmp_path, "base.yaml", "train: {epochs: many}\n")
    path = write(tmp_path, "child.yaml", "include: base.yaml\nname: c\n")
    with pytest.raises(ConfigError) as raised:
        load_experiment(path)
    assert str(raised.value).startswith(f"{base}: train.epochs: expected int")


def test_include_cycle_is_reported(tmp_path):
    write(tmp_path, "a.yaml", "include: b.yaml\nname: a\n")
    write(tmp_path, "b.yaml", "include: a.yaml\n")
    with pytest.raises(ConfigError, match="include cycle"):
        load_experiment(tmp_path / "a.yaml")


def test_cli_override_wins_and_keeps_yaml_types(tmp_path):
    path = write(tmp_path, "x.yaml", "name: e\ntrain: {epochs: 10}\n")
    config = load_experiment(path, ["train.epochs=3", "eval.ks=[1, 2]", "model.logq_correction=false"])
    assert config.train.epochs == 3
    assert config.eval.ks == [1, 2]
    assert config.model.logq_correction is False


def test_exponent_floats_without_a_dot_are_floats_in_files_and_overrides(tmp_path):
    # YAML 1.1 (PyYAML's) reads 1e-4 as the string '1e-4'; a float key would refuse it.
    path = write(tmp_path, "x.yaml", "name: e\ntrain: {learning_rate: 1e-4, optimizer_epsilon: 2E-7}\n")
    config = load_experiment(path, ["model.l2_weight=3e-5"])
    assert config.train.learning_rate == pytest.approx(1.0e-4)
    assert config.train.optimizer_epsilon == pytest.approx(2.0e-7)
    assert config.model.l2_weight == pytest.approx(3.0e-5)
    assert load_experiment(write(tmp_path, "quoted.yaml", "name: '1e5'\n")).name == "1e5"
    with pytest.raises(ConfigError, match=r"name: expected str, got 100000\.0"):
        load_experiment(write(tmp_path, "bare.yaml", "name: 1e5\n"))  # a number, like any unquoted one


def test_cli_override_errors_name_set(tmp_path):
    path = write(tmp_path, "x.yaml", "name: e\n")
    with pytest.raises(ConfigError) as raised:
        load_experiment(path, ["model.tower.dim=big"])
    assert str(raised.value) == "--set: model.tower.dim: expected int, got 'big'"
    with pytest.raises(ConfigError, match=r"--set: train\.epohcs: unknown key"):
        load_experiment(path, ["train.epohcs=3"])


@pytest.mark.parametrize("text", ["train.epochs", "=3", "train..epochs=3"])
def test_malformed_override(text):
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        parse_override(text)


def test_override_of_mapping_by_scalar_is_a_type_error(tmp_path):
    path = write(tmp_path, "x.yaml", "name: e\n")
    with pytest.raises(ConfigError, match=r"--set: model\.tower: expected a mapping"):
        load_experiment(path, ["model.tower=3"])


def test_dump_round_trips_and_hash_is_stable(tmp_path):
    config = load_experiment(write(tmp_path, "x.yaml", "name: e\nmodel: {tower: {dim: 8}}\n"))
    again = load_config(write(tmp_path, "dumped.yaml", dump_yaml(config)), ExperimentConfig)
    assert again == config
    assert config_hash(again) == config_hash(config)
    changed = from_dict(ExperimentConfig, {"name": "e", "model": {"tower": {"dim": 9}}})
    assert config_hash(changed) != config_hash(config)


def test_every_shipped_config_loads(repo_root):
    configs = sorted((repo_root / "configs").rglob("*.yaml"))  # tuned/ configs include their source
    assert configs
    for path in configs:
        if path.name == "base.yaml":
            continue
        assert load_experiment(path).name


def test_every_shipped_config_gets_the_same_tuning_budget(repo_root):
    """Issue #15's protocol: no model's search may draw more trials than another's."""
    budgets = {path.name: load_experiment(path).tune.trials
               for path in sorted((repo_root / "configs").rglob("*.yaml")) if path.name != "base.yaml"}
    assert set(budgets.values()) == {4}, budgets
