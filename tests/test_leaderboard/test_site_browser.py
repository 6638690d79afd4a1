"""The site in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
installed by .ci/run) driven through selenium, pages opened from the file system.

Sorts a column and checks the order, filters and checks which rows are hidden, picks another ε,
highlights a model, opens a model page and checks its content, follows every internal link of
every page, saves a screenshot, and checks that a model named ``<script>alert(1)</script>`` is
shown as text (no alert, no extra script element). Skipped, saying why, without Chromium.
"""
import shutil
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from leaderboard.data import load_results
from leaderboard.report import make_leaderboard
from leaderboard.site import render_site

from .records import build_results
from .site_check import broken_links, no_network, parse

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
DRIVER = shutil.which('chromedriver')
SCRIPT = '<script>alert(1)</script>'

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason='Chromium and its driver are not installed (apt-get install -y chromium chromium-driver, '
           'as .ci/run does)')


@pytest.fixture(scope='module')
def browser():
    webdriver = pytest.importorskip('selenium.webdriver', reason='selenium is not installed (requirements.txt)')
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                '--window-size=1400,1000', '--allow-file-access-from-files'):
        options.add_argument(arg)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('browser')
    build_results(tmp / 'results', third=True)
    make_leaderboard(tmp / 'results', tmp / 'out', papers=[])
    return tmp / 'out' / 'site'


def open_page(driver, path: Path):
    driver.get(path.resolve().as_uri())
    for _ in range(100):       # the script marks the page ready once its handlers are set up
        if driver.execute_script("return document.documentElement.getAttribute('data-ready')") == '1':
            return
        time.sleep(0.05)
    raise AssertionError(f'{path}: the page script did not finish (data-ready never set)')


def rows(driver, table_id):
    return driver.find_elements('css selector', f'#{table_id} tbody tr')


def shown_models(driver, table_id):
    return [r.get_attribute('data-model') for r in rows(driver, table_id) if r.is_displayed()]


def severe_console_messages(driver):
    return [m for m in driver.get_log('browser') if m['level'] == 'SEVERE']


def test_sort_filter_epsilon_highlight(browser, site):
    open_page(browser, site / 'index.html')
    table = 'table-s'
    assert shown_models(browser, table) == ['alpha', 'beta', 'gamma_psp']      # the ranking
    header = browser.find_element('xpath', f"//table[@id='{table}']//th[button='mean IoU ratio']/button")
    header.click()
    ascending = shown_models(browser, table)
    values = [float(r.find_elements('css selector', 'td')[-2].get_attribute('data-v')) for r in rows(browser, table)]
    assert values == sorted(values) and ascending == ['gamma_psp', 'beta', 'alpha']
    header.click()
    assert shown_models(browser, table) == ['alpha', 'beta', 'gamma_psp']
    th = browser.find_element('xpath', f"//table[@id='{table}']//th[button='mean IoU ratio']")
    assert th.get_attribute('aria-sort') == 'descending'
    # model names sort as text, both ways
    by_name = browser.find_element('xpath', f"//table[@id='{table}']//th[button='model']/button")
    by_name.click()
    assert shown_models(browser, table) == ['alpha', 'beta', 'gamma_psp']
    by_name.click()
    assert shown_models(browser, table) == ['gamma_psp', 'beta', 'alpha']

    # filter: one word of the architecture; every other row hidden, the count says so
    box = browser.find_element('css selector', f'input.filter[data-table="{table}"]')
    box.send_keys('pspnet')
    assert shown_models(browser, table) == ['gamma_psp']
    assert [r.is_displayed() for r in rows(browser, table)].count(False) == 2
    count = browser.find_element('css selector', f'.count[data-table="{table}"]')
    assert count.text == '1 of 3 rows'
    box.clear()
    box.send_keys('x')
    box.send_keys('\b')            # an input event with the empty query
    assert len(shown_models(browser, table)) == 3
    flagged = browser.find_element('css selector', f'input.flagged-only[data-table="{table}"]')
    flagged.click()
    assert shown_models(browser, table) == ['alpha']             # transfer stronger than white-box
    flagged.click()

    # ε selector: the IoU ratio columns of ε = 4 instead of 8
    eps8 = browser.find_element('xpath', f"//table[@id='{table}']//th[@data-eps='8'][1]")
    eps4 = browser.find_element('xpath', f"//table[@id='{table}']//th[@data-eps='4'][1]")
    assert eps8.is_displayed() and not eps4.is_displayed()
    from selenium.webdriver.support.ui import Select
    Select(browser.find_element('css selector', f'select.eps-select[data-table="{table}"]')).select_by_value('4')
    assert eps4.is_displayed() and not eps8.is_displayed()
    assert eps4.text == 'FGSM ε=4'

    # highlight a model: its rows and chart lines on the page
    row = rows(browser, table)[1]
    assert row.get_attribute('data-model') == 'beta'
    model = row.get_attribute('data-model')
    row.find_element('css selector', 'button.hl-btn').click()
    assert 'hl' in row.get_attribute('class').split()
    assert 'has-hl' in browser.find_element('tag name', 'body').get_attribute('class').split()
    assert severe_console_messages(browser) == []

    # the suite page: highlighting a model in a chart's legend marks its line
    open_page(browser, site / 'suites' / 's.html')
    legend = browser.find_element('css selector', f'figure.chart button.legend-item[data-model="{model}"]')
    legend.click()
    lines = browser.find_elements('css selector', 'figure.chart g.line')
    marked = [g.get_attribute('data-model') for g in lines if 'hl' in (g.get_attribute('class') or '').split()]
    assert marked == [model] and len(lines) == 3


def test_model_page_links_and_screenshot(browser, site, tmp_path):
    open_page(browser, site / 'index.html')
    browser.find_element('xpath', "//table[@id='table-s']//a[text()='alpha']").click()
    assert browser.current_url.endswith('/models/alpha.html')
    assert browser.find_element('tag name', 'h1').text == 'alpha'
    cells = browser.find_elements('css selector', 'table.cells tbody tr')
    assert len(cells) == 6
    assert 'transfer stronger than white-box' in browser.find_element('css selector', '.flagbox').text
    charts = browser.find_elements('css selector', 'figure.chart svg g.line')
    assert {g.get_attribute('data-model') for g in charts} == {'alpha::FGSM'}

    # every internal link of every page: the target exists (and its id), and the page loads
    pages = sorted(site.rglob('*.html'))
    visited, targets = set(), set()
    for page in pages:
        open_page(browser, page)
        visited.add(page.resolve())
        hrefs = browser.execute_script("return Array.from(document.querySelectorAll('a[href]'), a => a.href)")
        srcs = browser.execute_script(
            "return Array.from(document.querySelectorAll('[src], link[href]'), e => e.src || e.href)")
        for url in hrefs + srcs:
            parts = urlsplit(url)
            assert parts.scheme == 'file', f'{page}: {url} leaves the file system'
            target = Path(unquote(parts.path))
            assert target.is_file(), f'{page}: broken link {url}'
            if parts.fragment and target.suffix == '.html':
                assert unquote(parts.fragment) in parse(target).ids, f'{page}: no #{parts.fragment} in {target}'
            if target.suffix == '.html':
                targets.add(target.resolve())
    for target in sorted(targets - visited):
        open_page(browser, target)          # a download page outside site/ would be HTML too
    assert targets >= {p.resolve() for p in pages} - {(site / 'index.html').resolve()}
    assert severe_console_messages(browser) == []
    assert broken_links(site) == [] and no_network(site) == []

    open_page(browser, site / 'index.html')
    shot = tmp_path / 'index.png'
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 20_000


def test_script_named_model_renders_as_text(browser, site, tmp_path):
    df = load_results(site.parent.parent / 'results')
    df.loc[df.model == 'beta', 'model'] = SCRIPT
    render_site(df, tmp_path / 'site', results_label='results/', papers=[])
    open_page(browser, tmp_path / 'site' / 'index.html')
    from selenium.common.exceptions import NoAlertPresentException
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
    names = [r.find_element('css selector', 'td.model').text for r in rows(browser, 'table-s')]
    assert any(SCRIPT in n for n in names)
    assert browser.execute_script("return document.querySelectorAll('script').length") == 1
    link = browser.find_element('xpath', "//table[@id='table-s']//a[contains(text(), 'alert(1)')]")
    link.click()
    assert browser.find_element('tag name', 'h1').text == SCRIPT
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
