import subprocess

import pytest
import yaml

from tfrs_llmrec.cli.main import EXIT_USAGE, STAGES, build_parser, main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as raised:
        build_parser().parse_args(["--help"])
    assert raised.value.code == 0
    text = capsys.readouterr().out
    for command in ("data", "features", "train", "evaluate", "export", "serve", "pipeline", "run", "tune", "doctor"):
        assert command in text


def test_config_error_exits_2_with_key_path(tmp_path, capsys):
    path = tmp_path / "x.yaml"
    path.write_text("name: e\nmodel: {tower: {dim: big}}\n")
    assert main(["run", str(path)]) == EXIT_USAGE
    assert f"{path}: model.tower.dim: expected int, got 'big'" in capsys.readouterr().err


def test_set_override_error_exits_2(tmp_path, capsys):
    path = tmp_path / "x.yaml"
    path.write_text("name: e\n")
    assert main(["train", str(path), "--set", "train.epochs=three"]) == EXIT_USAGE
    assert "--set: train.epochs: expected int, got 'three'" in capsys.readouterr().err


def test_dry_run_prints_resolved_config_with_overrides(tmp_path, capsys):
    path = tmp_path / "x.yaml"
    path.write_text(f"name: e\noutput_dir: {tmp_path / 'runs'}\n")
    assert main(["run", str(path), "--dry-run", "--set", "train.epochs=3"]) == 0
    out = capsys.readouterr().out
    resolved = yaml.safe_load(out.split("  data ")[0])
    assert resolved["train"]["epochs"] == 3
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_every_stage_is_wired_to_a_function():
    from tfrs_llmrec.workflow import run as stages

    assert [stage.name for stage in STAGES] == ["data", "features", "ctr", "train", "evaluate", "export", "report"]
    for stage in STAGES:
        assert callable(getattr(stages, stage.function))


def test_console_script_sets_legacy_keras_itself(llmrec_cmd, subprocess_env, repo_root):
    result = subprocess.run(llmrec_cmd + ["run", str(repo_root / "configs" / "demo.yaml"), "--dry-run"],
                            capture_output=True, text=True, env=subprocess_env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "name: demo-ml100k-two-tower" in result.stdout


def test_serve_without_a_model_directory_exits_2_naming_it(tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    assert main(["serve", "--model_base_path", str(missing)]) == EXIT_USAGE
    assert f"--model_base_path {missing}: not a directory" in capsys.readouterr().err
