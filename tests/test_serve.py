"""The local web app: uploads refused safely, sessions kept apart, and the page in a real headless browser
(Debian's chromium through selenium and chromium-driver) showing the same risk as `hccrad predict`."""

from __future__ import annotations

import html
import io
import socket
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import SimpleITK as sitk

from hccrad.serve.uploads import UploadError, extract_zip, save_limited

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def test_zip_with_parent_paths_links_or_bombs_and_oversized_uploads_are_refused(tmp_path):
    unsafe = tmp_path / "unsafe.zip"
    with zipfile.ZipFile(unsafe, "w") as bundle:
        bundle.writestr("series/../../etc/passwd", b"x")
    with pytest.raises(UploadError, match="unsafe path"):
        extract_zip(unsafe, tmp_path, 10 * 2**20)
    assert not (tmp_path.parent / "etc").exists()
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as bundle:
        info = zipfile.ZipInfo("series/a")
        info.external_attr = (0o120777 << 16)
        bundle.writestr(info, "/etc/passwd")
    with pytest.raises(UploadError, match="symbolic link"):
        extract_zip(link, tmp_path, 10 * 2**20)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("series/zeros", b"\0" * (8 * 2**20))
    with pytest.raises(UploadError, match="zip bomb"):
        extract_zip(bomb, tmp_path / "out", 100 * 2**20)
    with pytest.raises(UploadError, match="expands to more than"):
        extract_zip(bomb, tmp_path / "out", 1 * 2**20)
    with pytest.raises(UploadError, match="neither a NIfTI file nor a zip"):
        (tmp_path / "x.zip").write_bytes(b"not a zip")
        extract_zip(tmp_path / "x.zip", tmp_path, 2**20)
    damaged = tmp_path / "crc.zip"
    with zipfile.ZipFile(damaged, "w") as bundle:  # stored, so the data can be altered in place
        bundle.writestr("series/slice1.dcm", b"DICM" * 1000)
    data = bytearray(damaged.read_bytes())
    data[data.find(b"DICM") + 10] ^= 0xFF  # one byte changed: the CRC no longer matches
    damaged.write_bytes(bytes(data))
    (tmp_path / "crc").mkdir()
    with pytest.raises(UploadError, match="the zip is damaged: 'series/slice1.dcm'.*Bad CRC-32"):
        extract_zip(damaged, tmp_path / "crc", 10 * 2**20)
    with pytest.raises(UploadError, match="larger than the upload limit of 1 MB"):
        save_limited(io.BytesIO(b"\1" * (2**20 + 1)), tmp_path / "big", 2**20, "the CT")
    assert not (tmp_path / "big").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(fitted_demo):
    import uvicorn

    from hccrad.serve.app import AppSettings, create_app

    study, table, fitted = fitted_demo
    port = _free_port()
    app = create_app(AppSettings(fitted.out_dir, upload_limit_mb=20))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    for _ in range(100):
        if instance.started:
            break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", study, table, fitted
    instance.should_exit = True
    thread.join(timeout=10)


def _patients(study, kind: str, count: int):
    chosen = []
    for record in study.patients:
        is_dicom = Path(record.ct).is_dir()
        if (kind == "dicom") == is_dicom:
            chosen.append(record)
        if len(chosen) == count:
            return chosen
    raise AssertionError(f"no {kind} patient in the demo cohort")


def _clinical(table, patient_id):
    row = table.loc[patient_id]
    return {"afp": str(row["afp"]), "child_pugh": str(row["child_pugh"]), "bclc": str(row["bclc"]),
            "treatment": str(row["treatment"])}


def _expected(fitted, table, record):
    from hccrad.pipeline.predict import predict_new_patient
    from hccrad.survival import load_models

    return predict_new_patient(load_models(fitted.out_dir), _clinical(table, record.patient_id), record.ct,
                               record.mask, record.patient_id)


def _post(client, base, clinical, files):
    """Post the form as the page does: with the session's CSRF token from the form page; then follow the
    prediction's progress page, as the browser does, until the result or the form with its error."""
    import re

    token = re.search(r'name="csrf" value="([^"]+)"', client.get(f"{base}/").text).group(1)
    response = client.post(f"{base}/predict", data={**clinical, "csrf": token}, files=files, follow_redirects=True,
                           timeout=300)
    return _finish(client, response)


def _finish(client, response, limit_s: float = 300):
    """Reload a progress page (as its meta refresh does) until it leads elsewhere: the result, or the form."""
    deadline = time.time() + limit_s
    while 'id="job-status"' in response.text and time.time() < deadline:
        time.sleep(0.2)
        response = client.get(str(response.url), follow_redirects=True, timeout=300)
    return response


def _zip_series(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(folder.iterdir()):
            bundle.write(path, f"series/{path.name}")
    return buffer.getvalue()


def _shown_risk(html: str, slug: str) -> float:
    import re

    return float(re.search(rf'id="risk-{slug}" data-risk="([^"]+)"', html).group(1))


def test_two_sessions_at_once_each_get_their_own_result_and_cannot_see_the_other(server):
    base, study, table, fitted = server
    nifti, dicom = _patients(study, "nifti", 1)[0], _patients(study, "dicom", 1)[0]
    uploads = {
        nifti.patient_id: {"ct": ("ct.nii.gz", Path(nifti.ct).read_bytes()),
                           "mask": ("mask.nii.gz", Path(nifti.mask).read_bytes())},
        dicom.patient_id: {"ct": ("series.zip", _zip_series(Path(dicom.ct))),
                           "mask": ("mask.nii.gz", Path(dicom.mask).read_bytes())},
    }
    clients = {pid: httpx.Client() for pid in uploads}
    for client in clients.values():
        client.get(f"{base}/")  # each browser session gets its own cookie
    with ThreadPoolExecutor(2) as pool:
        futures = {pid: pool.submit(_post, clients[pid], base, _clinical(table, pid), files)
                   for pid, files in uploads.items()}
        pages = {pid: future.result() for pid, future in futures.items()}
    for record in (nifti, dicom):
        page = pages[record.patient_id]
        assert page.status_code == 200, page.text[:500]
        expected = _expected(fitted, table, record).predictions["C-T&L"].risk_score
        assert _shown_risk(page.text, "C-T_L") == pytest.approx(expected, abs=1e-9)
    other = clients[dicom.patient_id].get(str(pages[nifti.patient_id].url))
    assert other.status_code == 404 and "belong to their session" in other.text
    slice_url = str(pages[nifti.patient_id].url) + "/slice/0.png"
    assert clients[nifti.patient_id].get(slice_url).headers["content-type"] == "image/png"
    assert clients[dicom.patient_id].get(slice_url).status_code == 404
    report = clients[nifti.patient_id].get(str(pages[nifti.patient_id].url) + "/report.html")
    assert "Research use only, not a medical device" in report.text and "data:image/png;base64," in report.text
    import re

    # self-contained: no external source, script or stylesheet
    assert not re.search(r'(src|href)="(https?:)?//|url\((https?:)?//|<script src|<link ', report.text)


def test_bad_uploads_and_missing_factors_get_a_message_never_a_traceback(server, tmp_path):
    base, study, table, fitted = server
    record = _patients(study, "nifti", 1)[0]
    clinical = _clinical(table, record.patient_id)
    client = httpx.Client()
    client.get(f"{base}/")
    mask_bytes = Path(record.mask).read_bytes()
    image = sitk.ReadImage(str(record.mask))
    cropped = image[: image.GetSize()[0] // 2, :, :]
    sitk.WriteImage(cropped, str(tmp_path / "small.nii.gz"))
    cases = [
        ({**clinical, "afp": ""}, {}, "missing clinical factor(s): AFP"),
        ({**clinical, "afp": "1,234"}, {}, "AFP"),
        # Python's float() reads these; none is a typed AFP (NaN used to be imputed and scored as a low AFP).
        ({**clinical, "afp": "NaN"}, {}, "AFP 'NaN' is not a number"),
        ({**clinical, "afp": "inf"}, {}, "AFP 'inf' is not a number"),
        ({**clinical, "afp": "1e308"}, {}, "above the plausible maximum of 1e+07 ng/mL"),
        ({**clinical, "afp": "1_000"}, {}, "'_' is not a digit separator"),
        ({**clinical, "afp": "\uff15\uff12\uff10"}, {}, "type the number with the digits 0-9"),
        ({**clinical, "afp": "9" * 100_000}, {}, "(100000 characters) is not a number in ng/mL"),  # not "afp inf"
        ({**clinical, "afp": "abc"}, {}, "AFP 'abc' is not a number in ng/mL"),
        (clinical, {"ct": ("notes.txt", b"hello")}, "expected a NIfTI"),
        (clinical, {"ct": ("scan.nii.gz", b"not an image at all"), "mask": ("mask.nii.gz", mask_bytes)},
         "uploaded CT 'scan.nii.gz' is truncated or corrupt"),
        (clinical, {"ct": ("ct.nii.gz", Path(record.ct).read_bytes()),
                    "mask": ("mask.nii.gz", (tmp_path / "small.nii.gz").read_bytes())}, "does not match the CT"),
        (clinical, {"ct": ("ct.nii.gz", Path(record.ct).read_bytes())}, "give the CT's mask"),
        (clinical, {"mask": ("mask.nii.gz", mask_bytes)}, "without its CT"),
        (clinical, {"ct": ("ct.nii.gz", b"\0" * (21 * 2**20)), "mask": ("mask.nii.gz", mask_bytes)},
         "larger than the upload limit of 20 MB"),
    ]
    for data, files, message in cases:
        page = _post(client, base, data, files)
        assert page.status_code in (400, 413), (message, page.status_code)
        assert message in html.unescape(page.text), (message, page.text[:2000])
        assert "Traceback" not in page.text
        error = html.unescape(page.text.split('id="error"', 1)[1].split("</div>", 1)[0])
        assert "--" not in error and "afp" not in error  # the form's words only: no option, no internal name
    # The C model works from the clinical factors alone; the printable report shows the values as read.
    page = _post(client, base, {**clinical, "afp": "520,0"}, {})
    assert page.status_code == 200 and 'id="risk-C"' in page.text and "needs a CT and a mask" in page.text
    import re

    report = client.get(base + re.search(r'id="report-link" href="([^"]+)"', page.text).group(1))
    assert "AFP 520 ng/mL" in report.text and "520,0" not in report.text
    assert not list(Path(tempfile_dir()).glob("hccrad-upload-*"))  # uploads deleted after use


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


def test_the_app_in_a_headless_browser(server, chromium_webdriver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    base, study, table, fitted = server
    record = _patients(study, "nifti", 2)[1]
    clinical = _clinical(table, record.patient_id)
    expected = _expected(fitted, table, record)
    browser = chromium_webdriver()
    try:
        wait = WebDriverWait(browser, 300)
        browser.get(f"{base}/")
        # A bad upload first: its message is shown on the page.
        browser.find_element(By.ID, "afp").send_keys(clinical["afp"])
        browser.find_element(By.ID, "child_pugh").send_keys(clinical["child_pugh"])
        Select(browser.find_element(By.ID, "bclc")).select_by_value(clinical["bclc"])
        Select(browser.find_element(By.ID, "treatment")).select_by_value(clinical["treatment"])
        notes = ARTIFACTS / "notes.txt"
        ARTIFACTS.mkdir(exist_ok=True)
        notes.write_text("not an image")
        browser.find_element(By.ID, "ct").send_keys(str(notes))
        browser.find_element(By.ID, "submit").click()
        error = wait.until(expected_conditions.presence_of_element_located((By.ID, "error")))
        assert error.text.startswith("notes.txt: expected a NIfTI"), error.text
        # Then the real patient: the form keeps the clinical factors; upload CT and mask.
        browser.find_element(By.ID, "ct").send_keys(str(Path(record.ct).resolve()))
        browser.find_element(By.ID, "mask").send_keys(str(Path(record.mask).resolve()))
        browser.find_element(By.ID, "submit").click()
        cell = wait.until(expected_conditions.presence_of_element_located((By.ID, "risk-C-T_L")))
        for name, prediction in expected.predictions.items():
            shown = browser.find_element(By.ID, f"risk-{name.replace('&', '_')}")
            assert float(shown.get_attribute("data-risk")) == pytest.approx(prediction.risk_score, abs=1e-9)
            assert shown.text == f"{prediction.risk_score:.3f}"
        assert cell.is_displayed()
        # The slice viewer renders, and scrolls.
        image = browser.find_element(By.ID, "slice")
        wait.until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0",
                                              image))
        first = image.get_attribute("src")
        browser.execute_script("const s = document.getElementById('slice-slider');"
                               "s.value = String(Number(s.value) + 2); s.dispatchEvent(new Event('input'));")
        wait.until(lambda b: image.get_attribute("src") != first)
        wait.until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0",
                                              image))
        assert browser.find_element(By.ID, "slice-number").text != ""
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "serve_result.png"))
        severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
                  and "/predict" not in entry["message"]]  # the bad upload's 400 is expected
        assert severe == [], severe
    finally:
        browser.quit()


def _noisy_tumor_ct(record, folder: Path) -> Path:
    """The patient's CT with heavy noise in the tumor (SD 400 HU): texture far outside any training tumor's."""
    import numpy as np

    image = sitk.ReadImage(str(record.ct)) if not Path(record.ct).is_dir() else None
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(record.mask)))
    values = sitk.GetArrayFromImage(image).astype(np.float32)
    tumor = labels == 2
    values[tumor] += np.random.default_rng(5).normal(0, 400, int(tumor.sum()))
    noisy = sitk.GetImageFromArray(values.astype(np.int16))
    noisy.CopyInformation(image)
    sitk.WriteImage(noisy, str(folder / "noisy_ct.nii.gz"))
    return folder / "noisy_ct.nii.gz"


def _console_problems(browser) -> list[dict]:
    return [entry for entry in browser.get_log("browser")
            if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]]


def test_the_clinicians_view_progress_primary_model_warnings_and_csp(server, tmp_path, chromium_webdriver):
    """In Chromium: a NaN AFP is refused in the form's words; a real patient goes through the progress page to
    the result, with the primary model first and marked, percentages, what "high" means, the viewer's labels;
    a patient far outside the training data gets a warning on the page and in the report; no CSP violation."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    base, study, table, fitted = server
    record = _patients(study, "nifti", 3)[2]
    clinical = _clinical(table, record.patient_id)
    browser = chromium_webdriver()
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        wait = WebDriverWait(browser, 300)

        def fill(afp: str, ct: Path | None, mask: Path | None) -> None:
            browser.get(f"{base}/")
            browser.find_element(By.ID, "patient_id").send_keys("MRN 0042")
            browser.find_element(By.ID, "accession").send_keys("ACC-7")
            browser.find_element(By.ID, "afp").send_keys(afp)
            browser.find_element(By.ID, "child_pugh").send_keys(clinical["child_pugh"])
            Select(browser.find_element(By.ID, "bclc")).select_by_value(clinical["bclc"])
            Select(browser.find_element(By.ID, "treatment")).select_by_value(clinical["treatment"])
            if ct is not None:
                browser.find_element(By.ID, "ct").send_keys(str(Path(ct).resolve()))
                browser.find_element(By.ID, "mask").send_keys(str(Path(mask).resolve()))
            browser.find_element(By.ID, "submit").click()

        fill("NaN", None, None)
        error = wait.until(expected_conditions.presence_of_element_located((By.ID, "error")))
        assert "AFP 'NaN' is not a number" in error.text and "afp" not in error.text
        browser.save_screenshot(str(ARTIFACTS / "serve_nan_afp.png"))

        fill(clinical["afp"], record.ct, record.mask)
        status = wait.until(expected_conditions.presence_of_element_located((By.ID, "job-status")))
        assert status.get_attribute("data-stage") in ("queued", "reading", "checking", "features", "scoring")
        browser.save_screenshot(str(ARTIFACTS / "serve_progress.png"))
        wait.until(expected_conditions.presence_of_element_located((By.ID, "results")))
        rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
        assert rows[0].get_attribute("id") == "row-C-T_L" and "primary model" in rows[0].text
        assert "%" in rows[0].text and "MRN 0042" in browser.find_element(By.ID, "patient-line").text
        meaning = browser.find_element(By.ID, "group-meaning").text
        assert meaning.startswith("High risk means a risk score above") and "predicted PFS below" in meaning
        assert browser.find_element(By.ID, "why-models-differ").text.startswith("C-T&L is the study's primary")
        orientation = [browser.find_element(By.ID, f"orient-{edge}").text for edge in ("left", "right", "top")]
        assert orientation == ["R", "L", "A"]  # LPS axial: the patient's right on the viewer's left
        assert "width 400 HU, level 40 HU" in browser.find_element(By.ID, "window-label").text
        assert "tumor" in browser.find_element(By.ID, "colour-key").text
        browser.save_screenshot(str(ARTIFACTS / "serve_result_primary.png"))

        fill(clinical["afp"], _noisy_tumor_ct(record, tmp_path), record.mask)
        wait.until(expected_conditions.presence_of_element_located((By.ID, "results")))
        warnings = browser.find_elements(By.CSS_SELECTOR, "div.warning")
        assert warnings and "outside the training data" in " ".join(w.text for w in warnings), \
            browser.page_source[:3000]
        # the primary model has not seen a tumor like this: said in words, and its risk group is not bold
        primary = browser.find_element(By.ID, "warnings-C-T_L").text
        assert "outside the model's applicability domain" in primary and "does not cover this uncertainty" in primary
        group = browser.find_element(By.ID, "group-C-T_L")
        assert "applicability domain" in group.text and int(group.value_of_css_property("font-weight")) < 600
        browser.save_screenshot(str(ARTIFACTS / "serve_extrapolation.png"))
        report = httpx.get(browser.find_element(By.ID, "report-link").get_attribute("href"),
                           cookies={c["name"]: c["value"] for c in browser.get_cookies()})
        assert "outside the training data" in report.text and "MRN 0042" in report.text and "ACC-7" in report.text
        assert "UTC" in report.text  # the time carries its zone
        assert _console_problems(browser) == []
    finally:
        browser.quit()


def test_a_cross_site_form_in_the_clinicians_browser_is_refused_and_their_result_stays(server, chromium_webdriver):
    """A page served from another local origin (another port) auto-submits a form to the app in the clinician's
    browser, which sends the session cookie along: the app answers 403, and the clinician's result is still there."""
    import http.server

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    base, study, table, fitted = server
    clinical = _clinical(table, table.index[0])
    attacker_port = _free_port()
    form_fields = "".join(f'<input name="{k}" value="{v}">' for k, v in clinical.items())
    page = (f'<html><body><form id="f" method="post" action="{base}/predict" enctype="multipart/form-data">'
            f"{form_fields}</form><script>document.getElementById('f').submit();</script></body></html>").encode()

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    attacker = http.server.HTTPServer(("127.0.0.1", attacker_port), Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    browser = chromium_webdriver()
    try:
        wait = WebDriverWait(browser, 300)
        browser.get(f"{base}/")
        for name, value in clinical.items():
            element = browser.find_element(By.ID, name)
            if element.tag_name == "select":
                from selenium.webdriver.support.select import Select

                Select(element).select_by_value(value)
            else:
                element.send_keys(value)
        browser.find_element(By.ID, "submit").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "results")))
        result_url, cookie = browser.current_url, browser.get_cookie("hccrad_session")["value"]
        browser.get(f"http://127.0.0.1:{attacker_port}/")
        wait.until(lambda b: "refused" in b.page_source)
        assert "refused: the request came from" in browser.page_source
        browser.save_screenshot(str(ARTIFACTS / "serve_cross_site_refused.png"))
        assert browser.get_cookie("hccrad_session")["value"] == cookie
        browser.get(result_url)
        assert browser.find_element(By.ID, "results").is_displayed()
    finally:
        browser.quit()
        attacker.shutdown()


def test_a_direct_post_without_a_prior_visit_still_reaches_its_result(fitted_demo):
    from fastapi.testclient import TestClient

    from hccrad.pipeline.predict import predict_new_patient
    from hccrad.serve.app import AppSettings, create_app
    from hccrad.survival import load_models

    study, table, fitted = fitted_demo
    clinical = _clinical(table, table.index[0])
    client = TestClient(create_app(AppSettings(fitted.out_dir)), base_url="http://127.0.0.1:8000")
    page = _finish(client, client.post("/predict", data=clinical, follow_redirects=True))
    assert page.status_code == 200
    expected = predict_new_patient(load_models(fitted.out_dir), clinical).predictions["C"].risk_score
    assert _shown_risk(page.text, "C") == pytest.approx(expected, abs=1e-9)


@pytest.fixture(scope="module")
def app_client(fitted_demo):
    """A client of the app on 127.0.0.1:8000 (in process), and the clinical factors of one demo patient."""
    from fastapi.testclient import TestClient

    from hccrad.serve.app import AppSettings, create_app

    _study, table, fitted = fitted_demo
    return (lambda **settings: TestClient(create_app(AppSettings(fitted.out_dir, **settings)),
                                          base_url="http://127.0.0.1:8000")), _clinical(table, table.index[0])


def _token(client) -> str:
    import re

    return re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)


def test_every_response_carries_the_security_headers(app_client):
    make, _ = app_client
    client = make()
    for response in (client.get("/"), client.get("/result/unknown"), client.get("/static/app.css")):
        headers = response.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src 'self';" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"


def test_an_unknown_host_name_is_refused(app_client):
    """A DNS-rebinding page reaches the app under its own name: only loopback names and --host are answered."""
    make, _ = app_client
    client = make()
    refused = client.get("/", headers={"host": "attacker.example:8000"})
    assert refused.status_code == 400 and "localhost" not in refused.text and "127.0.0.1" not in refused.text
    assert client.get("/", headers={"host": "localhost:8000"}).status_code == 200
    assert make(allowed_hosts=("hccrad.hospital.local",)).get(
        "/", headers={"host": "hccrad.hospital.local"}).status_code == 200


def test_cross_origin_posts_are_refused_and_the_clinicians_session_and_result_stay(app_client):
    make, clinical = app_client
    clinician = make()
    mine = clinician.post("/predict", data={**clinical, "csrf": _token(clinician)}, follow_redirects=False)
    assert mine.status_code == 303
    result_url = str(_finish(clinician, clinician.get(mine.headers["location"])).url)
    assert "/result/" in result_url
    cookie = clinician.cookies.get("hccrad_session")
    attacks = [{"origin": "http://127.0.0.1:9999"},  # a page on another port of this computer
               {"origin": "https://attacker.example"},
               {"referer": "https://attacker.example/page.html"},
               {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"},
               {"origin": "null"}, {"origin": "null", "sec-fetch-site": "cross-site"}]  # a sandboxed frame
    for headers in attacks:
        response = clinician.post("/predict", data={**clinical, "csrf": _token(clinician)}, headers=headers,
                                  follow_redirects=False)
        assert response.status_code == 403, headers
        assert "set-cookie" not in response.headers  # the clinician's session is not replaced
    # Behind a TLS reverse proxy the browser's origin is https while the app sees http: the same host and port.
    proxied = clinician.post("/predict", data={**clinical, "csrf": _token(clinician)},
                             headers={"origin": "https://127.0.0.1:8000", "sec-fetch-site": "same-origin"},
                             follow_redirects=False)
    assert proxied.status_code == 303
    # A post in the session without the form's token (a background fetch of a forged form) is refused too.
    assert clinician.post("/predict", data=clinical, follow_redirects=False).status_code == 403
    assert clinician.cookies.get("hccrad_session") == cookie
    assert clinician.get(result_url).status_code == 200


def test_a_session_id_the_client_chose_is_replaced_by_one_the_server_issues(app_client):
    make, clinical = app_client
    client = make()
    client.cookies.set("hccrad_session", "chosen-by-the-attacker")
    response = client.get("/")
    issued = response.cookies.get("hccrad_session")
    assert issued and issued != "chosen-by-the-attacker"
    client.cookies.clear()
    client.cookies.set("hccrad_session", issued)
    assert "set-cookie" not in client.get("/").headers  # a session this server issued is kept


def test_a_password_protects_every_request(app_client):
    import base64

    make, _ = app_client
    client = make(password="s3cret horse battery staple")
    refused = client.get("/")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    assert client.get("/static/app.css").status_code == 401
    wrong = base64.b64encode(b"anyone:guess").decode()
    assert client.get("/", headers={"authorization": f"Basic {wrong}"}).status_code == 401
    right = base64.b64encode(b"dr:s3cret horse battery staple").decode()
    assert client.get("/", headers={"authorization": f"Basic {right}"}).status_code == 200


def test_binding_a_network_address_without_a_password_refuses_to_start(fitted_demo, tmp_path):
    from typer.testing import CliRunner

    from hccrad.cli.main import app
    from hccrad.serve.app import AppSettings, ServeError, serve_settings

    _study, _table, fitted = fitted_demo
    with pytest.raises(ServeError, match="needs a password"):
        serve_settings(AppSettings(fitted.out_dir), "0.0.0.0")
    with pytest.raises(ServeError, match="over plain HTTP"):  # a password alone would travel in clear
        serve_settings(AppSettings(fitted.out_dir, password="x" * 20), "10.1.2.3")
    safe = serve_settings(AppSettings(fitted.out_dir, password="x" * 20, behind_proxy=True), "10.1.2.3")
    assert "10.1.2.3" in safe.allowed_hosts
    result = CliRunner().invoke(app, ["serve", "--models", str(fitted.out_dir), "--host", "0.0.0.0"],
                                env={"COLUMNS": "400"})
    assert result.exit_code == 2 and result.output.startswith("error: binding 0.0.0.0 lets other computers")
    (tmp_path / "empty").write_text("")
    (tmp_path / "empty").chmod(0o600)
    result = CliRunner().invoke(app, ["serve", "--models", str(fitted.out_dir), "--host", "0.0.0.0",
                                      "--password-file", str(tmp_path / "empty")], env={"COLUMNS": "400"})
    assert result.exit_code == 2 and "has 0 characters; at least 16" in " ".join(result.output.split())


def test_one_sessions_many_predictions_never_evict_another_sessions_result(app_client):
    """Session B's 17 predictions leave session A's result in place; B keeps its own latest ones; a full app
    refuses a new result (503 with when to retry) instead of evicting one another session is reading."""
    from fastapi.testclient import TestClient

    make, clinical = app_client
    session_a = make(max_results=6, max_results_per_session=4)

    def new_session() -> TestClient:
        return TestClient(session_a.app, base_url="http://127.0.0.1:8000")

    def predict(client: TestClient):
        """A prediction to its end: the result page, or the form with the job's error."""
        return _finish(client, client.post("/predict", data={**clinical, "csrf": _token(client)}))

    a_url = str(predict(session_a).url)
    session_b = new_session()
    b_urls = [str(predict(session_b).url) for _ in range(17)]
    assert all("/result/" in url for url in [a_url, *b_urls])
    assert session_a.get(a_url).status_code == 200
    assert [session_b.get(url).status_code for url in b_urls[-4:]] == [200] * 4
    assert session_b.get(b_urls[0]).status_code == 404  # B's own oldest made room for its newest
    assert predict(new_session()).status_code == 200  # 1 + 4 + 1: the app is now full
    full = predict(new_session())
    assert full.status_code == 503 and "maximum of 6 results" in html.unescape(full.text)
    assert session_a.get(a_url).status_code == 200 and session_b.get(b_urls[-1]).status_code == 200


def test_a_chunked_upload_over_the_limit_is_stopped_while_it_arrives(fitted_demo):
    """A multipart body with no Content-Length that would never end: the app answers 413 after reading at most
    the limit (2 files of 1 MB and 1 MB of fields) and one chunk, never the rest."""
    import asyncio

    from hccrad.serve.app import AppSettings, create_app

    _study, _table, fitted = fitted_demo
    app = create_app(AppSettings(fitted.out_dir, upload_limit_mb=1))
    chunk = 256 * 1024
    head = (b"--XyZ\r\nContent-Disposition: form-data; name=\"ct\"; filename=\"ct.nii.gz\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n")
    pulled, sent = [], []

    async def receive():
        pulled.append(chunk)
        return {"type": "http.request", "body": head if len(pulled) == 1 else b"\1" * chunk, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"multipart/form-data; boundary=XyZ"),
                         (b"transfer-encoding", b"chunked")],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=60))
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    assert start["status"] == 413 and b"larger than the limit of 1 MB" in body
    assert (len(pulled) - 1) * chunk <= 3 * 2**20 + chunk  # the limit and one chunk, then nothing more was read


def test_jobs_queue_in_order_show_their_place_and_one_session_runs_one_at_a_time(app_client, fitted_demo,
                                                                                   monkeypatch):
    """With one prediction at a time: a second session's image job waits and its page says one is ahead of it;
    the first session's second post gets 409 with a link to its progress; a third session of the same client
    gets 503 (one running and one waiting per client); a clinical-only prediction is answered at once all the
    while; every job's uploads folder is gone once it ends."""
    import re

    from fastapi.testclient import TestClient

    import hccrad.serve.app as serve_app

    release = threading.Event()
    real_predict = serve_app._predict

    def held(models, settings, job, stage):
        if job.uploads:
            release.wait(timeout=60)
        return real_predict(models, settings, job, stage)

    monkeypatch.setattr(serve_app, "_predict", held)
    make, clinical = app_client
    study, table, _fitted = fitted_demo
    record = _patients(study, "nifti", 1)[0]
    images = {"ct": ("ct.nii.gz", Path(record.ct).read_bytes()), "mask": ("mask.nii.gz",
                                                                        Path(record.mask).read_bytes())}
    clinical = _clinical(table, record.patient_id)
    first = make(max_jobs=1, max_queued=8)

    def post(client, files=images):
        return client.post("/predict", data={**clinical, "csrf": _token(client)}, files=files,
                           follow_redirects=False)

    running = post(first)
    assert running.status_code == 303
    second = TestClient(first.app, base_url="http://127.0.0.1:8000")
    waiting = post(second)
    assert waiting.status_code == 303
    page = second.get(waiting.headers["location"])
    assert 'data-stage="queued"' in page.text and "1 prediction ahead of this one" in page.text
    assert "(1 computed at a time)" in page.text and 'http-equiv="refresh"' in page.text
    again = post(first)
    assert again.status_code == 409 and running.headers["location"] in again.text
    third = TestClient(first.app, base_url="http://127.0.0.1:8000")
    full = post(third)
    assert full.status_code == 503 and "already has 2 predictions running or waiting" in html.unescape(full.text)
    quick = post(third, files={})  # the clinical model alone: not queued behind the image jobs
    assert quick.status_code == 303 and quick.headers["location"].startswith("/result/")
    release.set()
    done = _finish(second, second.get(waiting.headers["location"]))
    assert done.status_code == 200 and re.search(r'id="risk-C"', done.text)
    assert _finish(first, first.get(running.headers["location"])).status_code == 200
    assert not list(Path(tempfile_dir()).glob("hccrad-upload-*"))


def test_what_the_page_says_percentages_orientation_and_the_groups_pfs_meaning(fitted_demo):
    """The words beside the numbers: "<1%" and ">99%" never round to a false 0 or 100%; the orientation letters
    follow the direction cosines; and "high risk" is exactly "a predicted PFS below the cut-off's", patient by
    patient, at every horizon (the group and the percentages cannot contradict each other)."""
    from hccrad.pipeline.predict import patient_row, score_model
    from hccrad.serve.present import ordered_models, orientation_labels, percent

    assert [percent(p) for p in (0.0, 0.004, 0.01, 0.5, 0.99, 0.996)] == ["<1%", "<1%", "1%", "50%", "99%", ">99%"]
    assert orientation_labels((1, 0, 0, 0, 1, 0, 0, 0, 1)) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert orientation_labels((-1, 0, 0, 0, -1, 0, 0, 0, 1)) == {"left": "L", "right": "R", "top": "P", "bottom": "A"}
    assert ordered_models(["C", "T", "T&L", "C-T&L"]) == ["C-T&L", "C", "T", "T&L"]
    _study, table, fitted = fitted_demo
    for patient_id in table.index[:30]:
        clinical = _clinical(table, patient_id)
        features = table.loc[patient_id].drop(labels=list(clinical)).to_dict()
        prediction = score_model(fitted.models["C-T&L"], patient_row(patient_id, clinical, features))
        for horizon, at_cutoff in prediction.cutoff_pfs.items():
            pfs = float(prediction.survival.set_index("time_months").loc[horizon, "pfs"])
            assert (prediction.risk_group == "high") == (pfs < at_cutoff), (patient_id, horizon)


@pytest.mark.parametrize("coding", ["ordinal", "dummy"])
def test_each_clinical_line_names_the_patients_own_category_and_the_reference_is_the_baseline(coding):
    """The contribution lines read back the category the patient was coded from (independent truth: the input
    row), with a zero contribution and "(reference category)" exactly where the patient is in the reference."""
    from types import SimpleNamespace

    import numpy as np
    import pandas as pd

    from hccrad.serve.present import contribution_lines
    from hccrad.survival.clinical import encode, fit_coding
    from hccrad.survival.config import ClinicalCoding

    training = pd.DataFrame({"afp": [10, 900, 50, 5000, 3, 20], "child_pugh": ["A", "B", "A", "C", "A", "B"],
                             "bclc": ["0", "A", "B", "C", "A", "B"],
                             "treatment": ["TACE", "TACE", "TACE+systemic", "TACE", "TACE", "TACE+systemic"]})
    spec = fit_coding(training, ClinicalCoding(child_pugh=coding, bclc=coding))
    patients = pd.DataFrame({"afp": [20, 800], "child_pugh": ["A", "C"], "bclc": ["A", "C"],
                             "treatment": ["TACE", "TACE+systemic"]})
    expected = [{"AFP": "AFP < 400 ng/mL", "Child-Pugh": "Child-Pugh A", "BCLC stage": "BCLC A",
                 "Treatment": "Treatment TACE"},
                {"AFP": "AFP >= 400 ng/mL", "Child-Pugh": "Child-Pugh C", "BCLC stage": "BCLC C",
                 "Treatment": "Treatment TACE+systemic"}]
    coded = encode(patients, spec, impute=None)
    coefficients = np.linspace(0.3, 0.9, coded.shape[1])
    for k, truth in enumerate(expected):
        values = coded.iloc[k].to_numpy(float)
        contributions = pd.DataFrame({"covariate": coded.columns, "value": values, "coef": coefficients,
                                      "contribution": coefficients * values})
        lines = {line.label: line for line in contribution_lines(
            SimpleNamespace(clinical_spec_=spec), SimpleNamespace(contributions=contributions))}
        for factor, category in truth.items():
            line = lines[factor]
            assert line.value.split(" (reference")[0] == category, (factor, line.value)
            in_reference = line.contribution == 0.0
            assert line.value.endswith("(reference category)") == in_reference, (factor, line.value)


def test_the_queue_itself_refuses_a_sessions_second_job_so_two_posts_at_once_cannot_both_run(tmp_path):
    """The page checks first, but two posts at the same moment both pass that check: the queue refuses the second
    under its lock, naming the running one, and another session's job is still taken."""
    from hccrad.serve.app import AppSettings, Job, JobQueue, SessionBusyError

    release = threading.Event()
    queue = JobQueue(AppSettings(models_dir=tmp_path, max_jobs=1, max_queued=4))

    def job(token, owner):
        return Job(token, owner, time.time(), {}, {}, tmp_path / token, {})

    first = job("a1", "session-a")
    queue.submit(first, lambda one: release.wait(timeout=30))
    with pytest.raises(SessionBusyError) as refused:
        queue.submit(job("a2", "session-a"), lambda one: None)
    assert refused.value.running is first and queue.get("a2", "session-a") is None
    queue.submit(job("b1", "session-b"), lambda one: None)
    assert queue.get("b1", "session-b") is not None
    release.set()


# --- round two: credentials, TLS, caching, sessions, time, fairness, series, bounded reading --------------


def test_a_weak_or_shared_password_file_is_refused_with_the_remedy(tmp_path):
    from hccrad.serve.app import ServeError, check_password_file

    path = tmp_path / "pw"
    path.write_text("a\n")
    path.chmod(0o644)
    with pytest.raises(ServeError, match=r"can be read by other users \(mode -rw-r--r--\): `chmod 600"):
        check_password_file(path)
    path.chmod(0o600)
    with pytest.raises(ServeError, match="has 1 characters; at least 16 are needed: make one with `openssl rand"):
        check_password_file(path)
    path.write_text("Zr4k9QmL0pX2sV7wYb3nC8dE\n")
    assert check_password_file(path) == "Zr4k9QmL0pX2sV7wYb3nC8dE"


def test_wrong_passwords_lock_the_address_out_with_backoff_and_a_log_warning(app_client, caplog):
    import base64
    import logging

    make, _ = app_client
    client = make(password="a-long-enough-password", max_failed_logins=3, lockout_s=60)
    wrong = {"authorization": "Basic " + base64.b64encode(b"dr:guess").decode()}
    right = {"authorization": "Basic " + base64.b64encode(b"dr:a-long-enough-password").decode()}
    with caplog.at_level(logging.WARNING):
        statuses = [client.get("/", headers=wrong).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    locked = client.get("/", headers=right)  # even the right password waits out the lockout
    assert locked.status_code == 429 and 55 <= int(locked.headers["retry-after"]) <= 61
    assert any("locked out" in record.getMessage() for record in caplog.records)


def test_lockout_lengths_double_and_a_right_password_clears_the_count(monkeypatch):
    from hccrad.serve import app as serve_app

    clock = [1000.0]
    monkeypatch.setattr(serve_app.time, "time", lambda: clock[0])
    throttle = serve_app.LoginThrottle(max_failed=2, lockout_s=10)
    throttle.failed("10.0.0.5")
    assert throttle.locked_for("10.0.0.5") == 0
    throttle.failed("10.0.0.5")
    assert throttle.locked_for("10.0.0.5") == pytest.approx(10)
    clock[0] += 11
    throttle.failed("10.0.0.5")
    assert throttle.locked_for("10.0.0.5") == pytest.approx(20)
    assert throttle.locked_for("10.0.0.6") == 0  # per address
    throttle.succeeded("10.0.0.5")
    assert throttle.locked_for("10.0.0.5") == 0


def test_no_page_with_patient_data_is_cached_and_tls_makes_the_cookie_secure(app_client):
    make, clinical = app_client
    client = make()
    form = client.get("/")
    assert form.headers["cache-control"] == "no-store" and "strict-transport-security" not in form.headers
    token = _token(client)
    result = client.post("/predict", data={**clinical, "csrf": token}, follow_redirects=True)
    assert result.status_code == 200 and "/result/" in str(result.url)
    assert result.headers["cache-control"] == "no-store"
    report = client.get(str(result.url) + "/report.html")
    assert report.headers["cache-control"] == "no-store"
    secure = make(tls=True).get("/")
    assert "secure" in secure.headers["set-cookie"].lower() and "max-age=" in secure.headers["set-cookie"].lower()
    assert secure.headers["strict-transport-security"].startswith("max-age=")
    proxied = make(behind_proxy=True).get("/", headers={"x-forwarded-proto": "https"})
    assert "secure" in proxied.headers["set-cookie"].lower()


def test_an_idle_or_old_session_ends(app_client):
    import time as clock

    make, _ = app_client
    client = make(session_idle_s=0.3)
    first = client.get("/")
    assert "set-cookie" in first.headers
    assert "set-cookie" not in client.get("/").headers  # still alive
    clock.sleep(0.5)
    assert "set-cookie" in client.get("/").headers  # idle too long: a new session


def test_a_stalled_upload_is_cut_off_at_the_body_deadline():
    import asyncio

    from hccrad.serve.app import BodyLimit, BodyTimeoutError

    async def inner(scope, receive, send):
        await receive()

    async def never():
        await asyncio.sleep(30)

    limited = BodyLimit(inner, max_bytes=10, timeout_s=0.2)
    started = __import__("time").monotonic()
    with pytest.raises(BodyTimeoutError):
        asyncio.run(limited({"type": "http"}, never, None))
    assert __import__("time").monotonic() - started < 5


def test_one_client_cannot_fill_the_queue_and_a_clinical_prediction_never_waits(app_client, tmp_path):
    from hccrad.serve.app import AppSettings, Job, JobQueue, QueueFullError

    queue = JobQueue(AppSettings(tmp_path, max_queued=8))
    blocked = __import__("threading").Event()

    def hold(_job):
        blocked.wait(10)

    try:
        for k in range(2):  # two sessions of one client: one running, one waiting
            queue.submit(Job(f"t{k}", f"session{k}", float(k), {}, {}, tmp_path, {}, client="10.0.0.9"), hold)
        with pytest.raises(QueueFullError, match="already has 2 predictions"):
            queue.submit(Job("t2", "session2", 2.0, {}, {}, tmp_path, {}, client="10.0.0.9"), hold)
        queue.submit(Job("t3", "session3", 3.0, {}, {}, tmp_path, {}, client="10.0.0.10"), hold)  # another client
    finally:
        blocked.set()
    make, clinical = app_client
    client = make(max_queued=0)  # a queue that takes nothing: the clinical model still answers at once
    result = client.post("/predict", data={**clinical, "csrf": _token(client)}, follow_redirects=True)
    assert result.status_code == 200 and 'id="results"' in result.text


def test_a_job_past_its_time_limit_is_stopped_with_a_message(tmp_path):
    from hccrad.serve.app import Job, JobTimeoutError

    job = Job("t", "s", 0.0, {}, {}, tmp_path, {})
    job.started, job.deadline = 100.0, 100.5
    with pytest.raises(JobTimeoutError, match="took longer than 0 s and was stopped"):
        job.check_time()


def test_a_zip_of_two_series_is_refused_listing_them_unless_the_form_names_one(fitted_demo, tmp_path):
    import pydicom

    from hccrad.serve.uploads import UploadError, extract_series

    study, _table, _fitted = fitted_demo
    folders = [Path(r.ct) for r in study.patients if Path(r.ct).is_dir()][:2]
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for k, folder in enumerate(folders):
            for path in sorted(folder.iterdir()):
                bundle.write(path, f"study/series{k}/{path.name}")
    uids = [str(pydicom.dcmread(next(f.iterdir()), stop_before_pixels=True).SeriesInstanceUID) for f in folders]
    with pytest.raises(UploadError, match="the zip holds 2 DICOM series") as refused:
        extract_series(archive, tmp_path / "a", 50 * 2**20)
    assert all(uid[-12:] in str(refused.value) for uid in uids) and "slices" in str(refused.value)
    chosen = extract_series(archive, tmp_path / "b", 50 * 2**20, series=uids[1][-12:])
    assert chosen.uid == uids[1] and chosen.slices == len(list(folders[1].iterdir()))
    assert sorted(p.name.split("_", 1)[1] for p in chosen.folder.iterdir()) == sorted(
        p.name for p in folders[1].iterdir())


_BOUNDED_READ = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))
from hccrad.io.errors import InputError
kind, path, ct = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    if kind == "image":
        from hccrad.io.images import read_image
        read_image(path)
    else:
        from hccrad.io.images import read_image
        from hccrad.io.mask_sources import _read_label_map
        _read_label_map(__import__("pathlib").Path(path), read_image(ct))
except InputError as exc:
    print("REFUSED:", exc)
    sys.exit(0)
print("READ")
"""


def test_a_nifti_bomb_and_a_mask_of_a_million_labels_are_refused_within_bounded_memory(tmp_path):
    """Run in a child process under a 1.5 GiB address-space limit: the header's declared size is checked before any
    decompression, and a mask's labels are counted before any per-label array."""
    import gzip
    import subprocess
    import sys

    import numpy as np
    import SimpleITK as sitk

    small = tmp_path / "small.nii"
    sitk.WriteImage(sitk.Image(8, 8, 8, sitk.sitkInt16), str(small))
    header = bytearray(small.read_bytes())
    header[42:48] = np.array([2000, 2000, 2000], dtype="<i2").tobytes()
    bomb = tmp_path / "bomb.nii.gz"
    with gzip.open(bomb, "wb") as stream:
        stream.write(bytes(header[:352]))
        zeros = bytes(1 << 20)
        for _ in range(64):  # 64 MB of zeros on the wire as a few hundred kB
            stream.write(zeros)
    ct = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.Image(100, 100, 100, sitk.sitkInt16), str(ct))
    labels = sitk.GetImageFromArray(np.arange(10**6, dtype=np.int32).reshape(100, 100, 100))
    mask = tmp_path / "mask.nii.gz"
    sitk.WriteImage(labels, str(mask))
    for kind, path, expected in (("image", bomb, "declares 2000 x 2000 x 2000 voxels"),
                                 ("mask", mask, "holds 999999 distinct labels")):
        started = __import__("time").time()
        done = subprocess.run([sys.executable, "-c", _BOUNDED_READ, kind, str(path), str(ct)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.startswith("REFUSED:") and expected in done.stdout, done.stdout
        assert __import__("time").time() - started < 60


def test_the_page_shows_the_afp_as_read_beside_its_category_and_refuses_an_untrained_treatment(app_client):
    make, clinical = app_client
    client = make()
    page = client.post("/predict", data={**clinical, "afp": "1000,5", "csrf": _token(client)}, follow_redirects=True)
    read = html.unescape(page.text.split('id="clinical-read"', 1)[1].split("</p>", 1)[0])
    assert "AFP 1000.5 ng/mL" in read and "(>= 400 ng/mL)" in read
    ambiguous = client.post("/predict", data={**clinical, "afp": "1.000", "csrf": _token(client)})
    assert ambiguous.status_code == 400 and "ambiguous" in html.unescape(ambiguous.text)
    other = client.post("/predict", data={**clinical, "treatment": "radioembolization", "csrf": _token(client)})
    assert other.status_code == 400 and "is not one the models were trained on" in html.unescape(other.text)


def test_a_series_named_for_a_nifti_ct_is_refused_not_ignored(app_client, fitted_demo):
    study, table, _fitted = fitted_demo
    record = _patients(study, "nifti", 1)[0]
    make, _ = app_client
    client = make()
    files = {"ct": ("ct.nii.gz", Path(record.ct).read_bytes()), "mask": ("mask.nii.gz", Path(record.mask).read_bytes())}
    page = client.post("/predict", data={**_clinical(table, record.patient_id), "series": "1234",
                                         "csrf": _token(client)}, files=files)
    assert page.status_code == 400 and "a series was named, but the CT is not a zip" in html.unescape(page.text)
