"""tools/bench_attacks.py: every section on a tiny setting, its figures consistent and exact."""
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tools'))

import bench_attacks  # noqa: E402

TINY = ['--num-images', '1', '--epsilons', '1', '4', '--batch', '1', '--steps', '2', '--repeats', '1',
        '--fit-images', '2', '--fit-steps', '2', '--fit-epochs', '1', '--square-queries', '3']


@pytest.fixture
def threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_every_section_on_one_image(tmp_path, capsys, monkeypatch, threads):
    monkeypatch.setitem(sys.modules, 'torchattacks', None)     # the tool must work without it
    figures = bench_attacks.main([*TINY, '--json', str(tmp_path / 'figures.json')])
    out = capsys.readouterr().out
    assert figures == json.loads((tmp_path / 'figures.json').read_text())

    grid = figures['grid']
    assert grid['cells'] == 4 * 2 and grid['records_identical'] is True
    u, s = grid['unshared'], grid['shared']
    # alone: FGSM and FGSM II one pass per ε, the iterative attacks 2 and 5 steps at ε = 1 and 4
    assert u['gradient_passes_per_image'] == 2 + 2 + 7 + 7 == u['passes_per_image_if_alone']
    assert u['own_passes_per_image_from_records'] == 18
    assert s['passes_per_image_if_alone'] == 18
    assert s['own_passes_per_image_from_records'] == s['gradient_passes_per_image'] < 18

    assert figures['iteration']['ratio'] > 0 and figures['memory']['ifgsm_ratio'] >= 1.0
    assert figures['torchattacks'] == {'skipped': 'torchattacks not installed',
                                       'section_wall_s': figures['torchattacks']['section_wall_s']}
    assert 'torchattacks not installed: skipped' in out

    fitted = figures['fitted']
    assert len(fitted['fits']) == 4
    for fit in fitted['fits']:
        # exactly steps (epochs) × fitting images, plus the fitting split's clean pass when the
        # runner computes it during the fit; the split read once
        assert fit['gradient_images'] == fit['expected_gradient_images'] + fit['clean_pass_images']
        assert fit['clean_pass_images'] in (0, 2) and fit['split_reads'] == 1
    assert [f['expected_gradient_images'] for f in fitted['fits']] == [4, 4, 2, 2]
    metzen = fitted['suites']['benchmark/suites/metzen2017.py']     # 14 fits of 60 steps each
    assert metzen['fits'] == 14 and metzen['gradient_images'] == 14 * 60 * metzen['fit_images']

    square = figures['square']
    assert square['queries'] == {'horizontal': 3, 'vertical': 3} and square['ratio'] > 0
    for line in ('1-2. Arnab grid', '3.   one Iterative FGSM iteration', '4.   peak tensor memory',
                 '6.   fitted attacks', '7.   Square Attack'):
        assert line in out


def test_torchattacks_comparison_when_installed(threads):
    pytest.importorskip('torchattacks')
    fig = bench_attacks.main(['--only', 'torchattacks', '--batch', '1', '--steps', '2', '--repeats', '1'])
    for pair in ('ifgsm_vs_BIM', 'pgd_vs_PGD'):
        # the same sign steps on the same model: when the model sees the same whole grey levels as
        # ours, every pixel agrees; otherwise only the rounding of /255 · 255 can move a few
        assert fig['torchattacks'][pair]['equal_pixels_exact_inputs'] == 1.0
        assert fig['torchattacks'][pair]['equal_pixels'] > 0.9
