"""The web UI end to end in a real headless Chromium (Debian's `chromium`, driven by
Playwright's Python API) against a real `medledger node run --fhir-port` subprocess serving
the committed web/dist under /ui/.

One story: the patient allows the hospital node (an ethers-signed transaction through /rpc)
and grants a Hospital B doctor access; the doctor's open page shows the patient and the
record without a reload; the patient's timeline shows the doctor's reads; a break-glass lands
in the auditor's review queue and the auditor marks it; an admin registers a nurse.

Screenshots of the main pages go to $MEDLEDGER_UI_SCREENSHOTS (default: this test's
tmp_path/screenshots); the path is printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_utils import to_checksum_address

from contracts.bindings import MedLedger, Role
from node.fhir import uidemo
from node.fhir.static import DEFAULT_UI_DIR
from node.fhir.uidemo import PASSPHRASE, address_of, key_of
from tests.nodeproc import NodeProcess

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT_MS = 60_000


def hex_address(name: str) -> str:
    return to_checksum_address(address_of(name))


# ------------------------------------------------------------------------------ the node


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    if not (DEFAULT_UI_DIR / "index.html").is_file():
        pytest.fail("web/dist is not built: node web/check-build.mjs --write")
    tmp = tmp_path_factory.mktemp("webui")
    files = uidemo.write_files(tmp / "files")
    node = NodeProcess(datadir=tmp / "node", genesis=files.genesis, key=files.validator,
                       passphrase=files.passphrase)
    node.start(timeout=90)
    try:
        uidemo.register_service_account(node.rpc)  # the node refuses FHIR before this
    finally:
        node.stop()
    node.start("--fhir-port", "0", *files.fhir_args(), timeout=90)
    try:
        base = json.loads((node.datadir / "endpoints.json").read_text())["fhir"]
        refs = uidemo.seed(node.rpc, base)
        yield {"node": node, "base": base, "refs": refs, "files": tmp / "files"}
    finally:
        node.stop()


# ------------------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def browser(devnet: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("MEDLEDGER_UI_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nweb UI screenshots: {path}")
    return path


class Tab:
    """One signed-in browser context; collects page errors and CSP violations."""

    def __init__(self, browser: Any, base: str, *, mobile: bool = False) -> None:
        size = {"width": 390, "height": 1400} if mobile else {"width": 1360, "height": 1100}
        self.context = browser.new_context(viewport=size, is_mobile=mobile,
                                           device_scale_factor=1)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on("console", self._console)
        self.page.goto(f"{base}/ui/")

    def _console(self, message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.errors.append(message.text)

    def sign_in_with_key(self, actor: str) -> None:
        page = self.page
        page.get_by_label("Private key (hex)").fill(key_of(actor).hex())
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("navigation", name="Pages").wait_for()
        page.locator(".live[data-live='live']").wait_for()

    def shot(self, directory: Path, name: str) -> None:
        self.page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


def test_consent_live_update_timeline_break_glass_review(
        devnet: dict[str, Any], browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    base, refs = devnet["base"], devnet["refs"]
    # -- the sign-in page, and the Hospital B doctor's workspace, open before any consent.
    clinician = Tab(browser, base)
    expect(clinician.page.get_by_role("heading", name="Sign in")).to_be_visible()
    clinician.shot(shots, "01-sign-in")
    clinician.sign_in_with_key("doc-b")
    page_c = clinician.page
    expect(page_c.get_by_role("heading", name="Clinician workspace")).to_be_visible()
    expect(page_c.locator("#no-patients")).to_be_visible()

    # -- the patient: allows the hospital node on chain (ethers, /rpc), then grants doc-b.
    patient = Tab(browser, base)
    patient.sign_in_with_key("pat-1")
    page_p = patient.page
    expect(page_p.get_by_role("heading", name="My health records")).to_be_visible()
    records = page_p.get_by_role("region", name="My records")
    expect(records.get_by_role("cell", name="Observation")).to_be_visible()
    expect(records.get_by_role("cell", name="ImagingStudy")).to_be_visible()
    page_p.get_by_role("button", name="Allow the hospital node").click()
    expect(page_p.get_by_text("The hospital node may now record your consent decisions")
           ).to_be_visible()
    grant = page_p.get_by_role("region", name="Grant access")
    grant.get_by_label("Clinician account (0x…)").fill(hex_address("doc-b"))
    grant.get_by_label("Purpose").select_option("TREAT")
    grant.get_by_role("button", name="Grant access").click()
    expect(grant.get_by_text(re.compile(r"Access granted until"))).to_be_visible()
    access = page_p.get_by_role("region", name="Who has access")
    expect(access.locator(f"[data-grantee='{hex_address('doc-b').lower()}']")).to_be_visible()

    # -- the doctor's open page updates without a reload and shows the record.
    url_before = page_c.url
    navigations: list[str] = []
    page_c.on("framenavigated", lambda frame: navigations.append(frame.url))
    patient_button = page_c.locator(f"[data-patient='{refs['pat-1']}']")
    expect(patient_button).to_be_visible()
    assert navigations == [] and page_c.url == url_before  # live update, no reload
    patient_button.click()
    record = page_c.get_by_role("region", name=re.compile("Record of Maria Rivera"))
    expect(record.get_by_text("72 beats/min", exact=True)).to_be_visible()  # value + unit
    expect(record.get_by_text("E11.9", exact=True)).to_be_visible()  # the ICD-10-CM code
    expect(record.locator("dd", has_text="Type 2 diabetes mellitus without complications")
           ).to_be_visible()
    expect(record.get_by_role("heading", name=re.compile("CT chest without contrast"))
           ).to_be_visible()
    expect(record.get_by_role("cell", name="Thoracic structure")).to_be_visible()  # DICOM series
    expect(record.get_by_text("2.25.98765432109876543210", exact=True)).to_be_visible()
    clinician.shot(shots, "03-clinician-record")

    # -- the patient's timeline shows the doctor's reads (live, no reload).
    timeline = page_p.get_by_role("list", name=re.compile("Access and break-glass events"))
    expect(timeline.locator("[data-kind='AccessLogged']").first).to_be_visible()
    expect(timeline.locator("[data-kind='AccessGranted']").first).to_be_visible()
    patient.shot(shots, "02-patient-portal")

    # -- break-glass: mandatory reason and a warning; then the auditor's review queue.
    emergency = page_c.get_by_role("region", name="Emergency access (break-glass)")
    expect(emergency.get_by_text("Warning: emergency access only.")).to_be_visible()
    emergency.get_by_label("Patient (account 0x… or Patient id)").fill(hex_address("pat-2"))
    smash = emergency.get_by_role("button", name="Break the glass")
    emergency.get_by_label(re.compile("I confirm this is an emergency")).check()
    expect(smash).to_be_disabled()  # no reason chosen yet
    emergency.get_by_label("Reason (required)").select_option("life-threatening")
    smash.click()
    expect(emergency.get_by_text(re.compile("Emergency access open for one hour"))
           ).to_be_visible()
    expect(emergency.get_by_role("heading", name=re.compile("Ada Okafor"))).to_be_visible()
    clinician.shot(shots, "04-clinician-break-glass")

    auditor = Tab(browser, base)
    page_a = auditor.page
    page_a.get_by_label("Keystore file (v3 JSON)").check()
    page_a.get_by_label("Keystore file", exact=True).set_input_files(
        str(devnet["files"] / "auditor-a.json"))
    page_a.get_by_label("Keystore password").fill(PASSPHRASE)
    page_a.get_by_role("button", name="Sign in").click()
    expect(page_a.get_by_role("heading", name="Consortium & audit")).to_be_visible()
    queue = page_a.get_by_role("region", name=re.compile("Break-glass review queue"))
    case = queue.locator("li.case.alarm").first
    expect(case).to_contain_text(("0x" + address_of("doc-b").hex())[:8])  # who asked
    expect(case).to_contain_text("life-threatening")
    blocks = page_a.get_by_role("region", name="Latest blocks")
    # Commit seals verified in the browser (signer recovered, header hash rebuilt).
    expect(blocks.get_by_text(re.compile(r"final \(1/1 seals\)")).first).to_be_visible()
    validators = page_a.get_by_role("region", name="Validators")
    expect(validators.locator("td[data-sealed]")).not_to_have_attribute("data-sealed", "0")
    auditor.shot(shots, "05-auditor-queue")
    case.get_by_role("button", name=re.compile("justified$")).first.click()
    expect(queue.get_by_text(re.compile(r"marked justified"))).to_be_visible()
    expect(queue).to_contain_text("No cases awaiting review.")

    # -- pat-2 sees the break-glass and its review in the timeline, on a phone-sized screen.
    phone = Tab(browser, base, mobile=True)
    phone.sign_in_with_key("pat-2")
    events = phone.page.get_by_role("list", name=re.compile("Access and break-glass events"))
    expect(events.locator("[data-kind='BreakGlassOpened']")).to_be_visible()
    expect(events.locator("[data-kind='BreakGlassReviewed']")).to_be_visible()
    width = phone.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the phone layout scrolls sideways ({width}px)"
    phone.shot(shots, "06-patient-mobile")
    phone_doctor = Tab(browser, base, mobile=True)
    phone_doctor.sign_in_with_key("doc-b")
    phone_doctor.page.locator(f"[data-patient='{refs['pat-1']}']").click()
    expect(phone_doctor.page.get_by_text("72 beats/min", exact=True)).to_be_visible()
    width = phone_doctor.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the phone layout scrolls sideways ({width}px)"
    phone_doctor.shot(shots, "06b-clinician-mobile")

    # -- the hospital admin registers a nurse.
    admin = Tab(browser, base)
    admin.sign_in_with_key("admin-a")
    staff = admin.page.get_by_role("region", name="Staff registration")
    staff.get_by_label("Account (0x…)").fill(hex_address("nurse-new"))
    staff.get_by_label("Role").select_option("nurse")
    staff.get_by_label(re.compile("Person identifier")).fill("EMP-4711")
    staff.get_by_role("button", name="Register").click()
    expect(staff.get_by_text(re.compile("registered as nurse"))).to_be_visible()
    admin.shot(shots, "07-admin-staff")
    info = devnet["node"].rpc("eth_call", {
        "to": to_checksum_address(MedLedger().address),
        "data": "0x" + MedLedger().encode("accountInfo", address_of("nurse-new")).hex()},
        "latest")
    assert int(info[2:66], 16) == Role.NURSE  # type: ignore[index]

    for tab in (clinician, patient, auditor, phone, phone_doctor, admin):
        assert tab.errors == [], tab.errors
        tab.context.close()
