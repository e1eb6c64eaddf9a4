"""No command shows a traceback for a user's input: each gets a broken input and answers with one `error:` line
naming what is wrong, and a non-zero status."""

from __future__ import annotations

import shutil

import pytest
import yaml
from typer.testing import CliRunner

from hccrad.cli.main import app


@pytest.fixture(scope="module")
def study(small_cohort, tmp_path_factory):
    """A copy of the small cohort's study, and a YAML with a typo beside it."""
    folder = tmp_path_factory.mktemp("broken")
    shutil.copytree(small_cohort.parent, folder / "cohort")
    manifest = folder / "cohort" / small_cohort.name
    settings = yaml.safe_load(manifest.read_text())
    settings["time_units"] = settings.pop("time_unit", "months")
    typo = folder / "cohort" / "typo.yaml"
    typo.write_text(yaml.safe_dump(settings))
    return manifest, typo, folder


def _cases(manifest, typo, folder):
    blocker = folder / "a-file"
    blocker.write_text("x")
    empty = folder / "empty-models"
    empty.mkdir(exist_ok=True)
    listing = folder / "list.yaml"
    listing.write_text("- a\n- b\n")
    return {
        "validate": (["validate", str(listing)], "must hold a mapping of settings"),
        "synth": (["synth", "--out", str(blocker / "cohort"), "--patients", "6"], "cannot write to the output folder"),
        "features": (["features", str(typo)], "did you mean `time_unit`"),
        "robustness": (["robustness", str(manifest)], "no features table"),
        "fit": (["fit", str(manifest), "--features", str(folder / "nowhere")], "no features table"),
        "evaluate": (["evaluate", str(manifest), "--models", str(empty)], "run `hccrad fit` first"),
        "run": (["run", str(folder / "missing.yaml")], "manifest not found"),
        "segment export": (["segment", "export", "--ct", str(blocker)], "with --ct give --mask and --out"),
        "segment prepare": (["segment", "prepare", str(typo)], "did you mean `time_unit`"),
        "predict (JSON)": (["predict", "--models", str(empty), "--patient", "{bad"], "no model artifact"),
        "predict (table)": (["predict", "--model", str(listing), "--afp", "3"], "model artifact"),
        "serve": (["serve", "--models", str(folder / "nowhere")], "no model artifact"),
        "demo": (["demo", "--out", str(blocker / "demo"), "--patients", "6"], "cannot write to the output folder"),
    }


@pytest.mark.parametrize("name", ["validate", "synth", "features", "robustness", "fit", "evaluate", "run",
                                  "segment export", "segment prepare", "predict (JSON)", "predict (table)", "serve",
                                  "demo"])
def test_each_command_answers_a_broken_input_with_one_line(study, name):
    manifest, typo, folder = study
    args, expected = _cases(manifest, typo, folder)[name]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors and expected in " ".join(result.output.split()), result.output


def test_predict_answers_bad_json_and_unreadable_tables(study, capsys):
    from hccrad.cli.main import _read_patients

    _, _, folder = study
    bad_table = folder / "bad.csv"
    bad_table.write_text("a,b\n1,2,3,4\n")
    for args, expected in (((None, "{bad"), "not valid JSON"), ((None, str(folder / "no.json")), "no such file"),
                           ((None, "[1, 2]"), "not a JSON object"),
                           ((bad_table, None), "cannot be read as a table of patients")):
        with pytest.raises(Exception) as raised:
            _read_patients(*args)
        assert type(raised.value).__name__ == "Exit", raised.value
        captured = capsys.readouterr()
        assert expected in " ".join((captured.out + captured.err).split())


def test_an_unexpected_error_is_one_line_with_how_to_see_the_traceback(monkeypatch):
    import hccrad.cli.main as cli

    def broken(*_, **__):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("hccrad.synth.generate_cohort", broken)
    result = CliRunner().invoke(cli.app, ["synth", "--out", "/tmp/hccrad-unexpected", "--patients", "6"])
    assert result.exit_code == 3
    assert "error: ZeroDivisionError: division by zero (unexpected: run again with HCCRAD_DEBUG=1" in \
        " ".join(result.output.split())
