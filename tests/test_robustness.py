"""Feature robustness: the ICCs against Shrout & Fleiss' published example and pingouin, the perturbations'
properties, known truth on synthetic cases, and the selection's filter in a whole study."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from hccrad.features.icc import FORMS, icc_table
from hccrad.features.perturb import PerturbationDraw, adapt_volume, draw, perturb, perturbation_seed, rigid

#: Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges, and their Table 4's ICCs (two decimals).
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)
SHROUT_FLEISS_PUBLISHED = {"ICC1": 0.17, "ICC2": 0.29, "ICC3": 0.71, "ICC1k": 0.44, "ICC2k": 0.62, "ICC3k": 0.91}
PINGOUIN_NAMES = {"ICC1": "ICC(1,1)", "ICC2": "ICC(A,1)", "ICC3": "ICC(C,1)", "ICC1k": "ICC(1,k)",
                  "ICC2k": "ICC(A,k)", "ICC3k": "ICC(C,k)"}


def pingouin_icc(ratings: np.ndarray) -> pd.DataFrame:
    import pingouin

    n, k = ratings.shape
    long = pd.DataFrame({"target": np.repeat(np.arange(n), k), "rater": np.tile(np.arange(k), n),
                         "rating": ratings.ravel()})
    return pingouin.intraclass_corr(long, "target", "rater", "rating").set_index("Type")


def test_icc_equals_shrout_and_fleiss_published_values_and_pingouin():
    ours = icc_table(SHROUT_FLEISS[None]).iloc[0]
    for form, published in SHROUT_FLEISS_PUBLISHED.items():
        assert round(ours[form], 2) == published, form  # the paper prints two decimals
    reference = pingouin_icc(SHROUT_FLEISS)
    for form in FORMS:
        row = reference.loc[PINGOUIN_NAMES[form]]
        assert ours[form] == pytest.approx(row["ICC"], abs=1e-12)
        assert [ours[f"{form}_low"], ours[f"{form}_high"]] == pytest.approx(list(row["CI95"]), abs=5e-3)


def test_icc_of_many_features_at_once_equals_pingouin_one_by_one():
    """Vectorised over features: random targets with rater effects and noise of several sizes."""
    rng = np.random.default_rng(3)
    cube = (rng.normal(size=(5, 12, 1)) * rng.uniform(0.5, 3, size=(5, 1, 1))  # targets
            + rng.normal(size=(5, 1, 4)) * 0.5 + rng.normal(size=(5, 12, 4)) * rng.uniform(0.2, 2, size=(5, 1, 1)))
    ours = icc_table(cube)
    for feature in range(5):
        reference = pingouin_icc(cube[feature])
        for form in FORMS:
            assert ours.loc[feature, form] == pytest.approx(reference.loc[PINGOUIN_NAMES[form], "ICC"], abs=1e-10)


def test_pure_noise_gives_an_icc_near_zero_and_identical_raters_give_one():
    rng = np.random.default_rng(0)
    noise = icc_table(rng.normal(size=(200, 30, 10)))
    assert abs(noise["ICC1"].mean()) < 0.01 and noise["ICC1"].abs().max() < 0.15
    assert ((noise["ICC1_low"] < 0) & (noise["ICC1_high"] > 0)).mean() > 0.9  # the interval holds 0
    same = icc_table(np.repeat(rng.normal(size=(3, 8, 1)), 5, axis=2))
    assert np.allclose(same[list(FORMS)].to_numpy(), 1.0)
    flat = icc_table(np.ones((1, 8, 5)))
    assert flat.isna().all(axis=None)  # no variance: no ICC


def _phantom(seed: int = 1):
    """A synthetic CT (int16, 2 mm voxels) with liver 1, a tumor 2 and a portal vein 3."""
    rng = np.random.default_rng(seed)
    shape = (30, 64, 64)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    body = ((y - 32) / 30.0) ** 2 + ((x - 32) / 30.0) ** 2 <= 1.0
    liver = (((z - 15) / 11.0) ** 2 + ((y - 30) / 18.0) ** 2 + ((x - 28) / 20.0) ** 2 <= 1.0)
    tumor = ((z - 15) ** 2 + (y - 28) ** 2 + (x - 24) ** 2) <= 36
    portal = ((y - 36) ** 2 + (x - 38) ** 2 <= 4) & (np.abs(z - 15) < 8) & ~tumor
    hu = np.where(body, 40.0, -1000.0) + np.where(liver, 60.0, 0.0) - np.where(tumor, 50.0, 0.0)
    hu = hu + rng.normal(0, 12, shape)
    labels = np.zeros(shape, np.uint8)
    labels[liver] = 1
    labels[portal & liver] = 3
    labels[tumor & liver] = 2
    image = sitk.GetImageFromArray(hu.astype(np.int16))
    image.SetSpacing((2.0, 2.0, 2.0))
    return image, labels


def test_perturbations_keep_the_mask_on_the_image_reproduce_from_their_seed_and_do_nothing_at_zero():
    image, labels = _phantom()
    plan = draw(("rotation", "translation", "volume", "contour", "noise"), perturbation_seed(7, "P1", 3), 10.0,
                0.5, 0.1, 2.0)
    first_image, first_labels = perturb(image, labels, plan, 12.0)
    again_image, again_labels = perturb(image, labels, plan, 12.0)
    assert np.array_equal(first_labels, again_labels)
    assert np.array_equal(sitk.GetArrayFromImage(first_image), sitk.GetArrayFromImage(again_image))
    assert first_labels.shape == labels.shape and first_image.GetSize() == image.GetSize()
    tumor, liver = first_labels == 2, first_labels > 0
    assert tumor.any() and not (tumor & ~liver).any()  # the tumor stays within the liver
    other = draw(("rotation", "translation", "volume", "contour", "noise"), perturbation_seed(7, "P1", 4), 10.0,
                 0.5, 0.1, 2.0)
    assert not np.array_equal(perturb(image, labels, other, 12.0)[1], first_labels)
    still_image, still_labels = perturb(image, labels, PerturbationDraw(seed=5), 12.0)
    assert np.array_equal(still_labels, labels)
    assert np.array_equal(sitk.GetArrayFromImage(still_image), sitk.GetArrayFromImage(image).astype(np.float32))


@pytest.mark.parametrize(("angle", "shift"), [(7.3, (0.4, -0.6, 0.3)), (-9.9, (0.0, 0.5, -0.5)), (0.0, (1.7, 0, 0))])
def test_the_separable_rigid_transform_equals_simpleitks_3d_b_spline_resampling(angle, shift):
    rng = np.random.default_rng(0)
    from scipy import ndimage

    values = (ndimage.gaussian_filter(rng.normal(size=(40, 70, 60)), 2) * 1000).astype(np.float32)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.7, 0.8, 2.5))  # non-square pixels: the rotation is in mm
    labels = (ndimage.gaussian_filter(rng.normal(size=values.shape), 3) > 0.02).astype(np.uint8)
    box, centre = (slice(10, 30), slice(15, 55), slice(15, 45)), np.array([20.0, 35.0, 30.0])
    ours, our_labels = rigid(image, labels, angle, shift, centre, box)
    transform = sitk.Euler3DTransform()
    transform.SetCenter(image.TransformContinuousIndexToPhysicalPoint(centre[::-1].tolist()))
    transform.SetRotation(0.0, 0.0, float(np.deg2rad(angle)))
    transform.SetTranslation(tuple(float(v) for v in np.array(shift[::-1]) * np.array(image.GetSpacing())))
    reference = image[box[2], box[1], box[0]]
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    expected = sitk.GetArrayFromImage(sitk.Resample(image, reference, transform, sitk.sitkBSpline,
                                                    float(values.min()), sitk.sitkFloat32))
    expected_labels = sitk.GetArrayFromImage(sitk.Resample(mask, reference, transform, sitk.sitkNearestNeighbor))
    assert np.abs(ours - expected).max() < 1e-3 * np.abs(values).max()
    assert np.array_equal(our_labels, expected_labels)


@pytest.mark.parametrize("fraction", [-0.1, 0.1, 0.25])
def test_volume_adaptation_hits_its_target_to_the_voxel(fraction):
    _, labels = _phantom()
    tumor, liver = labels == 2, labels > 0
    adapted = adapt_volume(tumor, fraction, (2.0, 2.0, 2.0), liver, np.random.default_rng(0))
    assert int(adapted.sum()) == int(round(tumor.sum() * (1 + fraction)))
    assert not (adapted & ~liver).any()
    if fraction > 0:
        assert (adapted >= tumor).all()  # grown outward only
        from scipy import ndimage

        layer = ndimage.binary_dilation(tumor, iterations=2) & liver
        assert not (adapted & ~layer).any()  # within two voxel layers of the drawn boundary
    else:
        assert (adapted <= tumor).all()


def _copy_study(demo_cohort_features, tmp_path, robustness: dict):
    """The demo study (its features already computed) copied, with a robustness section."""
    study, _ = demo_cohort_features
    target = tmp_path / "study"
    shutil.copytree(study.config.base_dir, target)
    manifest = target / "study.yaml"
    settings = yaml.safe_load(manifest.read_text())
    settings["features"] = {**settings["features"], "robustness": robustness}
    manifest.write_text(yaml.safe_dump(settings))
    return manifest


def test_noise_leaves_volume_and_median_hu_more_robust_than_fine_texture_and_reruns_reuse(demo_cohort_features,
                                                                                        tmp_path):
    """Known truth on synthetic patients: under noise alone the tumor's volume cannot move (ICC 1) and its median
    HU barely does, while the fine texture of the LoG (sigma 3 mm) image, which the noise feeds, moves more."""
    from hccrad.features.robustness import extract_robustness
    from hccrad.io import load_study

    manifest = _copy_study(demo_cohort_features, tmp_path, {"perturbations": 3, "patients": 6, "kinds": ["noise"]})
    study = load_study(manifest)
    table = pd.read_parquet(study.config.layout.feature_table)
    run = extract_robustness(study, table)
    assert len(run.computed) == 18 and not run.failures and len(run.patients) == 6
    icc = run.table.set_index("feature")["ICC1"]
    assert icc["Tumor_volume_mL"] == pytest.approx(1.0)
    texture = icc[[f for f in icc.index if f.startswith("Tumor_log-sigma-3-mm-3D_glcm")]].median()
    assert icc["Tumor_HU_median"] > texture and icc["Tumor_HU_median"] > 0.9
    written = pd.read_csv(study.config.layout.robustness_table)
    assert list(written.columns[:4]) == ["feature", "region", "image_type", "feature_class"]
    assert set(FORMS) <= set(written.columns) and written["n_perturbations"].eq(3).all()
    again = extract_robustness(study, table)
    assert again.computed == [] and len(again.reused) == 18
    pd.testing.assert_frame_equal(again.table, run.table)
    _stale_tables_are_refused(manifest, table)


def _stale_tables_are_refused(manifest, table):
    """`hccrad fit`'s filter takes the robustness table only while it is the one the manifest and the feature table
    ask for; otherwise it names what changed."""
    from hccrad.io import load_study
    from hccrad.pipeline.stages import MissingStageOutput, robustness_filter

    original = manifest.read_text()

    def with_features(**changes):
        settings = yaml.safe_load(original)
        settings["features"] = {**settings["features"], **changes}
        manifest.write_text(yaml.safe_dump(settings))
        return load_study(manifest)

    robustness = yaml.safe_load(original)["features"]["robustness"]
    assert robustness_filter(with_features(robustness={**robustness, "min_icc": 0.9}), table)["min_icc"] == 0.9
    assert robustness_filter(with_features(robustness={**robustness, "icc": "ICC3"}), table)["icc_form"] == "ICC3"
    with pytest.raises(MissingStageOutput, match=r"perturbations: 3 then, 4 now"):
        robustness_filter(with_features(robustness={**robustness, "perturbations": 4}), table)
    with pytest.raises(MissingStageOutput, match="feature settings"):
        robustness_filter(with_features(pad_sigmas=4.0), table)
    study = with_features()
    with pytest.raises(MissingStageOutput, match="training patients changed"):
        robustness_filter(study, table.drop(index=json.loads(
            (study.config.layout.robustness_dir / "run.json").read_text())["patients"][0]))
    path = study.config.layout.robustness_table
    path.write_text(path.read_text() + "\n")  # one byte more: the values the same, the file not
    with pytest.raises(MissingStageOutput, match="edited or replaced"):
        robustness_filter(study, table)
    from hccrad.report.html import robustness_section

    assert "This robustness table is out of date" in robustness_section(study)  # the report says so too


def test_a_study_with_robustness_filters_exactly_the_features_below_min_icc(demo_cohort_features, tmp_path):
    """`hccrad run` with robustness on: the stage runs, every image model's selection removes exactly the
    candidates whose ICC is below min_icc (or missing) as robustness.csv lists them, the artifact records the
    filter, the models are compared with and without it, and the report shows the section."""
    from hccrad.pipeline import run_study
    from hccrad.survival.families import feature_family

    manifest = _copy_study(demo_cohort_features, tmp_path, {"perturbations": 3, "patients": 6,
                                                            "kinds": ["noise", "volume"], "min_icc": 0.9})
    result = run_study(manifest, n_bootstrap=20)
    statuses = {record.name: record.status for record in result.stages}
    assert statuses["robustness"] == "ran" and statuses["report"] == "ran", result.stopped
    out = manifest.parent / "output"
    robust = pd.read_csv(out / "features" / "robustness.csv").set_index("feature")
    features = pd.read_parquet(out / "features" / "features.parquet")
    for slug, families in (("T", {"T"}), ("T_L", {"T", "L"})):
        log = pd.read_csv(out / "models" / f"{slug}_selection_log.csv")
        removed = set(log.loc[log["step"] == "robustness", "feature"])
        candidates = {c for c in features.columns if feature_family(c) in families}
        below = {c for c in candidates if not robust["ICC1"].get(c, np.nan) >= 0.9}
        assert removed == below and removed
        artifact = json.loads((out / "models" / f"{slug}.json").read_text())
        recorded = artifact["robustness_filter"]
        assert recorded["min_icc"] == 0.9 and recorded["removed"] == len(below)
        assert not set(artifact["covariates"]) & below
    comparison = pd.read_csv(out / "models" / "robustness_comparison.csv")
    assert set(comparison["variant"]) == {"with the filter", "without the filter"}
    assert set(comparison["estimate"]) == {"apparent", "validation"}
    text = result.report.read_text()
    assert "Feature robustness" in text and "The models with and without the robustness filter" in text
    assert "out of date" not in text
    for threshold in (0.5, 0.75, 0.9):  # the report's "features kept" rows count robustness.csv
        kept = int((robust["ICC1"] >= threshold).sum())
        assert re.search(rf"<td>ICC1 &gt;= {threshold:.2f}</td><td>{kept}</td><td>{len(robust)}</td>", text)


def test_the_demo_option_turns_robustness_on_and_off(tmp_path):
    from hccrad.cli.main import DEMO_ROBUSTNESS, set_demo_robustness

    manifest = tmp_path / "study.yaml"
    manifest.write_text(yaml.safe_dump({"name": "demo", "features": {"params": "demo"}}))
    set_demo_robustness(manifest, True)
    assert yaml.safe_load(manifest.read_text())["features"] == {"params": "demo", "robustness": DEMO_ROBUSTNESS}
    set_demo_robustness(manifest, False)
    assert yaml.safe_load(manifest.read_text())["features"] == {"params": "demo"}


def test_a_patient_segmented_by_the_study_is_perturbed_with_its_predicted_mask(demo_cohort_features, tmp_path):
    """As in the features stage, a patient without a mask in the manifest takes the segmentation stage's mask, and
    its perturbed cases read that mask (not skipped, not another file)."""
    from hccrad.features.config import FeatureConfig
    from hccrad.features.robustness import build_jobs, robustness_patients
    from hccrad.io import load_study

    manifest = _copy_study(demo_cohort_features, tmp_path, {"perturbations": 2, "patients": 3, "kinds": ["noise"]})
    study = load_study(manifest)
    table = pd.read_parquet(study.config.layout.feature_table)
    patients = robustness_patients(table, 3, FeatureConfig.model_validate(study.config.features).robustness.seed)
    segmented = patients[0]
    clinical = manifest.parent / "clinical.csv"
    rows = pd.read_csv(clinical, dtype=str, keep_default_na=False)
    mask = manifest.parent / rows.loc[rows["patient_id"] == segmented, "mask"].iloc[0]
    predicted = study.config.layout.predicted_mask(segmented)
    predicted.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(mask, predicted)
    rows.loc[rows["patient_id"] == segmented, "mask"] = ""
    rows.to_csv(clinical, index=False)
    study = load_study(manifest)
    jobs = build_jobs(study, FeatureConfig.model_validate(study.config.features), patients)
    assert sorted({job.patient_id for job in jobs}) == patients and len(jobs) == 6
    assert {job.case.mask for job in jobs if job.patient_id == segmented} == {str(predicted)}
