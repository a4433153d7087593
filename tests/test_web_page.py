"""The web page in a real browser: Debian's Chromium driven by Playwright against a real uvicorn.

The server runs the embedded default (SQLite, Tesseract), with pages downscaled before OCR
(``max_page_pixels``) so the overlay is checked on a page whose OCR frame is smaller than its
source, and with a sideways scan and a PDF page stored rotated. Screenshots are written to
``OCRQ_WEB_ARTIFACTS`` (default: the test's tmp folder) for a person to look at.
"""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from ocrq.jobs.access import Role
from ocrq.settings import build_settings
from tests.api_support import make_key
from tests.scans import ENGLISH, make_scan_pdf, scan_jpeg
from tests.web_support import CHROMIUM, api, new_page, served, sign_in

playwright_api = pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (scripts/dev installs it)", allow_module_level=True)

MAX_UPLOAD = 3 * 1024 * 1024
DOWNSCALED = 400_000
"""Pixels per page for OCR: the 1500 x 700 scans are read at about 926 x 432."""
DONE_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("web")
    settings = build_settings(
        database_url=f"sqlite:///{folder / 'ocrq.db'}",
        engines=["tesseract"],
        tesseract_langs="eng",
        output_dir=folder / "results",
        api_upload_dir=folder / "uploads",
        api_max_upload_bytes=MAX_UPLOAD,
        api_path_roots=[folder / "server"],
        max_page_pixels=DOWNSCALED,
        page_workers=2,
    )
    keys = {name: make_key(settings, name) for name in ("alice", "bob", "carol")}
    keys["root"] = make_key(settings, "root", Role.ADMIN)
    artifacts = Path(os.environ.get("OCRQ_WEB_ARTIFACTS") or folder / "screenshots")
    artifacts.mkdir(parents=True, exist_ok=True)
    with served(settings) as url:
        yield {"url": url, "keys": keys, "folder": folder, "settings": settings, "artifacts": artifacts}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def write_documents(folder: Path) -> list[Path]:
    scan = folder / "scan.png"
    Image.open(io.BytesIO(scan_jpeg(ENGLISH))).save(scan)
    rotated = make_scan_pdf(folder / "stored-rotated.pdf", [ENGLISH], geometry="rotate90")
    sideways = make_scan_pdf(folder / "sideways.pdf", [ENGLISH], geometry="sideways_left")
    return [scan, rotated, sideways]


@pytest.fixture(scope="module")
def alice_job(web: dict[str, Any], browser: Any) -> dict[str, Any]:
    """Alice uploads a scan and two PDFs through the form and watches the job end on its page."""
    page = new_page(browser)
    sign_in(page, web, "alice")
    page.get_by_role("link", name="New job").first.click()
    page.get_by_label("Files (PDF").set_input_files([str(p) for p in write_documents(web["folder"])])
    page.get_by_role("button", name="Start OCR").first.click()
    page.wait_for_url("**/jobs/*")
    job_id = int(page.url.rsplit("/", 1)[1])
    # the page follows the job live (SSE) and reloads itself once the job has ended
    page.wait_for_selector("text=Download the job's results", timeout=DONE_TIMEOUT_MS)
    assert page.locator('[data-job-id] [data-field="status"]').inner_text() == "done"
    page.screenshot(path=web["artifacts"] / "job.png", full_page=True)
    documents = api(web, "alice", f"/v1/jobs/{job_id}/documents")["data"]
    page.context.close()
    return {"id": job_id, "documents": {Path(d["path"]).name: d for d in documents}}


def test_jobs_list_shows_the_finished_job_with_its_figures(
    web: dict[str, Any], browser: Any, alice_job: Any
) -> None:
    page = new_page(browser)
    sign_in(page, web, "alice")
    row = page.locator(f'[data-job-id="{alice_job["id"]}"]')
    assert row.locator('[data-field="status"]').inner_text() == "done"
    assert row.locator('[data-field="pages"]').inner_text() == "3 done · 0 failed · 0 degraded of 3"
    assert "pages/s" in row.locator('[data-field="rate"]').inner_text()
    assert row.locator("progress").get_attribute("value") == "3"
    page.screenshot(path=web["artifacts"] / "jobs-list.png", full_page=True)


def test_the_list_follows_a_running_job_without_reloading(web: dict[str, Any], browser: Any) -> None:
    pdf = make_scan_pdf(web["folder"] / "eight-pages.pdf", [ENGLISH] * 8)
    response = httpx.post(
        web["url"] + "/v1/jobs",
        headers={"X-API-Key": web["keys"]["bob"]},
        files=[("files", (pdf.name, pdf.read_bytes(), "application/pdf"))],
        timeout=30,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    page = new_page(browser)
    sign_in(page, web, "bob")
    row = page.locator(f'[data-job-id="{job_id}"]')
    assert row.locator('[data-field="status"]').inner_text() in ("queued", "running")
    page.evaluate("() => { window.notReloaded = true; }")
    status = f'[data-job-id="{job_id}"] [data-field="status"]'
    page.wait_for_function(
        f"() => document.querySelector('{status}').textContent === 'done'", timeout=DONE_TIMEOUT_MS
    )
    assert page.evaluate("() => window.notReloaded === true"), "the list must update in place"
    # the status and the counts may come in separate events: wait for the counts to catch up
    playwright_api.expect(row.locator('[data-field="pages"]')).to_have_text(
        "8 done · 0 failed · 0 degraded of 8", timeout=10_000
    )
    assert row.locator("progress").get_attribute("value") == "8"
    api(web, "bob", f"/v1/jobs/{job_id}?wait=30")
    page.goto(f"{web['url']}/jobs/{job_id}")
    assert page.locator(".pages a.p-done").count() == 8, "page links show each page's status"
    page.locator(".pages a").first.click()
    page.keyboard.press("ArrowRight")
    page.wait_for_url("**/pages/2")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url("**/pages/1")


@pytest.mark.parametrize("name", ["scan.png", "stored-rotated.pdf", "sideways.pdf"])
def test_overlay_boxes_sit_on_the_cells_and_on_the_ink(
    web: dict[str, Any], browser: Any, alice_job: Any, name: str
) -> None:
    document = alice_job["documents"][name]
    expected = api(web, "alice", f"/v1/documents/{document['id']}/pages/1")
    assert expected["cells"], f"Tesseract found no cells on {name}"
    page = new_page(browser)
    sign_in(page, web, "alice")
    page.goto(f"{web['url']}/documents/{document['id']}/pages/1")
    drawn = _drawn_boxes(page, expected["width"], expected["height"])
    assert len(drawn) == len(expected["cells"])
    for box, cell in zip(drawn, expected["cells"], strict=True):
        assert box == pytest.approx(cell["bbox"], abs=1.5), f"{name}: a box is not where its cell is"
    picture = page.context.request.get(f"{web['url']}/documents/{document['id']}/pages/1/picture.jpg")
    assert picture.status == 200
    inside = _ink_inside(picture.body(), expected)
    assert inside > 0.9, f"{name}: only {inside:.0%} of the page's ink is inside the drawn cells"
    page.screenshot(path=web["artifacts"] / f"page-{name}.png", full_page=True)


def _drawn_boxes(page: Any, width: int, height: int) -> list[list[float]]:
    """Where the browser put each box, read back in page pixels from the rendered SVG."""
    rendered = page.evaluate(
        """() => {
            const element = document.getElementById('page-svg');
            const svg = element.getBoundingClientRect();  // the content box: the border is not drawn on
            return {svg: [svg.left + element.clientLeft, svg.top + element.clientTop,
                          element.clientWidth, element.clientHeight],
                    rects: [...document.querySelectorAll('a.cell rect')].map((r) => {
                        const b = r.getBoundingClientRect();
                        return [b.left, b.top, b.right, b.bottom];
                    })};
        }"""
    )
    left, top, shown_w, shown_h = rendered["svg"]
    scale = min(shown_w / width, shown_h / height)  # the viewBox is fitted, proportions kept
    pad_x, pad_y = (shown_w - width * scale) / 2, (shown_h - height * scale) / 2
    return [
        [
            (x1 - left - pad_x) / scale,
            (y1 - top - pad_y) / scale,
            (x2 - left - pad_x) / scale,
            (y2 - top - pad_y) / scale,
        ]
        for x1, y1, x2, y2 in rendered["rects"]
    ]


def _ink_inside(jpeg: bytes, page: dict[str, Any]) -> float:
    """Share of the picture's dark pixels that fall inside a cell box scaled to the picture."""
    picture = Image.open(io.BytesIO(jpeg)).convert("L")
    sx, sy = picture.width / page["width"], picture.height / page["height"]
    assert sx == pytest.approx(sy, rel=0.02), "the picture's proportions differ from the OCR frame's"
    boxes = [
        [c["bbox"][0] * sx, c["bbox"][1] * sy, c["bbox"][2] * sx, c["bbox"][3] * sy] for c in page["cells"]
    ]
    pixels, (w, h) = picture.load(), picture.size
    ink = [(x, y) for y in range(0, h, 2) for x in range(0, w, 2) if pixels[x, y] < 100]
    assert len(ink) > 500, "the picture shows no text"
    inside = sum(any(b[0] - 2 <= x <= b[2] + 2 and b[1] - 2 <= y <= b[3] + 2 for b in boxes) for x, y in ink)
    return inside / len(ink)


def test_clicking_a_cell_shows_its_text_and_the_markdown_downloads(
    web: dict[str, Any], browser: Any, alice_job: Any
) -> None:
    document = alice_job["documents"]["scan.png"]
    expected = api(web, "alice", f"/v1/documents/{document['id']}/pages/1")
    page = new_page(browser)
    sign_in(page, web, "alice")
    page.goto(f"{web['url']}/jobs/{alice_job['id']}")
    page.get_by_role("navigation", name="Pages of scan.png").get_by_role("link", name="1").click()
    last = page.locator("a.cell").last
    last.click()
    assert page.locator("#cell-title").inner_text().startswith(f"Cell {len(expected['cells'])}:")
    assert "Sphinx of black quartz" in page.locator("#cell-text").inner_text()
    assert "Sphinx of black quartz" in page.locator(".markdown").inner_text()
    assert page.locator("text=tesseract").first.is_visible()
    page.locator("a.cell").first.focus()
    page.keyboard.press("Enter")
    assert "quick brown fox" in page.locator("#cell-text").inner_text()
    with page.expect_download() as markdown:
        page.locator(".markdown + .links").get_by_role("link", name="Markdown").click()
    text = Path(markdown.value.path()).read_text()
    assert markdown.value.suggested_filename == "scan.png.md"
    assert "quick brown fox" in text and "Sphinx of black quartz" in text


def test_every_format_downloads(web: dict[str, Any], browser: Any, alice_job: Any) -> None:
    page = new_page(browser)
    sign_in(page, web, "alice")
    page.goto(f"{web['url']}/jobs/{alice_job['id']}")
    scan = page.locator(".documents > li", has_text="scan.png")
    expected = {"Markdown": b"quick brown fox", "Text": b"quick brown fox", "JSON": b'"cells"'}
    expected |= {"ALTO XML": b"<alto", "Searchable PDF": b"%PDF-"}
    for label, marker in expected.items():
        with page.expect_download() as download:
            scan.get_by_role("link", name=label).click()
        assert marker in Path(download.value.path()).read_bytes(), label
    with page.expect_download() as whole:
        page.get_by_role("link", name="JSON lines").click()
    lines = Path(whole.value.path()).read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["status"] == "done" for line in lines)
    page.get_by_label("searchable PDF").uncheck()
    with page.expect_download() as archive:
        page.get_by_role("button", name="Download zip").click()
    names = zipfile.ZipFile(archive.value.path()).namelist()
    assert any(n.endswith("scan.png.md") for n in names) and any(n.endswith(".alto.xml") for n in names)
    assert not any(n.endswith(".pdf.pdf") or n.endswith("png.pdf") for n in names), "unticked PDF came along"


def test_another_tenant_sees_none_of_it(web: dict[str, Any], browser: Any, alice_job: Any) -> None:
    page = new_page(browser)
    sign_in(page, web, "bob")
    assert page.locator(f'[data-job-id="{alice_job["id"]}"]').count() == 0
    document = alice_job["documents"]["scan.png"]["id"]
    for path in (
        f"/jobs/{alice_job['id']}",
        f"/documents/{document}/pages/1",
        f"/documents/{document}/pages/1/picture.jpg",
        f"/documents/{document}/download?format=md",
        f"/jobs/{alice_job['id']}/download?format=zip",
        f"/events/jobs?job={alice_job['id']}",
    ):
        response = page.context.request.get(web["url"] + path)
        assert response.status == 404, path
        assert b"quick brown fox" not in response.body()
    admin = new_page(browser)
    sign_in(admin, web, "root")
    row = admin.locator(f'[data-job-id="{alice_job["id"]}"]')
    assert row.locator(".owner").inner_text() == "alice", "an admin key sees every job and who made it"


def test_cancel_from_the_job_page(web: dict[str, Any], browser: Any) -> None:
    pdf = make_scan_pdf(web["folder"] / "thirty-pages.pdf", [ENGLISH] * 30)
    response = httpx.post(
        web["url"] + "/v1/jobs",
        headers={"X-API-Key": web["keys"]["carol"]},
        files=[("files", (pdf.name, pdf.read_bytes(), "application/pdf"))],
        timeout=30,
    )
    job_id = response.json()["id"]
    page = new_page(browser)
    sign_in(page, web, "carol")
    page.goto(f"{web['url']}/jobs/{job_id}")
    page.get_by_role("button", name="Cancel job").click()
    page.wait_for_url(f"**/jobs/{job_id}")
    assert page.locator('[data-job-id] [data-field="status"]').inner_text() == "cancelled"
    assert page.get_by_role("button", name="Cancel job").count() == 0
    job = api(web, "carol", f"/v1/jobs/{job_id}")
    assert job["status"] == "cancelled" and job["counts"]["pages"]["done"] < 30
    page.goto(web["url"] + "/")
    page.get_by_label("Show").select_option("cancelled")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/?status=cancelled")
    page.wait_for_load_state()
    assert page.locator("[data-job-id]").all_inner_texts() and all(
        status == "cancelled" for status in page.locator('[data-field="status"]').all_inner_texts()
    )
    page.get_by_label("Show").select_option("")
    page.get_by_role("button", name="Filter").click()
    assert page.url.endswith("/?status="), "every job again"


def test_a_job_over_files_already_on_the_server(web: dict[str, Any], browser: Any) -> None:
    inbox = web["folder"] / "server" / "inbox"
    inbox.mkdir(parents=True)
    Image.open(io.BytesIO(scan_jpeg(ENGLISH))).save(inbox / "on-server.png")
    page = new_page(browser)
    sign_in(page, web, "carol")
    page.goto(web["url"] + "/submit")
    page.get_by_label("Paths, one per line").fill("inbox/on-server.png")
    page.get_by_role("button", name="Start OCR").last.click()
    page.wait_for_selector("text=Download the job's results", timeout=DONE_TIMEOUT_MS)
    assert page.locator(".documents").inner_text().startswith("on-server.png")
    page.goto(web["url"] + "/submit")
    page.get_by_label("Paths, one per line").fill("/etc/passwd")
    page.get_by_role("button", name="Start OCR").last.click()
    assert "outside the allowed roots" in page.get_by_role("alert").inner_text()


def test_files_dropped_on_the_form_are_uploaded(web: dict[str, Any], browser: Any) -> None:
    scan = io.BytesIO()
    Image.open(io.BytesIO(scan_jpeg(ENGLISH))).save(scan, "PNG")
    page = new_page(browser)
    sign_in(page, web, "carol")
    page.goto(web["url"] + "/submit")
    dropped = page.evaluate_handle(
        """(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            for (const name of ["dropped-1.png", "dropped-2.png"])
                transfer.items.add(new File([bytes], name, {type: "image/png"}));
            return transfer;
        }""",
        base64.b64encode(scan.getvalue()).decode(),
    )
    zone = page.locator(".drop").first
    zone.dispatch_event("drop", {"dataTransfer": dropped})
    assert zone.locator(".dropped").inner_text() == "2 file(s) ready: dropped-1.png, dropped-2.png"
    page.get_by_role("button", name="Start OCR").first.click()
    page.wait_for_selector("text=Download the job's results", timeout=DONE_TIMEOUT_MS)
    names = page.locator(".documents > li strong").all_inner_texts()
    assert names == ["dropped-1.png", "dropped-2.png"]


def test_a_wrong_key_is_refused_with_a_message(web: dict[str, Any], browser: Any) -> None:
    page = new_page(browser)
    page.goto(web["url"] + "/login")
    page.get_by_label("API key").fill("ocrq_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "the API key is unknown or revoked"
    assert page.context.request.get(web["url"] + "/", max_redirects=0).status == 303


def test_forms_without_their_token_are_refused(web: dict[str, Any], browser: Any, alice_job: Any) -> None:
    page = new_page(browser)
    sign_in(page, web, "alice")
    page.goto(web["url"] + "/submit")
    token = page.locator('input[name="csrf"]').first.get_attribute("value")
    request, url = page.context.request, web["url"]
    missing = request.post(f"{url}/jobs/{alice_job['id']}/cancel", form={"csrf": ""})
    wrong = request.post(f"{url}/logout", form={"csrf": token[:-2] + "xx"})
    foreign = request.post(f"{url}/logout", form={"csrf": token}, headers={"Origin": "http://evil.example"})
    for response in (missing, wrong, foreign):
        assert response.status == 422
        assert "csrf_rejected" in response.text()
    upload = request.post(
        f"{url}/submit/upload",
        multipart={
            "csrf": "forged",
            "engine_tesseract": "on",
            "files": {"name": "a.png", "mimeType": "image/png", "buffer": b"x"},
        },
    )
    assert upload.status == 422 and "csrf_rejected" in upload.text()
    assert not any(web["settings"].api_upload_dir.glob("*/a.png")), "a refused upload must not be kept"
    login = request.post(f"{url}/login", form={"csrf": "guess", "key": web["keys"]["bob"]})
    assert login.status == 422 and "csrf_rejected" in login.text()
    page.goto(url + "/")
    assert page.locator(".who").inner_text() == "alice", "the session survives refused forms"
    assert request.post(f"{url}/logout", form={"csrf": token}, max_redirects=0).status == 303


def test_an_upload_over_the_limit_gets_a_clear_message(web: dict[str, Any], browser: Any) -> None:
    big = web["folder"] / "big.png"
    big.write_bytes(os.urandom(MAX_UPLOAD + 1024))
    page = new_page(browser)
    sign_in(page, web, "alice")
    page.goto(web["url"] + "/submit")
    page.get_by_label("Files (PDF").set_input_files(str(big))
    page.get_by_role("button", name="Start OCR").first.click()
    alert = page.locator("#upload-error")
    assert "this server takes at most 3,145,728 bytes per job" in alert.inner_text()
    assert page.url.endswith("/submit")
    plain = new_page(browser, java_script_enabled=False)  # the server's own answer, no script to help
    sign_in(plain, web, "alice")
    plain.goto(web["url"] + "/submit")
    plain.get_by_label("Files (PDF").set_input_files(str(big))
    plain.get_by_role("button", name="Start OCR").first.click()
    assert "the upload exceeds 3,145,728 bytes" in plain.locator("main").inner_text()
    plain.goto(web["url"] + "/")
    assert plain.locator("h1").inner_text() == "Jobs", "the server goes on after refusing"


def test_a_phone_wide_screen_keeps_everything_inside(
    web: dict[str, Any], browser: Any, alice_job: Any
) -> None:
    page = new_page(browser, width=375, height=812, is_mobile=True, has_touch=True)
    sign_in(page, web, "alice")
    document = alice_job["documents"]["stored-rotated.pdf"]["id"]
    for name, path in (
        ("jobs", "/"),
        ("job", f"/jobs/{alice_job['id']}"),
        ("submit", "/submit"),
        ("page", f"/documents/{document}/pages/1"),
        ("system", "/system"),
    ):
        page.goto(web["url"] + path)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the {name} page is {overflow} px wider than a 375 px screen"
        page.screenshot(path=web["artifacts"] / f"phone-{name}.png", full_page=True)


def test_system_panel_counts_the_last_hour(web: dict[str, Any], browser: Any, alice_job: Any) -> None:
    page = new_page(browser)
    sign_in(page, web, "alice")
    page.get_by_role("link", name="System").click()
    text = page.locator("main").inner_text()
    assert "Mode: embedded" in text
    assert "3 pages in the last hour (your jobs only)" in text
    assert page.locator(".chart rect").count() == 60
    assert "closed" in page.locator(".breaker").first.inner_text()
    page.screenshot(path=web["artifacts"] / "system.png", full_page=True)


def test_every_view_loads_under_its_policy_with_labelled_controls(
    web: dict[str, Any], browser: Any, alice_job: Any
) -> None:
    page = new_page(browser)
    complaints: list[str] = []
    page.on("console", lambda message: complaints.append(message.text) if message.type == "error" else None)
    sign_in(page, web, "alice")
    document = alice_job["documents"]["scan.png"]["id"]
    for path in ("/", "/submit", f"/jobs/{alice_job['id']}", f"/documents/{document}/pages/1", "/system"):
        page.goto(web["url"] + path)
        page.wait_for_load_state("networkidle")
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
                .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                               && !(e.textContent || '').trim())
                .map((e) => e.outerHTML)"""
        )
        assert unlabelled == [], f"{path}: controls without a label: {unlabelled}"
    assert complaints == [], "the browser refused something (CSP) or failed to load it"


def test_the_page_keeps_a_strict_policy(web: dict[str, Any], browser: Any, alice_job: Any) -> None:
    page = new_page(browser)
    sign_in(page, web, "alice")
    response = page.goto(web["url"] + f"/jobs/{alice_job['id']}")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "sha256" not in policy and "unsafe" not in policy
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["ocrq_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert web["keys"]["alice"] not in session["value"], "the cookie must not carry the key"
