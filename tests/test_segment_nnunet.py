"""nnU-Net v2 end to end on the CPU with tiny phantoms: the paper's plans, then train -> predict ->
post-process -> evaluate with a tiny configuration."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

pytest.importorskip("nnunetv2", reason="nnU-Net v2 is installed with the test extra (pip install -e '.[test]')")

from hccrad.io import load_study  # noqa: E402
from hccrad.segment.evaluate import evaluate_segmentations  # noqa: E402
from hccrad.segment.nnunet import (  # noqa: E402
    SegmentationConfig,
    plan_and_preprocess,
    predict_cases,
    prepare_dataset,
    train_folds,
)


def phantom(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 24 x 48 x 48 CT (3 x 2 x 2 mm) with an ellipsoidal liver and a hypodense tumor inside it."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices((24, 48, 48))
    labels = np.zeros((24, 48, 48), np.uint8)
    labels[((z - 12) / 9) ** 2 + ((y - 24) / 18) ** 2 + ((x - 24) / 18) ** 2 < 1] = 1
    cy, cx = rng.integers(18, 30, 2)
    labels[((z - 12) / 4) ** 2 + ((y - cy) / 5) ** 2 + ((x - cx) / 5) ** 2 < 1] = 2
    body = ((y - 24) / 23) ** 2 + ((x - 24) / 23) ** 2 < 1  # air around the body, as in every CT
    ct = np.where(labels == 1, 110, np.where(labels == 2, 55, np.where(body, -100, -1000)))
    ct = ct + rng.normal(0, 10, labels.shape)
    return ct.astype(np.int16), labels


def write_study(folder, n_cases: int, with_masks: int, segmentation: dict) -> tuple:
    rows = []
    truth = {}
    for index in range(n_cases):
        ct, labels = phantom(index)
        for array, name in ((ct, f"ct{index}.nii.gz"), (labels, f"mask{index}.nii.gz")):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing((2.0, 2.0, 3.0))
            sitk.WriteImage(image, str(folder / name))
        truth[f"P{index}"] = folder / f"mask{index}.nii.gz"
        rows.append({"patient_id": f"P{index}", "center": "A" if index % 2 else "B", "ct": f"ct{index}.nii.gz",
                     "mask": f"mask{index}.nii.gz" if index < with_masks else "", "afp": 10, "child_pugh": "A",
                     "bclc": "B", "treatment": "TACE", "pfs_months": 5, "pfs_event": 1})
    pd.DataFrame(rows).to_csv(folder / "clinical.csv", index=False)
    (folder / "study.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "clinical_table": "clinical.csv", "split": {"validation_fraction": 0.5},
        "output_dir": "out", "segmentation": segmentation}))
    return load_study(folder / "study.yaml"), truth


def test_plans_have_exactly_the_papers_spacing_patch_and_batch(tmp_path):
    study, _ = write_study(tmp_path, 5, 5, {"dataset_id": 502})
    config = SegmentationConfig.model_validate(study.config.segmentation)
    prepare_dataset(study, config)
    plans = json.loads(plan_and_preprocess(study, config).read_text())
    configuration = plans["configurations"]["3d_fullres"]
    assert configuration["spacing"] == [1.5, 0.647, 0.647]
    assert configuration["patch_size"] == [48, 192, 192]
    assert configuration["batch_size"] == 2
    assert configuration["normalization_schemes"] == ["CTNormalization"]
    arch = configuration["architecture"]["arch_kwargs"]
    # The topology fits the patch: the product of the strides along each axis divides the patch size.
    strides = np.prod(np.array(arch["strides"]), axis=0)
    assert all(size % stride == 0 for size, stride in zip([48, 192, 192], strides, strict=True))
    assert arch["n_stages"] == len(arch["strides"]) == len(arch["kernel_sizes"]) >= 5


def test_train_predict_postprocess_and_evaluate_on_the_cpu(tmp_path):
    tiny = {"dataset_id": 503, "spacing_zyx": [3.0, 2.0, 2.0], "patch_size": [16, 32, 32], "folds": [0],
            "use_mirroring": False, "n_workers": 1}
    study, truth = write_study(tmp_path, 7, 5, tiny)
    config = SegmentationConfig.model_validate(study.config.segmentation)
    prepare_dataset(study, config)
    plan_and_preprocess(study, config)
    model_dir = train_folds(study, config, [0], epochs=3, iterations_per_epoch=4)
    assert (model_dir / "fold_0" / "checkpoint_final.pth").is_file()
    written = predict_cases(study, config, model_dir)
    assert sorted(written) == ["P5", "P6"]  # only the cases without a mask
    # One image at a time (a new patient without a mask): the same labels as the study's batch prediction.
    from hccrad.segment.nnunet import segment_image

    record = next(r for r in study.patients if r.patient_id == "P5")
    single = segment_image(record.ct, model_dir, tmp_path / "single.nii.gz", config)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(single))),
                                  sitk.GetArrayFromImage(sitk.ReadImage(str(written["P5"]))))
    for path in written.values():
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        assert set(np.unique(labels)) <= {0, 1, 2}
        components = sitk.ConnectedComponent(sitk.GetImageFromArray((labels == 2).astype(np.uint8)), True)
        assert sitk.GetArrayFromImage(components).max() <= 1  # post-processed: at most one tumor
    # Evaluate the predictions against the true phantoms: a study whose masks are the truth.
    clinical = pd.read_csv(tmp_path / "clinical.csv")
    clinical["mask"] = [f"mask{i}.nii.gz" for i in range(7)]
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    cases, summary = evaluate_segmentations(load_study(tmp_path / "study.yaml"))
    liver = cases[cases["region"] == "liver"]
    assert sorted(liver["patient_id"]) == ["P5", "P6"]
    assert (liver["dsc"] > 0.5).all(), liver
    assert np.isfinite(liver["hd95_mm"]).all()

    # `hccrad run` with the trained model configured segments the cases without a mask and uses those masks.
    from hccrad.pipeline import run_study

    settings = yaml.safe_load((tmp_path / "study.yaml").read_text())
    settings["segmentation"] = {**tiny, "model": str(model_dir)}
    settings["features"] = {"params": str(tmp_path / "fast.yaml"), "n_workers": 1, "min_tumor_voxels": 5}
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump({
        "setting": {"binWidth": 25, "label": 1}, "imageType": {"Original": {}},
        "featureClass": {"firstorder": None}}))
    clinical["mask"] = [f"mask{i}.nii.gz" if i < 5 else "" for i in range(7)]
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(settings))
    result = run_study(tmp_path / "study.yaml", n_bootstrap=10)  # seven phantoms are too few to fit a Cox model
    assert result.report is None
    assert result.stopped.startswith("fit: too few training patients to fit a model: 3 patients")
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["stopped"] == result.stopped
    stages = {stage["name"]: stage for stage in summary["stages"]}
    assert stages["segment"]["status"] == "reused"  # the masks predicted above are kept
    # The features stage processed the two cases with their predicted masks (not "no mask").
    for patient in ("P5", "P6"):
        case = json.loads((tmp_path / "out" / "features" / "cases" / f"{patient}.json").read_text())
        assert case["status"] == "ok" or case["error_type"] == "RegionError", case
