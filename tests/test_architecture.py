"""Hand-offs between stages: one owner of paths and settings, scikit-learn-compatible models (issue #14 bugs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from lifelines.datasets import load_rossi
from pydantic import ValidationError
from sklearn.base import clone
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted

from hccrad.evaluate import EvaluationSettings
from hccrad.io import load_study
from hccrad.io.layout import StudyLayout, pfs_column, risk_column
from hccrad.survival import CoxRiskModel, ModelConfig, fit_models, make_y
from hccrad.survival.coxmath import survival_probability

from .test_manifest import good_row, write_study


def test_horizons_are_a_study_setting_passed_to_models_and_evaluation(tmp_path):
    with pytest.raises(ValidationError, match="horizons_months is a study setting"):
        ModelConfig(horizons_months=[3])
    path = write_study(tmp_path, [good_row("P1"), good_row("P2", center="V")], horizons_months=[3, 9])
    config = load_study(path).config
    assert EvaluationSettings.from_study(config).horizons == (3.0, 9.0)


def test_the_study_afp_cutoff_reaches_the_models(tmp_path):
    rng = np.random.default_rng(5)
    rows = [good_row(f"P{k}", center="V" if k % 5 == 0 else "T", afp=str(round(10 ** rng.uniform(0, 3.5), 1)),
                     child_pugh="AB"[k % 2], bclc="ABC"[k % 3], pfs_event=str(int(rng.random() < 0.7)),
                     pfs_months=str(round(rng.uniform(1, 24), 1))) for k in range(1, 41)]
    config = load_study(write_study(tmp_path, rows, afp_cutoff_ng_ml=200, models={"models": ["C"]})).config
    models = ModelConfig.for_study(config)
    assert models.clinical.afp_cutoff_ng_ml == 200
    table = load_study(write_study(tmp_path, rows, afp_cutoff_ng_ml=200)).table()
    fitted = fit_models(table, models, tuple(config.horizons_months))
    hazards = fitted.models["C"].hazard_ratios_.set_index("covariate")
    assert hazards.loc["afp_ge_cutoff", "description"].startswith("AFP >= 200 ng/mL")
    # a models section that sets its own cut-off keeps it
    own = load_study(write_study(tmp_path, rows, afp_cutoff_ng_ml=200,
                                 models={"clinical": {"afp_cutoff_ng_ml": 100}})).config
    assert ModelConfig.for_study(own).clinical.afp_cutoff_ng_ml == 100


def test_features_use_predicted_masks_when_the_manifest_gives_none(tmp_path):
    from hccrad.features import FeatureConfig
    from hccrad.features.cohort import build_jobs

    rows = [good_row("P1", mask=""), good_row("P2", center="V", mask="")]
    path = write_study(tmp_path, rows, output_dir="out")
    study = load_study(path)
    layout = study.config.layout
    predicted = layout.predicted_mask("P1")
    predicted.parent.mkdir(parents=True)
    sitk.WriteImage(sitk.Image(4, 4, 4, sitk.sitkUInt8), str(predicted))
    jobs, missing = build_jobs(study, FeatureConfig(params="demo"))
    assert [(job.patient_id, job.mask) for job in jobs] == [("P1", str(predicted))]
    assert [m["patient_id"] for m in missing] == ["P2"]


def test_layout_names_every_stage_file_under_the_output_folder(tmp_path):
    layout = StudyLayout(tmp_path)
    paths = [layout.manifest_issues, layout.run_summary, layout.predicted_mask("A"), layout.feature_table,
             layout.model_artifact("C-T&L"), layout.predictions, layout.evaluation_table("delong"),
             layout.report_html, layout.qc_image("A", "axial")]
    assert all(path.resolve().is_relative_to(tmp_path.resolve()) for path in paths)
    assert layout.model_artifact("C-T&L").name == "C-T_L.json"
    assert pfs_column("T&L", 6.0) == "pfs_6m_T&L" and risk_column("C") == "risk_C"


def test_cox_model_clones_and_cross_validates_with_scikit_learn_tools():
    rossi = load_rossi()
    frame = rossi.rename(columns={c: f"Tumor_{c}" for c in rossi.columns if c not in ("week", "arrest")})
    y = make_y(rossi["week"], rossi["arrest"])
    model = CoxRiskModel("T", ModelConfig(univariate_p=0.2, lasso_folds=3), horizons_months=(26, 52))
    copy = clone(model)
    assert copy.get_params() == model.get_params() and copy is not model
    from lifelines.utils import concordance_index

    scores = []
    for train, test in KFold(3, shuffle=True, random_state=0).split(frame):
        fitted = clone(model).fit(frame.iloc[train], y[train])
        check_is_fitted(fitted, "coef_")
        lp = fitted.predict(frame.iloc[test])
        scores.append(concordance_index(y["time"][test], -lp, y["event"][test]))
    assert 0.55 < np.mean(scores) < 0.8  # prio and age predict re-arrest; published C about 0.64
    with pytest.raises(Exception):  # noqa: B017 - an unfitted clone has no fitted state
        check_is_fitted(clone(model), "coef_")


def test_one_survival_function_for_every_prediction(fitted_demo):
    _, table, fitted = fitted_demo
    model = fitted.models["T&L"]
    lp = model.predict(table)
    # independent truth: the Breslow step function read by hand at 6 months (the last step at or before it)
    steps = [h for t, h in zip(model.baseline_times_, model.baseline_cumhaz_, strict=True) if t <= 6.0]
    expected = np.exp(-(steps[-1] if steps else 0.0) * np.exp(lp))
    values = survival_probability(model.baseline_times_, model.baseline_cumhaz_, lp, [6.0])
    assert values.shape == (len(table), 1)
    np.testing.assert_allclose(values[:, 0], expected, rtol=1e-12)
    np.testing.assert_allclose(fitted.predictions[pfs_column("T&L", 6.0)].to_numpy(), values[:, 0], rtol=1e-12)
    np.testing.assert_allclose(model.predict_survival(table, [6.0]).to_numpy()[:, 0], values[:, 0], rtol=1e-12)


def test_manifest_with_models_horizons_is_refused_before_any_stage(tmp_path):
    from typer.testing import CliRunner

    from hccrad.cli.main import app

    path = write_study(tmp_path, [good_row("P1"), good_row("P2", center="V")], models={"horizons_months": [3]})
    result = CliRunner().invoke(app, ["validate", str(path), "--no-acquisition", "--report",
                                      str(tmp_path / "issues.csv")])
    assert result.exit_code == 1
    issues = pd.read_csv(tmp_path / "issues.csv")
    (message,) = issues.loc[issues["field"] == "models", "message"]
    assert "horizons_months is a study setting" in message
    assert yaml.safe_load(path.read_text())["models"] == {"horizons_months": [3]}


def test_ct_case_keeps_geometry_and_regions(tmp_path):
    from hccrad.io.case import CTCase
    from hccrad.io.images import GeometryMismatchError

    labels = np.zeros((6, 8, 10), np.uint8)
    labels[1:5, 1:7, 1:9] = 1
    labels[2:4, 2:4, 2:4] = 2   # the larger tumor component (8 voxels)
    labels[2, 6, 7] = 2         # a separate 1-voxel component
    labels[3, 5, 5] = 3         # an intrahepatic portal-vein voxel
    image = sitk.GetImageFromArray(np.full(labels.shape, 50, np.int16))
    image.SetSpacing((0.5, 0.8, 2.5))  # x, y, z
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    case = CTCase.read(tmp_path / "ct.nii.gz", tmp_path / "mask.nii.gz")
    assert case.spacing == pytest.approx((2.5, 0.8, 0.5)) and case.voxel_ml == pytest.approx(0.5 * 0.8 * 2.5 / 1000)
    assert case.tumor.sum() == 8 and case.any_tumor.sum() == 9
    assert not (case.remnant_liver & case.any_tumor).any() and case.remnant_liver[3, 5, 5]
    assert CTCase.from_arrays(image, labels, exclude_portal_vein=True).remnant_liver[3, 5, 5] == np.False_
    assert case.volume_ml(case.tumor) == pytest.approx(8 * case.voxel_ml)
    with pytest.raises(ValueError, match="not on the CT's grid"):
        CTCase.from_arrays(image, labels[:, :, :5])
    shifted = sitk.Image(mask)
    shifted.SetOrigin((1.0, 0.0, 0.0))
    with pytest.raises(GeometryMismatchError, match="origin"):
        case.check_same_space(shifted)


def test_the_report_renders_tables_that_the_stages_wrote(tmp_path, small_cohort):
    """Table 1 is computed by the evaluation, the acquisition table by validate; the report only reads them."""
    import shutil

    from typer.testing import CliRunner

    from hccrad.cli.main import app
    from hccrad.evaluate.cohort import table_one

    from .test_input_integrity import _clinical_study

    shutil.copytree(small_cohort.parent, tmp_path / "cohort")
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "cohort" / "study.yaml")])
    assert result.exit_code == 0, result.output
    layout = load_study(tmp_path / "cohort" / "study.yaml").config.layout
    summary = pd.read_csv(layout.acquisition_summary)
    assert len(pd.read_csv(layout.acquisition)) == 12 and set(summary["center"]) <= set("ABCDEF")

    clinical = tmp_path / "clinical"
    clinical.mkdir()
    result = CliRunner().invoke(app, ["run", str(_clinical_study(clinical))])
    study = load_study(clinical / "study.yaml")
    written = pd.read_csv(study.config.layout.evaluation_table("table1"))
    expected = table_one(study.table(), study.config.afp_cutoff_ng_ml)
    assert written["characteristic"].tolist() == expected["characteristic"].tolist()
    report = study.config.layout.report_html.read_text()
    assert "Baseline characteristics (Table 1)" in report and "AFP &gt;= 400 ng/mL" in report


def test_the_model_is_its_transformers_and_a_cox_fit(fitted_demo):
    """The clinical coder and the radiomics selector are scikit-learn transformers with typed fitted state;
    the fitted model's covariates are exactly their outputs."""
    from hccrad.survival.transformers import ClinicalCoder, FeaturePreprocessing, RadiomicsSelector

    _, table, fitted = fitted_demo
    model = fitted.models["C-T&L"]
    assert isinstance(model.clinical_coder_, ClinicalCoder) and isinstance(model.selector_, RadiomicsSelector)
    assert isinstance(model.selector_.preprocessing_, FeaturePreprocessing)
    assert set(model.selector_.selected_) <= set(model.covariates_)
    training = table[table["dataset"] == "training"]
    coded = clone(model.clinical_coder_).fit(training).transform(table)
    np.testing.assert_allclose(coded.to_numpy(float), model.clinical_coder_.transform(table).to_numpy(float))
    features = model.selector_.transform(table)
    design = coded.join(features)[model.covariates_]
    np.testing.assert_allclose(design.to_numpy(float) @ model.coef_, model.predict(table), rtol=1e-12)
    assert clone(model.selector_).get_params() == {"config": model.selector_.config,
                                                    "families": model.selector_.families,
                                                    "robustness": model.selector_.robustness}


def test_data_flows_one_way_no_subpackage_imports_upward():
    """Each stage imports only the stages below it (io -> segment/synth -> features -> survival -> evaluate ->
    report -> pipeline -> serve -> cli), by the import statements of every module, lazy ones included."""
    import ast
    from pathlib import Path

    import hccrad

    rank = {"io": 0, "synth": 1, "segment": 1, "features": 2, "survival": 3, "evaluate": 4, "report": 5,
            "pipeline": 6, "serve": 7, "cli": 8}
    root = Path(hccrad.__file__).parent
    upward = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            continue
        package = parts[0]
        assert package in rank, f"new subpackage {package}: give it its place in the data flow"
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                     [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if name.startswith("hccrad.") and name.split(".")[1] in rank:
                    target = name.split(".")[1]
                    if target != package and rank[target] >= rank[package]:
                        upward.append(f"{path.relative_to(root)} imports {name}")
    assert upward == []


def test_the_survival_modules_import_each_other_without_a_cycle():
    """Artifact I/O depends on the model, never the reverse; ``feature_family`` lives in its own module, so no
    survival module imports another that imports it back (lazy imports included)."""
    import ast
    from pathlib import Path

    import hccrad.survival

    folder = Path(hccrad.survival.__file__).parent
    modules = {path.stem for path in folder.glob("*.py") if path.stem != "__init__"}
    graph = {}
    for module in modules:
        tree = ast.parse((folder / f"{module}.py").read_text())
        graph[module] = {node.module.split(".")[2] for node in ast.walk(tree)
                         if isinstance(node, ast.ImportFrom) and node.module
                         and node.module.startswith("hccrad.survival.")} & modules
    assert "model" in graph["artifact"] and "artifact" not in graph["model"]
    assert "model" not in graph["transformers"]

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in graph[start])

    cycles = [module for module in modules if reaches(module, module, {module})]
    assert cycles == [], {module: graph[module] for module in cycles}
