"""The static site and the report's files: content, escaping, links, orphan removal (no browser;
tests/test_leaderboard/test_site_browser.py drives Chromium)."""
import json
import re
import sys

import pytest

from leaderboard.data import load_results
from leaderboard.report import make_leaderboard
from leaderboard.site import render_site, slug

from .records import ResultStore, build_results, images, put
from .site_check import broken_links, no_network

SCRIPT = '<script>alert(1)</script>'


@pytest.fixture(scope='module')
def board(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('site')
    build_results(tmp / 'results')
    written = make_leaderboard(tmp / 'results', tmp / 'out', papers=[])
    return tmp, written


def read(board, rel):
    return (board[0] / 'out' / 'site' / rel).read_text(encoding='utf-8')


def test_pages_exist_and_links_resolve(board):
    tmp, written = board
    site = tmp / 'out' / 'site'
    rel = {p.relative_to(site).as_posix() for p in written['site']}
    assert rel == {'index.html', 'suites/s.html', 'suites/t.html', 'models/index.html', 'models/alpha.html',
                   'models/beta.html', 'models/solo.html', 'transfer.html', 'papers/index.html',
                   'assets/site.css', 'assets/site.js'}
    assert broken_links(site) == []
    assert no_network(site) == []


def test_index_states_source_units_rule_flags_and_citation(board):
    html = read(board, 'index.html')
    tmp = board[0]
    assert f'<code class="results-dir">{tmp / "results"}</code>' in html        # the results folder
    assert 'Values on these pages are in %' in html and 'the CSV files hold fractions' in html
    assert 'ranked by robust mIoU' in html and 'then by the mean IoU ratio' in html
    assert 'toy_city, val split' in html and 'toy-val-0001' not in html.split('<main>')[1].split('Suite')[0]
    assert 'id="flag-transfer_stronger"' in html and 'id="flag-iterative_weaker"' in html
    assert '@misc{segbench' in html and '@inproceedings{arnab2018robustness' in html
    assert 'tools/run_benchmark.py benchmark/suites/s.py' in html and 'tools/make_leaderboard.py' in html


def test_ranking_table_rows_follow_the_summary_table(board):
    tmp, written = board
    html = read(board, 'index.html')
    table = html.split('id="table-s"')[1].split('</table>')[0]
    rows = re.findall(r'<tr data-model="([^"]+)"', table)
    assert rows == list(written['tables'][('s', 'toy-val-0001')].model) == ['alpha', 'beta']
    # alpha: flagged (transfer from beta stronger than white-box FGSM), ranked and marked
    assert 'data-model="alpha" data-search' in table and 'class="unreliable"' in table
    assert 'transfer stronger than white-box' in table
    # the parameters from the record's model_info, the interval under each value
    assert '1.23 M' in table and 'class="ci"' in table
    # PGD variants in numeric order: 20 steps before 100
    assert table.index('PGD (num_steps=20) ε=8') < table.index('PGD (num_steps=100) ε=8')
    # one column per ε of the grid, the reference ε shown, the others hidden until chosen
    assert re.search(r'<th data-type="num" class="eps-col" data-eps="8" title', table)
    assert re.search(r'<th data-type="num" class="eps-col" data-eps="4" hidden', table)


def test_model_page_has_every_cell_with_its_provenance(board):
    html = read(board, 'models/alpha.html')
    cells = html.split('<table class="cells sortable">')[1].split('</table>')[0]
    assert cells.count('<tr>') == 1 + 6          # header + clean, FGSM ×2, PGD ×2, transfer
    assert cells.count('>(white-box)</td>') == 4                 # FGSM ×2, PGD ×2
    assert '>beta<' in cells                                       # the transfer cell's source
    assert 'title="' + 'e' * 64 + '"' in cells                     # checkpoint sha256, in full
    assert 'title="' + 'f' * 64 + '"' in cells                     # config hash
    assert 'title="' + 'c0ffee' * 6 + 'beef"' in cells             # commit
    assert 's/alpha/fgsm_eps8_' in cells                           # the record
    assert re.search(r'<td class="num" data-v="[0-9.]+">[0-9.]+<span class="ci">\[[0-9.]+, [0-9.]+\]</span>', cells)
    per_class = html.split('Per-class IoU')[1]
    assert '<th>road</th><th>car</th>' in per_class
    assert 'transfer stronger than white-box' in html and 'potentially unreliable' in html
    assert '<svg' in html and 'data-model="alpha::FGSM"' in html    # its chart, one line per attack


def test_suite_and_transfer_pages(board):
    suite = read(board, 'suites/s.html')
    assert suite.count('<figure class="chart">') == 1        # FGSM has an ε grid, PGD one ε
    assert 'href="../../s.csv"' in suite and 'href="../../s_per_class_iou.csv"' in suite
    transfer = read(board, 'transfer.html')
    block = transfer.split('IoU ratio (%):')[1].split('</table>')[0]
    assert block.count('†') == 2                               # the white-box diagonal
    assert re.findall(r'<strong>([0-9.]+)</strong>', block) == ['3.5']     # alpha from beta: mIoU 8/232 ÷ 119/121


def test_readme_and_csv_units(board):
    tmp, written = board
    readme = written['readme'].read_text()
    assert f'from the records under `{tmp / "results"}`' in readme
    assert 'the CSV files hold fractions' in readme and '## How to cite' in readme
    assert readme.index('PGD (num_steps=20)') < readme.index('PGD (num_steps=100)')
    import pandas as pd
    cells = pd.read_csv(tmp / 'out' / 's.csv')
    assert {'miou_ci_low', 'miou_ci_high', 'iou_ratio_ci_low', 'iou_ratio_ci_high'} <= set(cells.columns)
    assert cells.miou.between(0, 1).all() and not any(c.startswith('_') for c in cells.columns)
    per_class = pd.read_csv(tmp / 'out' / 's_per_class_iou.csv')
    assert list(per_class.columns[-2:]) == ['road', 'car'] and len(per_class) == len(cells)


def test_record_text_is_escaped_everywhere(tmp_path):
    """Model names, dataset and class names, attack options and paper titles reach the pages as
    text: a model named <script>alert(1)</script> renders as that text, no tag of it."""
    store = ResultStore(tmp_path / 'results')
    ds = {'name': '<b>city</b>', 'split': 'val', 'image_ids_sha256': 'a' * 64}
    names = ('<img src=x onerror=alert(2)>', 'car')
    put(store, 'm', 'clean', 0, images(30, 30), dataset=ds, class_names=names,
        provenance={'model_info': {'architecture': SCRIPT, 'backbone': '"><script>alert(3)</script>'}})
    for eps in (4, 8):
        put(store, 'm', 'pgd', eps, images(10, 10), dataset=ds, class_names=names,
            spec={'type': 'pgd', 'init': '</td><script>alert(4)</script>'}, params={'init': 'x'})
    df = load_results(tmp_path / 'results')
    df['model'] = SCRIPT                                  # record names cannot hold it; the pages must cope
    paper = type('Report', (), {'key': '<k>', 'title': SCRIPT, 'citation': '@x{<script>}',
                                'sections': [('<i>h</i>', df[['model', 'miou']].head(1), [SCRIPT], [SCRIPT])]})
    files = render_site(df, tmp_path / 'site', results_label='<results>', papers=[paper])
    pages = [f for f in files if f.suffix == '.html']
    assert any(f.name == slug(SCRIPT) + '.html' for f in pages) and '/' not in slug(SCRIPT)
    for page in pages:
        html = page.read_text()
        assert not re.search(r'<script>alert|<img src=x|<b>city|<i>h</i>|<k>|<results>', html), page
        assert len(re.findall(r'<script\b', html)) == 1             # only the site's own script
    model_page = next(f for f in pages if f.name == slug(SCRIPT) + '.html').read_text()
    assert '&lt;script&gt;alert(1)&lt;/script&gt;' in model_page
    assert '&lt;img src=x onerror=alert(2)&gt;' in model_page
    assert '&lt;b&gt;city&lt;/b&gt;, val split' in model_page
    assert broken_links(tmp_path / 'site') == []


def test_paper_pages_or_the_no_data_message(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / 'results')
    put(store, 'm', 'clean', 0, images(30, 30))
    put(store, 'm', 'fgsm', 8, images(10, 10))
    df = load_results(tmp_path / 'results')
    import leaderboard
    monkeypatch.setitem(sys.modules, 'leaderboard.papers', None)      # not there: ImportError
    monkeypatch.delattr(leaderboard, 'papers', raising=False)
    render_site(df, tmp_path / 'a', results_label='results/')
    assert 'No paper data yet' in (tmp_path / 'a' / 'papers' / 'index.html').read_text()
    import pandas as pd
    section = ('Table 1', pd.DataFrame({'model': ['m'], 'ours': [52.25], 'published': ['61.0']}),
               ['our data are synthetic'], ['agrees: the ordering'])
    report = type('Report', (), {'key': 'arnab2018', 'title': 'On the Robustness', 'citation': '@x{y}',
                                 'sections': [section]})
    render_site(df, tmp_path / 'b', results_label='results/', papers=[report])
    page = (tmp_path / 'b' / 'papers' / 'arnab2018.html').read_text()
    assert '<h2>Table 1</h2>' in page and '<td data-v="52.2">52.2</td>' in page
    assert 'agrees: the ordering' in page and 'our data are synthetic' in page
    assert 'href="arnab2018.html"' in (tmp_path / 'b' / 'papers' / 'index.html').read_text()
    assert broken_links(tmp_path / 'b') == []


def test_orphans_of_an_earlier_run_are_removed_and_nothing_else(tmp_path):
    store = build_results(tmp_path / 'results')
    out = tmp_path / 'out'
    first = make_leaderboard(store.root, out, papers=[])
    manifest = json.loads((out / 'manifest.json').read_text())
    assert 't.csv' in manifest['files'] and 'site/models/solo.html' in manifest['files']
    assert first['removed'] == []
    (out / 'papers').mkdir()
    (out / 'papers' / 'arnab2018.md').write_text('written by --paper')
    (out / 'notes.txt').write_text('mine')
    (out / 't_old.png').write_text('not in the manifest: never removed')
    import shutil
    shutil.rmtree(store.root / 't')                          # suite t is gone
    second = make_leaderboard(store.root, out, papers=[])
    removed = {p.relative_to(out.resolve()).as_posix() for p in second['removed']}
    assert removed == {'t.csv', 't_per_class_iou.csv', 't_single_eps.png', 't_single_eps.svg',
                       'site/suites/t.html', 'site/models/solo.html'}
    assert all(not (out / r).exists() for r in removed)
    for kept in ('papers/arnab2018.md', 'notes.txt', 't_old.png', 's.csv', 'site/index.html'):
        assert (out / kept).is_file(), kept
    assert set(json.loads((out / 'manifest.json').read_text())['files']) == {
        p.relative_to(out.resolve()).as_posix() for p in
        [second['readme'], *second['files'], *second['figures'], *second['site']]}
    third = make_leaderboard(store.root, out, papers=[])
    assert third['removed'] == []


def test_manifest_never_removes_files_outside_the_output(tmp_path):
    store = build_results(tmp_path / 'results')
    out = tmp_path / 'out'
    make_leaderboard(store.root, out, papers=[])
    victim = tmp_path / 'victim.txt'
    victim.write_text('x')
    manifest = json.loads((out / 'manifest.json').read_text())
    manifest['files'] += ['../victim.txt', str(victim), 'manifest.json']
    (out / 'manifest.json').write_text(json.dumps(manifest))
    written = make_leaderboard(store.root, out, papers=[])
    assert victim.is_file() and written['removed'] == []


def test_slug():
    assert slug('fcn_r18-w16_synthcity') == 'fcn_r18-w16_synthcity'
    assert slug('a/b') != slug('a_b') and slug('a/b').startswith('a_b-')
    assert slug('..').startswith('_') and not set('<>/') & set(slug('<x>'))
