"""The web dashboard in a real headless Chromium (Debian's chromium + chromium-driver, driven
by Selenium; nothing downloads a browser) against a running demo (`migw run --demo` in a
subprocess): log in, see the demo's devices (and one that joins after the page loaded),
watch a value change without reloading, toggle
the relay and see its state follow, press permit-join and see the countdown, open a
device's chart, and a wrong token gets the login page back (issue 17). On failure, a
screenshot of the page goes to the test's directory."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.state = tmp / "state"
        self.base = f"http://127.0.0.1:{self.port}"
        args = ["--state-dir", str(self.state), "--api-port", str(self.port)]
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "migw"), *args, "run", "--demo", "--ble-devices", "3"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.base + "/api/v1/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.2)
        self.token = (self.state / "api-token").read_text().strip()

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    d = Demo(tmp_path)
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), (
        "Debian's chromium and chromium-driver are needed (tools/system-deps.sh)"
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager never downloads anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The browser, with a screenshot into the test's directory when a step fails."""

    def __init__(self, driver: Any, out: Path) -> None:
        self.driver = driver
        self.out = out

    def until(self, what: str, cond: Callable[[], Any], timeout: float = WAIT_S) -> Any:
        from selenium.common.exceptions import WebDriverException

        deadline = time.monotonic() + timeout
        while True:
            try:
                got = cond()
            except WebDriverException:
                got = None
            if got:
                return got
            if time.monotonic() > deadline:
                shot = self.out / f"failed-{what.replace(' ', '-')}.png"
                self.driver.save_screenshot(str(shot))
                pytest.fail(f"{what}: not seen in {timeout:g} s (screenshot {shot})")
            time.sleep(0.1)

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def login(self, token: str) -> None:
        field = self.until("login form", lambda: self.css("#token"))
        field.clear()
        field.send_keys(token)
        self.css("#login button[type=submit]").click()


def test_dashboard_in_a_real_browser(demo: Demo, browser: Any, tmp_path: Path) -> None:
    page = Page(browser, tmp_path)
    browser.get(demo.base + "/")

    # a wrong token gets the login page back, with the reason
    page.login("not-the-token")
    error = page.until("login error", lambda: page.css("#login-error"))
    assert "refused" in error.text
    assert page.css("#token").is_displayed()
    assert browser.execute_script("return localStorage.getItem('migw.token')") is None

    # log in: every device of the demo is listed
    page.login(demo.token)
    page.until("devices table", lambda: page.all("#devices tbody tr"))
    want = {d["id"] for d in demo.get("/api/v1/devices")["devices"]}
    page.until(
        "every demo device",
        lambda: want <= {r.get_attribute("data-id") for r in page.all("#devices tbody tr")},
    )
    assert "token" not in browser.current_url.lower()

    # a value changes without a reload: the page's own marker survives the change
    browser.execute_script("window.__noReload = 1")
    sel = '#devices [data-device^="ble-"][data-metric="temperature"]'
    first = page.until("a BLE temperature", lambda: page.all(sel))[0]
    device = first.get_attribute("data-device")
    seq = int(first.get_attribute("data-seq"))
    cell = f'#devices [data-device="{device}"][data-metric="temperature"]'
    page.until("a live temperature", lambda: int(page.css(cell).get_attribute("data-seq")) > seq)
    assert browser.execute_script("return window.__noReload") == 1
    assert page.css("#live").text == "live"

    # the relay: toggle it and watch its state follow
    browser.get(demo.base + "/#/device/gpio-hall-relay")
    switch = '#values [data-metric="switch"]'
    before = page.until("relay state", lambda: page.css(switch).text)
    page.css("#cmd-toggle").click()
    page.until("relay toggled", lambda: page.css(switch).text not in ("", before))
    after = page.css(switch).text
    assert {before, after} == {"switch on", "switch off"}
    api_value = demo.get("/api/v1/devices/gpio-hall-relay")["state"]["switch"]["value"]
    assert after == ("switch on" if api_value else "switch off")
    assert "toggle: ok" in page.css("#command-result").text

    # a button event appears on its device page as it happens (the demo presses it)
    browser.get(demo.base + "/#/device/gpio-hall-button")
    page.until("the button's events", lambda: page.all("#events li"), timeout=60)
    assert "button: " in page.css("#events li").text

    # a device's history chart
    browser.get(f"{demo.base}/#/device/{device}")
    chart = '#charts figure[data-metric="temperature"] svg'
    page.until("a temperature chart", lambda: page.all(chart))
    points = int(page.css(chart).get_attribute("data-points"))
    assert points >= 1
    assert page.all(f"{chart} polyline")

    # permit join with a countdown
    browser.get(demo.base + "/#/radios")
    page.until("radios", lambda: page.all("#radios tbody tr"))
    uplink = page.css("#uplink").text
    assert uplink.startswith("Broker: disabled. Outbox: ")
    # the outbox figures follow without a reload (the demo keeps adding to it)
    page.until("the outbox refreshed", lambda: page.css("#uplink").text != uplink)
    page.css("#permit-join").click()
    countdown = page.until(
        "a countdown", lambda: page.css("#permit-countdown").text.startswith("open for")
    )
    assert countdown
    first_left = int(page.css("#permit-countdown").text.split()[-2])
    page.until(
        "the countdown going down",
        lambda: int(page.css("#permit-countdown").text.split()[-2]) < first_left,
    )

    # automations: listed, disabled and enabled again, with the last trace
    browser.get(demo.base + "/#/automations")
    row = '#automations tr[data-automation="door-hall-light"]'
    page.until("the demo's automations", lambda: page.all(row))
    page.css(f"{row} .toggle-automation").click()
    page.until("disabled", lambda: "disabled" in page.css(row).text)
    listed = {a["id"]: a for a in demo.get("/api/v1/automations")["automations"]}
    assert listed["door-hall-light"]["enabled"] is False
    page.css(f"{row} .toggle-automation").click()
    page.until("enabled again", lambda: "enabled" in page.css(f"{row} .badge").text.split())
    page.css(f"{row} .show-trace").click()
    page.until("a trace", lambda: page.css(f"{row} .trace-cell").text)

    # no script error on any page (a refused token's 401 is the only expected console line)
    errors = [
        e["message"]
        for e in browser.get_log("browser")
        if e["level"] == "SEVERE" and "401" not in e["message"]
    ]
    assert errors == []

    # logging out forgets the token
    page.css("#logout").click()
    page.until("login page", lambda: page.css("#token"))
    assert browser.execute_script("return localStorage.getItem('migw.token')") is None


def test_a_device_that_joins_after_the_page_loaded_appears_without_a_reload(
    demo: Demo, browser: Any, tmp_path: Path
) -> None:
    page = Page(browser, tmp_path)

    def ble_ids() -> set[str]:
        return {d["id"] for d in demo.get("/api/v1/devices?transport=ble")["devices"]}

    # one of the demo's BLE sensors is kept out (forgotten and ignored) before the page loads
    device = min(page.until("a BLE device in the demo", ble_ids))
    assert demo.call("DELETE", f"/api/v1/devices/{device}?ignore=true")["ignored"] is True
    assert device not in ble_ids()
    browser.get(demo.base + "/")
    page.login(demo.token)
    page.until("live", lambda: page.css("#live").text == "live")
    rows = "#devices tbody tr"
    page.until("devices table", lambda: page.all(rows))
    assert device not in {r.get_attribute("data-id") for r in page.all(rows)}
    browser.execute_script("window.__noReload = 1")

    # let in again (as `migw allow` does from another client): it joins at its next advert
    # and the open page adds its row, with its live values, without a reload
    demo.call("POST", "/api/v1/ble/allow", {"id": device})
    page.until("the device back in the API", lambda: device in ble_ids())
    row = f'#devices tbody tr[data-id="{device}"]'
    page.until("the device that joined", lambda: page.all(row))
    page.until("its values", lambda: page.all(f'{row} [data-device="{device}"][data-metric]'))
    assert browser.execute_script("return window.__noReload") == 1
    ids = [r.get_attribute("data-id") for r in page.all(rows)]
    assert ids == sorted(ids)  # in its place, as a reload would list it
    assert len(ids) == len(set(ids))
    assert page.css("#device-count").text == f"({len(ids)})"
    # no failed call or script error on the way (ids that are no device are not asked for)
    assert [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_a_one_time_login_link(demo: Demo, browser: Any, tmp_path: Path) -> None:
    args = ["--state-dir", str(demo.state), "--api-port", str(demo.port), "token", "--link"]
    link = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "migw"), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert link.startswith(f"http://127.0.0.1:{demo.port}/#code=")
    assert demo.token not in link
    page = Page(browser, tmp_path)
    browser.get(link)
    page.until("devices after the link", lambda: page.all("#devices tbody tr"))
    assert "code=" not in browser.current_url
    assert browser.execute_script("return localStorage.getItem('migw.token')") == demo.token
    # used once: a second browser session with the same link gets the login page back
    browser.execute_script("localStorage.clear()")
    browser.get("about:blank")
    browser.get(link)
    error = page.until("a used-up link", lambda: page.css("#login-error"))
    assert "used up or expired" in error.text


def test_a_phone_screen_and_a_keyboard(demo: Demo, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.keys import Keys

    browser.set_window_size(390, 844)  # a phone
    page = Page(browser, tmp_path)
    browser.get(demo.base + "/")
    field = page.until("login form", lambda: page.css("#token"))
    assert browser.switch_to.active_element == field  # focused: type at once
    field.send_keys(demo.token, Keys.RETURN)  # no mouse
    page.until("devices", lambda: page.all("#devices tbody tr"))
    wide = browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert wide <= 0, "the devices page scrolls sideways on a phone"
    # stale is said in words, not only by colour
    assert all("(stale)" in r.text for r in page.all("#devices tbody tr.stale"))


def test_the_page_needs_no_token_but_data_does_and_the_csp_is_strict(demo: Demo) -> None:
    with urllib.request.urlopen(demo.base + "/", timeout=10) as resp:
        csp = resp.headers["Content-Security-Policy"]
        html = resp.read().decode()
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "<script>" not in html
    assert 'src="/static/app.js?v=' in html
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(demo.base + "/api/v1/devices", timeout=10)
    assert err.value.code == 401
    err.value.close()
    with urllib.request.urlopen(demo.base + "/static/app.js", timeout=10) as resp:
        assert "immutable" in resp.headers["Cache-Control"]
        assert demo.token not in resp.read().decode()


def test_login_codes_are_good_once_and_expire() -> None:
    from gateway.api.web import LOGIN_CODE_TTL_S, LOGIN_CODES_MAX, LoginCodes

    now = [1000.0]
    codes = LoginCodes(clock=lambda: now[0])
    a = codes.issue()
    assert codes.redeem(a) and not codes.redeem(a)
    b = codes.issue()
    now[0] += LOGIN_CODE_TTL_S + 1
    assert not codes.redeem(b)
    issued = [codes.issue() for _ in range(LOGIN_CODES_MAX + 1)]
    assert not codes.redeem(issued[0])  # the oldest made room
    assert codes.redeem(issued[-1])
    assert not codes.redeem("")
