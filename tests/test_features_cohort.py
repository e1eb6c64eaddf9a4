"""`hccrad features` over a cohort: local and remote Dask, resume, invalidation, failures, real CT cases."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from scipy import ndimage
from typer.testing import CliRunner

from hccrad.cli.main import app
from hccrad.features import FeatureConfig, extract_features
from hccrad.features.cohort import build_jobs
from hccrad.io import load_study
from hccrad.io.ids import case_path

from .conftest import shared_path

FAST_PARAMS = {
    "setting": {"binWidth": 25, "label": 1, "preCrop": True},
    "imageType": {"Original": {}},
    "featureClass": {"shape": None, "firstorder": None, "glcm": None},
}


def copy_cohort(source_manifest: Path, target: Path, features: dict) -> Path:
    shutil.copytree(source_manifest.parent, target)
    manifest = target / "study.yaml"
    settings = yaml.safe_load(manifest.read_text())
    settings["features"] = features
    manifest.write_text(yaml.safe_dump(settings))
    return manifest


def test_local_run_records_failures_resumes_and_invalidates_exactly(small_cohort, tmp_path):
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump(FAST_PARAMS))
    manifest = copy_cohort(small_cohort, tmp_path / "study", {"params": str(tmp_path / "fast.yaml"),
                                                              "n_workers": 2})
    study = load_study(manifest)
    ids = [p.patient_id for p in study.patients]
    # Break two cases: one loses its tumor, one gets a mask from a center with another grid.
    empty, mismatched = study.patients[0], study.patients[1]
    labels = sitk.ReadImage(str(empty.mask))
    array = sitk.GetArrayFromImage(labels)
    array[array == 2] = 1
    fixed = sitk.GetImageFromArray(array)
    fixed.CopyInformation(labels)
    sitk.WriteImage(fixed, str(empty.mask))
    donor = next(p for p in study.patients if read_size(p.mask) != read_size(mismatched.mask))
    shutil.copy(donor.mask, mismatched.mask)

    run = extract_features(load_study(manifest))
    assert sorted(run.computed) == sorted(ids) and run.reused == []
    failures = run.failures.set_index("patient_id")
    message = failures.loc[empty.patient_id, "error"]
    # the liver label written over the tumor: the message lists what the mask holds and the convention it expected
    assert message.startswith("Tumor region is empty: label map ") and " holds labels 1 (" in message
    assert "liver [1], tumor [2], portal vein [3]" in message and "liver label written over the tumor" in message
    assert "does not match the CT geometry: size" in failures.loc[mismatched.patient_id, "error"]
    assert len(run.table) == len(ids) - 2
    written = pd.read_parquet(run.out_dir / "features.parquet")
    assert list(written.index) == list(run.table.index)
    assert {"center", "dataset", "pfs_months", "Tumor_volume_mL", "Rliver_original_glcm_ClusterShade"} <= set(written)
    recorded = pd.read_csv(run.out_dir / "failures.csv")
    assert recorded.loc[recorded["severity"] == "error", "patient_id"].tolist() == [empty.patient_id,
                                                                                     mismatched.patient_id]
    # QC warnings of computed cases (a synthetic patient's satellite lesions: multifocal) come after the errors
    assert set(recorded.loc[recorded["severity"] == "warning", "patient_id"]) <= set(run.table.index)

    again = extract_features(load_study(manifest))
    assert again.computed == [] and sorted(again.reused) == sorted(ids)
    pd.testing.assert_frame_equal(again.table, run.table)

    # Editing one mask recomputes that case only; editing the parameter file changes every fingerprint.
    edited = study.patients[4]
    image = sitk.ReadImage(str(edited.mask))
    array = sitk.GetArrayFromImage(image)
    array[ndimage.binary_dilation(array == 2) & (array == 1)] = 2
    grown = sitk.GetImageFromArray(array)
    grown.CopyInformation(image)
    sitk.WriteImage(grown, str(edited.mask))
    third = extract_features(load_study(manifest))
    assert third.computed == [edited.patient_id]
    record = json.loads(case_path(run.out_dir / "cases", edited.patient_id, ".json").read_text())
    assert record["worker_pid"] == os.getpid()  # one case to compute: here, without starting a Dask cluster
    first_record = json.loads(case_path(run.out_dir / "cases", ids[5], ".json").read_text())
    assert first_record["worker_pid"] != os.getpid()  # several: on the local cluster's workers
    pd.testing.assert_frame_equal(third.table.drop(index=edited.patient_id), run.table.drop(index=edited.patient_id))
    assert third.table.loc[edited.patient_id, "Tumor_volume_mL"] > run.table.loc[edited.patient_id, "Tumor_volume_mL"]
    before = {job.patient_id: job.fingerprint for job in build_jobs(load_study(manifest), FeatureConfig(
        params=str(tmp_path / "fast.yaml")))[0]}
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump({**FAST_PARAMS, "setting": {**FAST_PARAMS["setting"],
                                                                                   "binWidth": 10}}))
    after = {job.patient_id: job.fingerprint for job in build_jobs(load_study(manifest), FeatureConfig(
        params=str(tmp_path / "fast.yaml")))[0]}
    assert all(before[key] != after[key] for key in before)


def read_size(path: Path) -> tuple[int, ...]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader.GetSize()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_remote_cluster_survives_a_worker_killed_mid_run(small_cohort, tmp_path):
    manifest = copy_cohort(small_cohort, tmp_path / "study", {"params": "demo"})
    dask = Path(sys.executable).parent / "dask"
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                   "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(2)
        workers = [subprocess.Popen([str(dask), "worker", address, "--nthreads", "1", "--no-nanny",
                                     "--no-dashboard", "--name", f"w{index}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for index in range(2)]
        processes += workers
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        results, killed = [], []

        def kill_the_busy_one(result):
            results.append(result)
            if not killed:
                victim = next(w for w in workers if w.pid != result["worker_pid"])
                victim.send_signal(signal.SIGKILL)
                killed.append(victim.pid)

        study = load_study(manifest)
        run = extract_features(study, scheduler=address, on_result=kill_the_busy_one)
    finally:
        for process in processes:
            process.kill()
            process.wait()
    ids = sorted(p.patient_id for p in study.patients)
    assert sorted(run.computed) == ids  # each case written once
    assert sorted(r["patient_id"] for r in results) == ids
    assert len(run.table) == len(ids) and run.failures.empty
    assert killed and killed[0] not in {r["worker_pid"] for r in results[1:]}
    for patient_id in ids:
        stored = json.loads((run.out_dir / "cases" / f"{patient_id}.json").read_text())
        assert stored["status"] == "ok" and len(stored["features"]) > 2260


def draw_lesion(labels: np.ndarray, spacing_zyx, radius_mm: float) -> np.ndarray:
    """Label a sphere of tumor (2) around the liver voxel deepest inside the liver."""
    liver = labels == 1
    depth = ndimage.distance_transform_edt(liver, sampling=spacing_zyx)
    center = np.unravel_index(np.argmax(depth), labels.shape)
    grid = np.indices(labels.shape).astype(float)
    distance = np.sqrt(sum(((grid[axis] - center[axis]) * spacing_zyx[axis]) ** 2 for axis in range(3)))
    lesion = (distance <= radius_mm) & liver
    out = labels.copy()
    out[lesion] = 2
    return out


def totalseg_labels(segmentation: sitk.Image) -> np.ndarray:
    classes = sitk.GetArrayFromImage(segmentation)
    labels = np.zeros(classes.shape, np.uint8)
    labels[classes == 5] = 1  # liver
    labels[classes == 64] = 3  # portal and splenic vein
    return labels


def write_like(array: np.ndarray, reference: sitk.Image, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path))


def test_real_reference_cts_run_through_the_stage(tmp_path):
    from hccrad.io import read_image, read_mask

    rows = []
    # 1. Real abdominal CT (NIfTI) with its liver; a hypodense lesion drawn into the real liver.
    abdomen = shared_path("reference", "ct", "totalseg_abdomen")
    ct = sitk.ReadImage(str(abdomen / "example_ct_sm.nii.gz"))
    labels = draw_lesion(totalseg_labels(sitk.ReadImage(str(abdomen / "example_seg.nii.gz"))),
                         ct.GetSpacing()[::-1], 20.0)
    hu = sitk.GetArrayFromImage(ct)
    hu[labels == 2] -= 40
    lesion_ml = (labels == 2).sum() * np.prod(ct.GetSpacing()) / 1000
    write_like(hu, ct, tmp_path / "abdomen_ct.nii.gz")
    write_like(labels, ct, tmp_path / "abdomen_mask.nii.gz")
    rows.append(("ABD", "abdomen_ct.nii.gz", "abdomen_mask.nii.gz"))
    # 2. Real DICOM series with the flipped NIfTI segmentation beside it.
    dicom = shared_path("reference", "ct", "totalseg_dicom")
    series = read_image(dicom / "series")
    seg = read_mask(dicom / "example_seg_dicom.nii.gz", series, allowed_labels=None)
    labels = draw_lesion(totalseg_labels(seg), series.GetSpacing()[::-1], 12.0)
    write_like(labels, series, tmp_path / "dicom_mask.nii.gz")
    rows.append(("DCM", str(dicom / "series"), "dicom_mask.nii.gz"))
    # 3. Three real GE slices with the NRRD liver segmentation, a small lesion drawn in.
    slices = shared_path("reference", "ct", "dcmqi_3slice")
    ge = read_image(slices)
    labels = sitk.GetArrayFromImage(read_mask(slices / "liver_seg.nrrd", ge)).astype(np.uint8)
    labels = draw_lesion(labels, ge.GetSpacing()[::-1], 10.0)
    write_like(labels, ge, tmp_path / "ge_mask.nii.gz")
    rows.append(("GE3", str(slices), "ge_mask.nii.gz"))
    # 4. A real sarcoma CT with its tumor but no liver: must fail with a clear error, not stop the run.
    sts = shared_path("reference", "ct", "ibsi_sts_002")
    sts_mask = sitk.ReadImage(str(sts / "CT_mask.nii.gz"))
    write_like((sitk.GetArrayFromImage(sts_mask) > 0).astype(np.uint8) * 2, sts_mask, tmp_path / "sts_mask.nii.gz")
    rows.append(("STS", str(sts / "CT_image.nii.gz"), "sts_mask.nii.gz"))

    pd.DataFrame([{"patient_id": pid, "center": "REF", "ct": ct_path, "mask": mask, "afp": 10, "child_pugh": "A",
                   "bclc": "B", "treatment": "TACE", "pfs_months": 6, "pfs_event": 1}
                  for pid, ct_path, mask in rows]).to_csv(tmp_path / "clinical.csv", index=False)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({
        "name": "reference cases", "clinical_table": "clinical.csv", "split": {"validation_fraction": 0.5},
        "features": {"params": "demo"}, "output_dir": "out"}))
    result = CliRunner().invoke(app, ["features", str(tmp_path / "study.yaml")])
    assert result.exit_code == 1, result.output  # a failed case makes the exit code non-zero; the others are done
    assert "3 computed" not in result.output and "4 computed, 0 reused, 1 failed" in " ".join(result.output.split())
    table = pd.read_parquet(tmp_path / "out" / "features" / "features.parquet")
    assert sorted(table.index) == ["ABD", "DCM", "GE3"]
    failures = pd.read_csv(tmp_path / "out" / "features" / "failures.csv")
    assert failures[["patient_id", "severity", "error_type"]].to_dict("records") == [
        {"patient_id": "STS", "severity": "error", "error_type": "RegionError"}]
    assert failures["error"][0].startswith("Rliver region is empty: label map ")
    assert "holds labels 2 (17090 voxels)" in failures["error"][0]
    features = table.drop(columns=["center", "dataset", "child_pugh", "bclc", "treatment"])
    assert features.shape[1] > 2 * 1130
    # The real liver of the abdominal case is about 1.04 L (../shared/README.md); the lesion is one component.
    assert table.loc["ABD", "Rliver_volume_mL"] + table.loc["ABD", "Tumor_volume_mL"] == pytest.approx(1040, rel=0.1)
    assert table.loc["ABD", "Tumor_volume_mL"] == pytest.approx(lesion_ml)
    # Soft-tissue HU for the (unenhanced) real liver; the drawn lesion is 40 HU darker than the tissue it replaced.
    assert 20 < table.loc["ABD", "Rliver_HU_median"] < 200
    assert table.loc["ABD", "Tumor_HU_median"] < table.loc["ABD", "Rliver_HU_median"] - 20
    # Portal / splenic vein of a real CT: a diameter of a real vessel (5-25 mm).
    assert 5 < table.loc["ABD", "PV_max_diameter_mm"] < 25
    assert np.isfinite(features.loc[["ABD", "DCM"]].to_numpy(dtype=float)).mean() > 0.99


def test_a_ct_series_replaced_with_the_same_names_sizes_and_times_is_computed_again(small_cohort, tmp_path,
                                                                                    recwarn, capfd):
    """A restored backup, rsync -t or a PACS re-export keeps names, sizes and modification times: the content
    fingerprint still sees the new voxels, and recomputes that case only, to the values of a fresh run. The local
    cluster's dashboard takes a free loopback port, so a busy 8787 prints nothing."""
    import pydicom

    (tmp_path / "fast.yaml").write_text(yaml.safe_dump(FAST_PARAMS))
    manifest = copy_cohort(small_cohort, tmp_path / "study", {"params": str(tmp_path / "fast.yaml"),
                                                              "n_workers": 2})
    clinical = tmp_path / "study" / "clinical.csv"
    table = pd.read_csv(clinical, dtype=str, keep_default_na=False)
    dicom = [i for i, ct in enumerate(table["ct"]) if (tmp_path / "study" / ct).is_dir()]
    table.iloc[[dicom[0], 0 if dicom[0] else 1]].to_csv(clinical, index=False)  # two patients, one DICOM
    study = load_study(manifest)
    swapped = next(p for p in study.patients if p.ct.is_dir())
    with socket.socket() as busy:  # Dask's default dashboard port, taken
        if _port_free(8787):
            busy.bind(("127.0.0.1", 8787))
            busy.listen()
        first = extract_features(study)
    assert len(first.computed) == 2
    assert not [w for w in recwarn if "already in use" in str(w.message)]
    assert "already in use" not in capfd.readouterr().err

    for path in sorted(swapped.ct.iterdir()):  # other voxels, same bytes count, same times
        stat = path.stat()
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array
        dataset.PixelData = np.flipud(pixels).astype(pixels.dtype).tobytes()
        dataset.save_as(path)
        assert path.stat().st_size == stat.st_size
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = extract_features(load_study(manifest))
    assert again.computed == [swapped.patient_id] and len(again.reused) == 1
    changed = again.table.loc[swapped.patient_id, "Rliver_original_firstorder_Mean"]
    assert changed != first.table.loc[swapped.patient_id, "Rliver_original_firstorder_Mean"]
    fresh = copy_cohort(manifest, tmp_path / "fresh", {"params": str(tmp_path / "fast.yaml"), "n_workers": 1})
    shutil.rmtree(fresh.parent / yaml.safe_load(fresh.read_text()).get("output_dir", "hccrad-output"),
                  ignore_errors=True)
    uninterrupted = extract_features(load_study(fresh))
    pd.testing.assert_frame_equal(again.table.drop(columns=["ct", "mask"], errors="ignore"),
                                  uninterrupted.table.drop(columns=["ct", "mask"], errors="ignore"))


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize(("address", "words"), [("nonsense", "is not a Dask scheduler address"),
                                                ("tcp://127.0.0.1:99999", "is not a Dask scheduler address"),
                                                ("http://127.0.0.1:8786/x", "is not a Dask scheduler address")])
def test_a_malformed_scheduler_address_is_one_line(small_cohort, tmp_path, address, words):
    manifest = copy_cohort(small_cohort, tmp_path / "study", {})
    result = CliRunner().invoke(app, ["features", str(manifest), "--scheduler", address], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert words in line and repr(address) in line and "Traceback" not in result.output


def test_a_bad_features_section_is_one_line_in_the_features_command(small_cohort, tmp_path):
    manifest = copy_cohort(small_cohort, tmp_path / "study", {"params": None})
    result = CliRunner().invoke(app, ["features", str(manifest)], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "features: " in result.output and "Traceback" not in result.output


def test_a_scheduler_that_is_not_there_is_one_line():
    from hccrad.features.cohort import SchedulerError, connect_scheduler

    address = f"tcp://127.0.0.1:{free_port()}"
    start = time.perf_counter()
    with pytest.raises(SchedulerError, match=f"cannot reach a Dask scheduler at {address} within 2 s"):
        connect_scheduler(address, timeout_s=2)
    assert time.perf_counter() - start < 30


def test_a_scheduler_killed_mid_run_is_one_line_and_the_rerun_resumes(small_cohort, tmp_path, capfd, caplog):
    from hccrad.features.cohort import SchedulerError

    (tmp_path / "fast.yaml").write_text(yaml.safe_dump(FAST_PARAMS))
    manifest = copy_cohort(small_cohort, tmp_path / "study", {"params": str(tmp_path / "fast.yaml")})
    dask = Path(sys.executable).parent / "dask"
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        time.sleep(2)
        worker = subprocess.Popen([str(dask), "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def kill_scheduler(result):
            if scheduler.poll() is None:
                scheduler.send_signal(signal.SIGKILL)

        with pytest.raises(SchedulerError, match=rf"lost the connection to {address} after 1 of 12 cases.*"
                                                 "run again to resume"):
            extract_features(load_study(manifest), scheduler=address, on_result=kill_scheduler)
    finally:
        for process in (scheduler, worker):
            if process is not None:
                process.kill()
                process.wait()
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.name.startswith("distributed") and r.levelno >= 40]
    cases = tmp_path / "study" / "output" / "features" / "cases"
    assert len(list(cases.glob("*.json"))) == 1  # the finished case, and no case recorded as failed
    again = extract_features(load_study(manifest))
    assert len(again.reused) == 1 and len(again.computed) == 11 and again.failures.empty


_FAULTS_SCRIPT = """
import resource, sys
import numpy as np
if sys.argv[1] == "mallopt":
    from hccrad.features.memory import keep_freed_memory_for_reuse
    assert keep_freed_memory_for_reuse()
np.ones(5 << 20)  # 40 MiB, once, so that the heap holds such a block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    block = np.ones(5 << 20)
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_malloc_settings_reuse_freed_arrays_instead_of_faulting_them_in_again():
    """Under glibc's own thresholds a freed 40 MiB array is unmapped and the next one faults in again (hundreds of
    minor page faults each, more where transparent huge pages are off); with MALLOC_SETTINGS, applied by mallopt or
    read from the environment by a new process, the freed block is reused."""
    from hccrad.features.memory import MALLOC_SETTINGS

    def faults(how: str, environment: dict[str, str]) -> int:
        env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
        done = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT, how], capture_output=True, text=True,
                              env={**env, **environment}, check=True)
        return int(done.stdout.split()[-1])

    default = faults("none", {})
    assert default >= 8 * 20  # each of the 8 arrays faulted in again (at least one fault per 2 MiB huge page)
    assert faults("mallopt", {}) * 10 < default
    assert faults("none", {key: str(value) for key, value in MALLOC_SETTINGS.items()}) * 10 < default


_RELEASE_SCRIPT = """
import numpy as np
from hccrad.features.memory import keep_freed_memory_for_reuse, release_freed_memory
def anonymous_mb():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    return int(fields["RssAnon"].split()[0]) / 1024
assert keep_freed_memory_for_reuse()
before = anonymous_mb()
block = np.ones(96 << 20, dtype=np.uint8)  # 96 MiB: below MALLOC_SETTINGS' mmap threshold, so from the heap
del block
kept = anonymous_mb()
assert release_freed_memory()
print(before, kept, anonymous_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_freed_memory_hands_back_what_the_malloc_settings_kept():
    """Under MALLOC_SETTINGS a freed 96 MiB array stays in the process (resident); release_freed_memory
    (malloc_trim) hands it back to the system."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", _RELEASE_SCRIPT], capture_output=True, text=True, env=env,
                          check=True)
    before, kept, released = map(float, done.stdout.split())
    assert kept - before > 80  # kept for reuse
    assert kept - released > 80 and released - before < 16  # handed back


def test_the_features_stage_releases_freed_memory_between_its_cases_and_its_table(small_cohort, tmp_path,
                                                                                  monkeypatch):
    """The cases' freed memory goes back before the table is assembled and written, whose memory comes on top."""
    import hccrad.features.cohort as cohort

    manifest = copy_cohort(small_cohort, tmp_path / "study", {"params": "paper"})
    calls = []
    monkeypatch.setattr(cohort, "run_jobs", lambda *args, **kwargs: calls.append("cases") or [])
    monkeypatch.setattr(cohort, "release_freed_memory", lambda: calls.append("release") or True)
    assemble = cohort.assemble
    monkeypatch.setattr(cohort, "assemble", lambda *args, **kwargs: calls.append("table") or assemble(*args,
                                                                                                    **kwargs))
    extract_features(load_study(manifest))
    assert calls == ["cases", "release", "table"]


def test_only_a_large_case_with_hccrads_engine_takes_the_malloc_settings():
    from hccrad.features.memory import LARGE_CASE_VOXELS, wants_malloc_settings

    paper_sized, dicom_case = 512 * 512 * 150, 512 * 512 * 20
    assert dicom_case <= LARGE_CASE_VOXELS < paper_sized
    assert wants_malloc_settings("auto", paper_sized) and wants_malloc_settings("hccrad", paper_sized)
    assert not wants_malloc_settings("pyradiomics", paper_sized) and not wants_malloc_settings("auto", dicom_case)


@pytest.mark.parametrize("engine", ["auto", "pyradiomics"])
def test_compute_case_sets_the_malloc_settings_once_it_knows_the_cases_size(monkeypatch, tmp_path, engine):
    """compute_case reads the case, then, for hccrad's engine on a CT above LARGE_CASE_VOXELS, takes MALLOC_SETTINGS
    (mallopt) before any feature is computed."""
    import hccrad.features.extract as extract
    import hccrad.features.memory as memory
    from hccrad.features.extract import CaseJob, compute_case
    from hccrad.io.config import SeriesRule

    ct = np.full((10, 24, 24), 40, np.int16)
    ct[:, :2] = -1000
    labels = np.zeros(ct.shape, np.uint8)
    labels[2:8, 4:20, 4:20] = 1
    labels[4:7, 8:13, 8:13] = 2
    for name, array in (("ct", ct), ("mask", labels)):
        sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / f"{name}.nii.gz"))
    calls = []
    monkeypatch.setattr(extract, "keep_freed_memory_for_reuse", lambda: calls.append("mallopt") or True)
    monkeypatch.setattr(extract, "region_radiomics", lambda *args, **kwargs: calls.append("features") or 1 / 0)
    config = FeatureConfig(engine=engine)
    job = CaseJob("P1", str(tmp_path / "ct.nii.gz"), str(tmp_path / "mask.nii.gz"), None, config.radiomics_params(),
                  config.model_dump(mode="json"), SeriesRule().model_dump(), "fingerprint")
    for threshold, expected in ((ct.size, []), (ct.size - 1, ["mallopt"] if engine == "auto" else [])):
        calls.clear()
        monkeypatch.setattr(memory, "LARGE_CASE_VOXELS", threshold)
        compute_case(job)
        assert calls[: len(expected)] == expected and "features" in calls, calls
    calls.clear()  # a long-running process (the web app) keeps glibc's own thresholds
    compute_case(job, reuse_freed_memory=False)
    assert calls == ["features"]


def test_a_new_patients_features_leave_the_processs_malloc_settings_alone(monkeypatch):
    """hccrad predict and the web app compute a patient with reuse_freed_memory=False."""
    import hccrad.features.extract as extract
    from hccrad.features.config import FeatureConfig
    from hccrad.io.config import SeriesRule
    from hccrad.pipeline.predict import compute_patient_features

    seen = {}

    def fake_compute_case(job, progress=None, reuse_freed_memory=True):
        seen["reuse_freed_memory"] = reuse_freed_memory
        return {"status": "ok", "features": {}, "qc_warnings": []}

    monkeypatch.setattr(extract, "compute_case", fake_compute_case)
    config = FeatureConfig()
    settings = {"settings": config.model_dump(mode="json"), "radiomics_params": config.radiomics_params(),
                "series_rule": SeriesRule().model_dump(), "engine": "auto"}
    monkeypatch.setattr("hccrad.pipeline.predict.check_engine", lambda settings: None)
    compute_patient_features(Path("ct.nii.gz"), Path("mask.nii.gz"), settings)
    assert seen == {"reuse_freed_memory": False}


def test_local_cluster_workers_drop_dasks_malloc_trim_threshold(monkeypatch, tmp_path):
    """Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536 (every freed block back to the system, so each filtered
    image's arrays fault in again: bench/features_bench.py --malloc); hccrad's local cluster leaves it out (a large
    case sets hccrad's own settings in its worker) and keeps Dask's other settings (one BLAS/OpenMP thread per
    worker)."""
    import dask
    import distributed

    from hccrad.features.cohort import _run_on_cluster
    from hccrad.features.config import FeatureConfig

    seen = {}

    class Stop(Exception):
        pass

    def fake_cluster(**kwargs):
        seen.update(dask.config.get("distributed.nanny.pre-spawn-environ"))
        raise Stop

    monkeypatch.setattr(distributed, "LocalCluster", fake_cluster)
    with pytest.raises(Stop):
        _run_on_cluster([object()], tmp_path, None, FeatureConfig(n_workers=1), None, None)
    assert "MALLOC_TRIM_THRESHOLD_" not in seen and seen["OPENBLAS_NUM_THREADS"] == 1
    assert dask.config.get("distributed.nanny.pre-spawn-environ")["MALLOC_TRIM_THRESHOLD_"] == 65536  # restored
