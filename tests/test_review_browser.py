"""The review page driven in headless Chromium: assign by click and by key, split, save, continue."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from roadparse.artifacts import read_merge_map
from roadparse.config import load_settings
from roadparse.io.labels import read_label_png
from roadparse.merge_split import Split
from roadparse.review.server import ReviewServer
from roadparse.review.session import ReviewSession
from roadparse.stages import cluster, pseudolabel
from test_pseudolabel import SETTINGS, build_workspace

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no chromium + chromedriver (Debian: apt-get install chromium chromium-driver; .ci/run does)",
)


@pytest.fixture()
def browser():  # noqa: ANN201
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--disable-background-networking"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(10)
    yield driver
    driver.quit()


def _wait(driver, condition, seconds: float = 20.0):  # noqa: ANN001, ANN202
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(lambda d: condition(d))


def test_review_page_assign_split_save_then_pseudolabel(tmp_path: Path, browser) -> None:  # noqa: ANN001
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    workspace, labels_dir = build_workspace(tmp_path)
    settings = load_settings(overrides=SETTINGS)
    cluster.run(workspace, settings, labels_dir=labels_dir)
    suggested = read_merge_map(workspace.root / "cluster" / "merge_map.suggested.yaml")
    ids = {name: cluster_id for cluster_id, name in suggested.items()}
    server = ReviewServer(ReviewSession(workspace, settings), port=0)
    server.start()
    try:
        browser.get(server.url.split("?")[0])
        assert "403" in browser.page_source or "Forbidden" in browser.page_source
        browser.get(server.url)
        _wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        rows = browser.find_elements(By.CSS_SELECTOR, "#clusters > .row")
        assert [r.get_attribute("id") for r in rows][0] == f"cluster-{ids['white_marking']}"  # largest first
        # the suggestion is pre-selected and marked as one
        marked = browser.find_elements(By.CSS_SELECTOR, f"#cluster-{ids['road']} .cls.on.suggested")
        assert [b.get_attribute("data-cls") for b in marked] == ["road"]
        # the labels show no cone (nor yellow, rail, sealing): the page says no cluster is suggested as one
        shown = browser.find_element(By.ID, "message").text
        assert "The suggested map names no cluster as" in shown and "traffic_cone: the naming labels show no" in shown

        # by click: road; by key: 7 (other) on the focused row
        browser.find_element(By.CSS_SELECTOR, f"#cluster-{ids['road']} .cls[data-cls='road']").click()
        browser.find_element(By.CSS_SELECTOR, f"#cluster-{ids['other']} .meta").click()
        ActionChains(browser).send_keys("7").perform()
        _wait(browser, lambda d: "other" in d.find_element(By.CSS_SELECTOR, f"#cluster-{ids['other']} .choice").text)

        # split the marking cluster in two; part 1 by key, part 2 by click
        marking = f"#cluster-{ids['white_marking']}"
        Select(browser.find_element(By.CSS_SELECTOR, f"{marking} .splitter select")).select_by_value("2")
        browser.find_element(By.CSS_SELECTOR, f"{marking} .splitter button").click()
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, f"{marking} .part")) == 2)
        assert "focused" in browser.find_element(By.ID, f"cluster-{ids['white_marking']}-part-0").get_attribute("class")
        ActionChains(browser).send_keys("2").perform()
        part2 = f"#cluster-{ids['white_marking']}-part-1"
        browser.find_element(By.CSS_SELECTOR, f"{part2} .cls[data-cls='white_marking']").click()

        # members: hover shows the tile; the toggle switches to the encoder's crop
        member = browser.find_element(By.CSS_SELECTOR, f"{marking} .thumbs img")
        ActionChains(browser).move_to_element(member).perform()
        _wait(browser, lambda d: "/api/tile/" in (d.find_element(By.ID, "tile-view").get_attribute("src") or ""))
        _wait(browser, lambda d: d.execute_script("return document.getElementById('tile-view').naturalWidth") > 0)
        browser.find_element(By.ID, "view-crop").click()
        assert "view=crop" in member.get_attribute("src")
        _wait(browser, lambda d: "0.0 % unlabelled" in d.find_element(By.ID, "unlabelled").text)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#preview img")) == 3

        browser.find_element(By.ID, "save").click()
        _wait(browser, lambda d: "Saved" in d.find_element(By.ID, "message").text)
        assert "roadparse pseudolabel" in browser.find_element(By.ID, "message").text
        if os.environ.get("ROADPARSE_SCREENSHOTS"):
            browser.save_screenshot(os.path.join(os.environ["ROADPARSE_SCREENSHOTS"], "review-tiny.png"))
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "403" not in e["message"]]
        assert not errors, errors

        # reopening restores the saved choices, split included
        browser.refresh()
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, f"{marking} .part .thumbs img")) > 0)
        assert "saved" in browser.find_element(By.CSS_SELECTOR, f"#cluster-{ids['other']} .choice").text
    finally:
        server.shutdown()

    merge_map = read_merge_map(workspace.root / "merge_map.yaml", 3)
    assert merge_map[ids["road"]] == "road" and merge_map[ids["other"]] == "other"
    split = merge_map[ids["white_marking"]]
    assert isinstance(split, Split) and split.parts == ("white_marking", "white_marking")
    pseudolabel.run(workspace, settings)  # continues from the saved map
    for f in range(3):
        np.testing.assert_array_equal(
            read_label_png(workspace.root / "pseudolabel" / "labels" / f"frame{f}_t0.png"),
            read_label_png(labels_dir / f"frame{f}.png"),
        )


def test_review_page_shows_a_suggested_split_and_saves_it(tmp_path: Path, browser) -> None:  # noqa: ANN001
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from test_auto_split import MIXED, clustered_with_earlier_split

    workspace, _, mixed = clustered_with_earlier_split(tmp_path)  # a split an earlier version suggested
    settings = load_settings(overrides=MIXED)
    server = ReviewServer(ReviewSession(workspace, settings), port=0)
    server.start()
    try:
        browser.get(server.url)
        row = f"#cluster-{mixed}"
        # the split is the cluster's suggestion: its parts pre-filled, marked as suggested, members fetched
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, f"{row} .part .thumbs img")) > 0)
        choice = browser.find_element(By.CSS_SELECTOR, f"{row} .choice").text
        assert "split into 2" in choice and "suggested" in choice
        titles = [p.text for p in browser.find_elements(By.CSS_SELECTOR, f"{row} .ptitle")]
        assert titles == ["part 1 · 9 masks · white marking", "part 2 · 3 masks · other"]
        marked = [b.get_attribute("data-cls") for b in browser.find_elements(By.CSS_SELECTOR, f"{row} .part .cls.on.suggested")]
        assert marked == ["white_marking", "other"]
        # Enter accepts the focused part's suggestion
        browser.find_element(By.ID, f"cluster-{mixed}-part-0").click()
        ActionChains(browser).send_keys("\n").perform()
        on = f"#cluster-{mixed}-part-0 .cls.on"  # (find_elements of nothing would wait the implicit 10 s)
        _wait(browser, lambda d: "suggested" not in d.find_element(By.CSS_SELECTOR, on).get_attribute("class"))
        browser.find_element(By.ID, "save").click()
        _wait(browser, lambda d: "Saved" in d.find_element(By.ID, "message").text)
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        server.shutdown()
    saved = read_merge_map(workspace.root / "merge_map.yaml", 2)
    assert saved[mixed] == Split(parts=("white_marking", "other"), seed=0, sizes=(9, 3))
