"""The viewer page end to end, in headless Chromium driven by Selenium.

Needs Debian's ``chromium`` and ``chromium-driver`` and ``pip install
selenium``; the tests skip, saying which is missing, when they are not there.
Screenshots go to the test's tmp dir, and the grid's also to
``/tmp/viewer_screenshot.png`` for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensorhouse as th
from tensorhouse.demo import build
from tensorhouse.synth import CLASSES

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = Path("/tmp/viewer_screenshot.png")
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'

if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "headless browser tests need Debian's chromium and chromium-driver "
        "(apt-get install -y chromium chromium-driver)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="browser tests need selenium (pip install selenium)"
)
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo dataset (two appends), tagged, plus one row whose caption is an XSS attempt."""
    path = str(tmp_path_factory.mktemp("viewer-e2e") / "demo")
    ds = build(path, rows=60)
    ds.tag("half", 1)
    img = np.full((64, 96, 3), 200, np.uint8)
    ds.append(
        {
            "image": [img],
            "label": [1],
            "boxes": [np.array([[10, 10, 40, 50]], np.float32)],
            "embedding": np.zeros((1, 64), np.float32),
            "caption": [XSS],
            "score": np.ones(1, np.float32),
        },
        message="one hostile caption",
    )
    return path


@pytest.fixture(scope="module")
def server(dataset: str) -> Iterator[Any]:
    srv = th.serve(dataset, port=0, block=False)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1440,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(flag)
    os.environ.setdefault("SE_AVOID_STATS", "true")
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield drv
    finally:
        drv.quit()


def wait(drv: Any, cond: Callable[[Any], Any], what: str, timeout: float = 15) -> Any:
    try:
        return WebDriverWait(drv, timeout, poll_frequency=0.05).until(cond)
    except TimeoutException:
        raise AssertionError(
            f"timed out waiting for {what}; page error box: "
            f"{drv.find_element(By.ID, 'error').text!r}"
        ) from None


def load(drv: Any, url: str) -> None:
    drv.get(url)
    wait(
        drv,
        lambda d: d.execute_script("return document.body.dataset.ready === '1'"),
        "the first page",
    )


def run_query(drv: Any, text: str, *, sql: bool = False) -> None:
    drv.find_element(By.ID, "mode-sql" if sql else "mode-where").click()
    box = drv.find_element(By.ID, "sql-input" if sql else "where-input")
    box.clear()
    box.send_keys(text)
    drv.find_element(By.ID, "run-btn").click()


def status(drv: Any) -> str:
    return str(drv.find_element(By.ID, "status").text)


def thumbnails_drawn(drv: Any) -> bool:
    return bool(
        drv.execute_script("""
        const imgs = [...document.querySelectorAll('#grid .thumb img')];
        return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);""")
    )


def test_filter_grid_open_detail_and_screenshot(
    driver: Any, server: Any, dataset: str, tmp_path: Path
) -> None:
    labels = np.asarray(th.open(dataset).take(np.arange(61), columns=["label"])["label"])
    expected = int((labels == 1).sum())
    load(driver, server.url)
    assert len(driver.find_elements(By.CSS_SELECTOR, "#grid .card")) == 48  # one page of 61 rows

    run_query(driver, "label = 1")
    wait(driver, lambda d: status(d).startswith(f"{expected} matching rows"), "the filtered page")
    badges = [b.text for b in driver.find_elements(By.CSS_SELECTOR, "#grid .card .label-badge")]
    assert len(badges) == len(driver.find_elements(By.CSS_SELECTOR, "#grid .card")) == expected
    assert set(badges) == {CLASSES[1]}
    wait(driver, thumbnails_drawn, "the thumbnails")
    assert driver.find_elements(By.CSS_SELECTOR, "#grid .thumb svg.overlay rect.box"), (
        "no boxes drawn"
    )
    assert "version 3" in driver.find_element(By.ID, "dataset-stats").text
    grid_png = tmp_path / "viewer_grid.png"
    driver.save_screenshot(str(grid_png))
    shutil.copyfile(grid_png, SCREENSHOT)

    first = driver.find_element(By.CSS_SELECTOR, "#grid .card")
    rowid = first.get_attribute("data-rowid")
    first.click()
    detail = driver.find_element(By.ID, "detail")
    wait(
        driver,
        lambda d: (
            detail.is_displayed() and d.find_elements(By.CSS_SELECTOR, "#detail-body table.columns")
        ),
        "the detail view",
    )
    names = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#detail-body td.name")]
    assert names == ["image", "label", "boxes", "embedding", "caption", "score"]
    assert f"_rowid {rowid}" in driver.find_element(By.ID, "detail-title").text
    wait(
        driver,
        lambda d: d.execute_script(
            "const i = document.querySelector('#detail-body .thumb img'); return i && i.naturalWidth > 0"
        ),
        "the detail image",
    )
    driver.save_screenshot(str(tmp_path / "viewer_detail.png"))
    shutil.copyfile(tmp_path / "viewer_detail.png", SCREENSHOT.with_name("viewer_detail.png"))
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wait(driver, lambda d: not detail.is_displayed(), "the detail view to close")


@pytest.mark.parametrize(
    ("sql", "query", "message"),
    [
        (True, "SELECT * FROM read_csv('/etc/passwd')", "disabled by configuration"),
        (
            True,
            "COPY (SELECT 1) TO '/tmp/th_viewer_copy.csv'",
            "only SELECT queries are allowed, not COPY",
        ),
        (True, "ATTACH '/tmp/th_viewer.db'", "only SELECT queries are allowed, not ATTACH"),
        (True, "SELECT _rowid FROM ds; DROP TABLE ds", "only one statement is allowed"),
        (False, "label = 1; DROP TABLE ds", "only one statement is allowed"),
        (False, "no_such_column > 1", "no_such_column"),
        (True, "SELECT label FROM ds", "must return the _rowid column"),
    ],
)
def test_refused_and_bad_queries_show_an_error(
    driver: Any, server: Any, sql: bool, query: str, message: str
) -> None:
    load(driver, server.url)
    run_query(driver, query, sql=sql)
    error = driver.find_element(By.ID, "error")
    wait(
        driver,
        lambda d: error.is_displayed() and message in error.text,
        f"an error saying {message!r}",
    )
    assert not os.path.exists("/tmp/th_viewer_copy.csv")
    run_query(driver, "score >= 0")  # a good query clears it
    wait(driver, lambda d: not error.is_displayed(), "the error to clear")


def test_captions_are_text_not_html(driver: Any, server: Any) -> None:
    load(driver, server.url)
    run_query(driver, "caption LIKE '%onerror%'")
    wait(driver, lambda d: status(d).startswith("1 matching rows"), "the hostile row")
    assert driver.find_element(By.CSS_SELECTOR, "#grid .card .caption").text == XSS
    driver.find_element(By.CSS_SELECTOR, "#grid .card").click()
    wait(
        driver,
        lambda d: XSS in d.find_element(By.ID, "detail-body").text,
        "the caption in the detail view",
    )
    # An injected onerror handler runs when its image fails to load: once every image has
    # finished (loaded or failed), any handler has run. A condition, not a guessed delay.
    wait(
        driver,
        lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)"),
        "every image to finish loading",
    )
    assert driver.execute_script(
        "return window.__xss === undefined && !document.querySelector('img[onerror], "
        "#grid script, #detail script')"
    )


def test_version_selector_and_diff(driver: Any, server: Any, tmp_path: Path) -> None:
    load(driver, server.url)
    Select(driver.find_element(By.ID, "version-select")).select_by_value("1")
    wait(driver, lambda d: status(d).startswith("30 matching rows"), "version 1's rows")
    assert "version 1 of 3" in driver.find_element(By.ID, "dataset-stats").text
    Select(driver.find_element(By.ID, "tag-select")).select_by_value("half")
    wait(
        driver,
        lambda d: "version 1" in d.find_element(By.ID, "dataset-stats").text,
        "the tag's version",
    )
    Select(driver.find_element(By.ID, "version-select")).select_by_value("3")
    wait(driver, lambda d: status(d).startswith("61 matching rows"), "the latest version")
    driver.find_element(By.CSS_SELECTOR, ".tab[data-tab='history-panel']").click()
    driver.find_element(By.CSS_SELECTOR, "#history-panel .diff-btn[data-version='1']").click()
    bar = driver.find_element(By.ID, "compare-bar")
    wait(driver, lambda d: bar.is_displayed() and "added 31" in bar.text, "the diff of v1 and v3")
    assert (
        "removed 0" in bar.text and len(driver.find_elements(By.CSS_SELECTOR, "#grid .card")) == 31
    )
    wait(driver, thumbnails_drawn, "the thumbnails")
    driver.save_screenshot(str(tmp_path / "viewer_diff.png"))
