"""nnU-Net v2 in the paper's configuration: prepare, plan, train and predict.

nnU-Net's folders live under ``<output_dir>/segmentation/nnunet`` (raw, preprocessed, results) unless the
``segmentation:`` section of the study YAML says otherwise; they are passed to nnU-Net through its environment
variables, which nnunetv2 2.8 reads lazily. Model folders and checkpoints are nnU-Net's own format, so a model
trained with ``nnUNetv2_train`` elsewhere can be used with ``--model``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from pydantic import BaseModel, ConfigDict, Field

from hccrad.io.case import CTCase
from hccrad.io.files import write_atomic
from hccrad.io.ids import case_path
from hccrad.io.images import read_image, write_labels_like
from hccrad.io.manifest import Study
from hccrad.io.masks import LABEL_LIVER, LABEL_PORTAL_VEIN
from hccrad.segment.postprocess import postprocess_labels

PLANS_NAME = "hccradPlans"
CONFIGURATION = "3d_fullres"


class SegmentationConfig(BaseModel):
    """The ``segmentation:`` section of the study YAML; defaults are the paper's settings."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: int = Field(default=501, ge=1, le=999)
    dataset_name: str = "HCCLiverTumor"
    spacing_zyx: tuple[float, float, float] = (1.5, 0.647, 0.647)
    patch_size: tuple[int, int, int] = (48, 192, 192)
    batch_size: int = Field(default=2, ge=1)
    epochs: int = Field(default=1000, ge=1)
    iterations_per_epoch: int = Field(default=250, ge=1)
    initial_lr: float = 0.01
    folds: list[int] = [0, 1, 2, 3, 4]
    nnunet_dir: Path | None = None
    model: Path | None = None  # a trained model folder (…/nnUNetTrainer__hccradPlans__3d_fullres)
    use_mirroring: bool = True
    tile_step_size: float = Field(default=0.5, gt=0, le=1)
    n_workers: int = Field(default=2, ge=1)

    def root(self, study: Study) -> Path:
        """The nnU-Net folder (raw, preprocessed, results) of the study."""
        return study.config.resolve(self.nnunet_dir) if self.nnunet_dir else study.config.layout.nnunet_dir

    @property
    def dataset_folder_name(self) -> str:
        """nnU-Net's dataset folder name, ``DatasetNNN_<name>``."""
        return f"Dataset{self.dataset_id:03d}_{self.dataset_name}"


def use_nnunet_folders(root: Path) -> None:
    """Point nnU-Net's environment variables at ``root`` (raw, preprocessed, results)."""
    for variable, folder in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "preprocessed"),
                             ("nnUNet_results", "results")):
        path = root / folder
        path.mkdir(parents=True, exist_ok=True)
        os.environ[variable] = str(path)


def best_device():
    """CUDA when available, else the CPU (slow: for smoke tests and small cases)."""
    import torch

    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def prepare_dataset(study: Study, config: SegmentationConfig) -> Path:
    """Write the cases with reference masks as an nnU-Net v2 raw dataset (channel "CT", labels 0/1/2).

    The portal vein (label 3), when present, is liver for nnU-Net, as in the paper's label set.
    """
    root = config.root(study)
    dataset = root / "raw" / config.dataset_folder_name
    (dataset / "imagesTr").mkdir(parents=True, exist_ok=True)
    (dataset / "labelsTr").mkdir(parents=True, exist_ok=True)
    count = 0
    for record in study.patients:
        if record.ct is None or not record.has_mask:
            continue
        case = CTCase.read(record.ct, record.mask_source, study.config.dicom_series)
        image = case.image
        array = case.labels.copy()
        array[array == LABEL_PORTAL_VEIN] = LABEL_LIVER
        out_labels = sitk.GetImageFromArray(array.astype(np.uint8))
        out_labels.CopyInformation(image)
        sitk.WriteImage(image, str(case_path(dataset / "imagesTr", record.patient_id, "_0000.nii.gz")))
        sitk.WriteImage(out_labels, str(case_path(dataset / "labelsTr", record.patient_id, ".nii.gz")))
        count += 1
    if count < 5:
        raise ValueError(f"nnU-Net's five-fold cross-validation needs at least 5 cases with reference masks; "
                         f"the study has {count}")
    dataset_json = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
                    "numTraining": count, "file_ending": ".nii.gz", "name": config.dataset_name}
    write_atomic(dataset / "dataset.json", json.dumps(dataset_json, indent=2))
    return dataset


def topology_for_patch(dataset_id: int, spacing_zyx, patch_size) -> dict[str, Any]:
    """The U-Net topology nnU-Net's default planner derives for ``patch_size`` at ``spacing`` (its rules and
    constants, read from a planner instance of the dataset)."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    planner = ExperimentPlanner(dataset_id, suppress_transpose=True)
    _, pool, conv, patch, _ = get_pool_and_conv_props(list(spacing_zyx), list(patch_size),
                                                      planner.UNet_featuremap_min_edge_length, 999999)
    stages = len(pool)
    return {
        "patch_size": [int(v) for v in patch],
        "n_stages": stages,
        "kernel_sizes": [[int(v) for v in k] for k in conv],
        "strides": [[int(v) for v in s] for s in pool],
        "features_per_stage": [min(planner.UNet_max_features_3d, planner.UNet_base_num_features * 2**i)
                               for i in range(stages)],
        "n_conv_per_stage": list(planner.UNet_blocks_per_stage_encoder[:stages]),
        "n_conv_per_stage_decoder": list(planner.UNet_blocks_per_stage_decoder[:stages - 1]),
    }


def plan_and_preprocess(study: Study, config: SegmentationConfig, n_workers: int = 1) -> Path:
    """Fingerprint, plan with the paper's spacing, then set the paper's patch and batch size (with the topology
    nnU-Net derives for that patch) in the plans JSON, and preprocess 3d_fullres. Returns the plans file."""
    use_nnunet_folders(config.root(study))
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )

    extract_fingerprints([config.dataset_id], num_processes=n_workers, check_dataset_integrity=True)
    plan_experiments([config.dataset_id], overwrite_target_spacing=tuple(config.spacing_zyx),
                     overwrite_plans_name=PLANS_NAME)
    plans_path = config.root(study) / "preprocessed" / config.dataset_folder_name / f"{PLANS_NAME}.json"
    plans = json.loads(plans_path.read_text())
    configuration = plans["configurations"][CONFIGURATION]
    topology = topology_for_patch(config.dataset_id, config.spacing_zyx, config.patch_size)
    configuration["patch_size"] = topology.pop("patch_size")
    configuration["batch_size"] = config.batch_size
    configuration["spacing"] = list(config.spacing_zyx)
    configuration["architecture"]["arch_kwargs"].update(topology)
    write_atomic(plans_path, json.dumps(plans, indent=1))
    preprocess([config.dataset_id], plans_identifier=PLANS_NAME, configurations=[CONFIGURATION],
               num_processes=[n_workers])
    return plans_path


def train_folds(study: Study, config: SegmentationConfig, folds: list[int] | None = None,
                epochs: int | None = None, iterations_per_epoch: int | None = None) -> Path:
    """Train the chosen folds with nnU-Net's trainer (poly learning rate from ``initial_lr``, Dice + CE, default
    augmentation) on the best device; returns the model folder."""
    use_nnunet_folders(config.root(study))
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    root = config.root(study)
    plans = json.loads((root / "preprocessed" / config.dataset_folder_name / f"{PLANS_NAME}.json").read_text())
    dataset_json = json.loads((root / "preprocessed" / config.dataset_folder_name / "dataset.json").read_text())
    folder = None
    for fold in folds if folds is not None else config.folds:
        trainer = nnUNetTrainer(dict(plans, continue_training=False), CONFIGURATION, fold, dataset_json,
                                device=best_device())
        trainer.num_epochs = epochs or config.epochs
        trainer.num_iterations_per_epoch = iterations_per_epoch or config.iterations_per_epoch
        trainer.num_val_iterations_per_epoch = max(1, trainer.num_iterations_per_epoch // 5)
        trainer.initial_lr = config.initial_lr
        trainer.run_training()
        folder = Path(trainer.output_folder).parent
    return folder


def load_predictor(model_dir: Path, config: SegmentationConfig, folds: list[int] | None = None):
    """An nnU-Net predictor for the trained model in ``model_dir`` (its folds with a final checkpoint)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"no trained nnU-Net model at {model_dir}: train one or give --model")
    available = sorted(int(p.name.split("_")[1]) for p in model_dir.glob("fold_*") if
                       (p / "checkpoint_final.pth").is_file())
    use_folds = tuple(folds or available)
    if not use_folds:
        raise FileNotFoundError(f"{model_dir} has no fold with checkpoint_final.pth")
    predictor = nnUNetPredictor(tile_step_size=config.tile_step_size, use_mirroring=config.use_mirroring,
                                device=best_device(), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_dir), use_folds=use_folds,
                                                   checkpoint_name="checkpoint_final.pth")
    return predictor


def segment_images(predictor, images: dict[str, sitk.Image], config: SegmentationConfig) -> dict[str, np.ndarray]:
    """Post-processed label arrays (z, y, x; uint8) of each CT in ``images``, keyed as given."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        inputs, outputs = [], []
        for key, image in images.items():
            path = case_path(scratch, key, "_0000.nii.gz")
            sitk.WriteImage(image, str(path))
            inputs.append([str(path)])
            outputs.append(str(case_path(scratch, key, ".nii.gz")))
        if inputs:
            predictor.predict_from_files(inputs, outputs, save_probabilities=False, overwrite=True,
                                         num_processes_preprocessing=config.n_workers,
                                         num_processes_segmentation_export=config.n_workers)
        return {key: postprocess_labels(sitk.GetArrayFromImage(sitk.ReadImage(
            str(case_path(scratch, key, ".nii.gz")))).astype(np.uint8)) for key in images}


def segment_image(ct: Path, model_dir: Path, out_path: Path, config: SegmentationConfig | None = None,
                  series_rule=None) -> Path:
    """Segment one CT (NIfTI file or DICOM folder) with a trained model and write its post-processed mask,
    on the CT's grid, to ``out_path``; used to predict a new patient without a mask."""
    config = config or SegmentationConfig()
    image = read_image(ct, series_rule)
    labels = segment_images(load_predictor(model_dir, config), {"case": image}, config)["case"]
    return write_labels_like(labels, image, Path(out_path))


def predict_cases(study: Study, config: SegmentationConfig, model_dir: Path | None = None, overwrite: bool = False,
                  folds: list[int] | None = None) -> dict[str, Path]:
    """Segment every case without a mask (all with ``overwrite``), post-process, and write
    ``<output_dir>/segmentation/masks/<id>.nii.gz``; returns the written masks by patient."""
    model_dir = Path(model_dir or config.model or (config.root(study) / "results" / config.dataset_folder_name
                                                   / f"nnUNetTrainer__{PLANS_NAME}__{CONFIGURATION}"))
    predictor = load_predictor(model_dir, config, folds)
    layout = study.config.layout
    layout.predicted_masks_dir.mkdir(parents=True, exist_ok=True)
    todo = [r for r in study.patients if r.ct is not None and (overwrite or not r.has_mask)]
    images = {record.patient_id: read_image(record.ct, study.config.dicom_series) for record in todo}
    labels = segment_images(predictor, images, config)
    return {patient: write_labels_like(labels[patient], images[patient], layout.predicted_mask(patient))
            for patient in images}
