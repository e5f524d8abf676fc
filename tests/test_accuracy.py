"""The default experiment, exactly as the README's main command runs it, reaches >= 97% test accuracy."""
from jaxdl.config import load_config_file
from jaxdl.train.loop import fit
from conftest import ROOT


def test_default_experiment_reaches_97_percent_on_digits(tmp_path):
    config = load_config_file(str(ROOT / 'jaxdl' / 'experiments' / 'digits_cnn.py'))
    result = fit(config, tmp_path / 'digits_cnn', show_progress=False)
    test = result.summary['test']
    assert test['count'] == 359
    assert test['accuracy'] >= 0.97, test
    assert result.summary['selected_step'] == result.summary['best_step']  # model chosen on validation
