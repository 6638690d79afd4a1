"""Demo training (tools/demo_training.py): the metafile's clean mIoU is what the committed weights score."""
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / 'tools'
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

from model_zoo.builder import REPO_ROOT  # noqa: E402
from model_zoo.zoo import load_metafile  # noqa: E402

ZOO = load_metafile()


@pytest.mark.parametrize('name', sorted(n for n, e in ZOO.items() if e.demo))
def test_recorded_clean_miou_is_what_the_entry_scores(name):
    """The metafile's clean val mIoU is reproduced by the committed weights under the entry's own config
    (entries sharing one weight file, such as single-scale test variants, score differently)."""
    from demo_training import evaluate_clean_miou
    entry = ZOO[name]
    path = REPO_ROOT / entry.weights
    if not path.is_file():
        pytest.skip(f'{name}: demo weights not trained yet ({entry.weights})')
    recorded = entry.results['clean_miou_val']
    assert evaluate_clean_miou(entry.config, path) == pytest.approx(recorded, abs=1e-3), name


def test_demo_dataset_is_the_demo_suites():
    """The demo models are trained on the dataset the demo suite evaluates them on."""
    from demo_training import DEMO_DATASET
    from mmengine.config import Config
    suite = Config.fromfile(str(REPO_ROOT / 'benchmark' / 'suites' / 'demo.py'))
    assert suite.dataset['type'] == DEMO_DATASET['type']
    assert suite.dataset.get('seed', 0) == DEMO_DATASET['seed']
