import io
import subprocess

import pytest

from tfrs_llmrec.cli.doctor import (DEFAULT_CHECKS, Check, CheckFailed, doctor, read_expected_conflicts,
                                    run_checks)


def passing() -> str:
    return "fine"


def wrong_version() -> str:
    raise CheckFailed("found 2.16.1, expected 2.20.0")


def crashing() -> str:
    import module_that_does_not_exist  # noqa: F401

    return "unreachable"


def test_all_passing_exits_zero():
    out = io.StringIO()
    code = doctor([Check("A", passing), Check("B", passing)], out=out)
    assert code == 0
    assert "all required checks passed" in out.getvalue()


def test_required_failure_exits_nonzero_and_names_it():
    out = io.StringIO()
    code = doctor([Check("TensorFlow", wrong_version), Check("Beam", passing)], out=out)
    text = out.getvalue()
    assert code == 1
    assert "1 required check(s) failed: TensorFlow" in text
    row = next(line for line in text.splitlines() if line.startswith("TensorFlow"))
    assert "FAIL" in row and "expected 2.20.0" in row


def test_crash_inside_a_probe_is_a_failure_with_its_location():
    [result] = run_checks([Check("ScaNN TF ops", crashing)])
    assert not result.passed
    assert result.detail.startswith("ModuleNotFoundError: No module named 'module_that_does_not_exist'")
    assert "test_doctor.py" in result.detail


def test_optional_failure_does_not_fail_the_run():
    out = io.StringIO()
    code = doctor([Check("Horovod (optional)", wrong_version, required=False), Check("A", passing)], out=out)
    assert code == 0
    assert "absent" in out.getvalue()


def test_several_failures_are_all_named():
    out = io.StringIO()
    assert doctor([Check("X", crashing), Check("Y", wrong_version)], out=out) == 1
    assert "2 required check(s) failed: X, Y" in out.getvalue()


def test_expected_conflicts_file_is_parsed(tmp_path):
    listing = tmp_path / "expected.txt"
    listing.write_text("# comment\na 1.0 has requirement b<2, but you have b 3.\n\n", encoding="utf-8")
    assert read_expected_conflicts(listing) == {"a 1.0 has requirement b<2, but you have b 3."}


def test_default_checks_cover_the_stack():
    names = {check.name for check in DEFAULT_CHECKS}
    for needed in ("TensorFlow", "Keras 2 (tf.keras)", "ScaNN TF ops", "TensorFlow Recommenders", "TFX",
                   "Apache Beam DirectRunner", "Horovod"):
        assert needed in names
    assert next(c for c in DEFAULT_CHECKS if c.name == "Horovod").required  # part of the default install


def test_broken_scann_makes_the_real_command_fail(tmp_path, llmrec_cmd, subprocess_env):
    # A shadowing `scann` package whose TF ops cannot load, ahead of the real one on sys.path.
    fake = tmp_path / "scann"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('libscann_ops.so: cannot open shared object')\n")
    subprocess_env["PYTHONPATH"] = str(tmp_path)
    result = subprocess.run(llmrec_cmd + ["doctor"], capture_output=True, text=True, env=subprocess_env,
                            timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "required check(s) failed: ScaNN TF ops" in result.stdout
    assert "libscann_ops.so" in result.stdout


@pytest.mark.timeout(300)
def test_real_stack_passes(llmrec_cmd, subprocess_env):
    result = subprocess.run(llmrec_cmd + ["doctor"], capture_output=True, text=True, env=subprocess_env,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all required checks passed" in result.stdout
    keras_row = next(line for line in result.stdout.splitlines() if line.startswith("Keras 2"))
    assert " ok " in keras_row and "tf_keras" in keras_row
    assert "Unparseable argument" not in result.stderr
