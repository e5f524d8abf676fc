"""The README's promises: the research script runs as printed (on 2 CPU devices, with jit over a mesh and with
its shard_map variant), and it opens with the two commands."""
import re
import sys

import pytest

from conftest import ROOT, run


def readme_block(marker: str) -> str:
    text = (ROOT / 'README.md').read_text()
    block = re.search(rf'<!-- {marker} -->\s*```python\n(.*?)```\s*<!-- /{marker} -->', text, re.S)
    assert block, f'README has no {marker} block'
    return block.group(1)


@pytest.mark.parametrize('variant', [pytest.param('jit', marks=pytest.mark.slow), 'shard_map'])
def test_research_script_trains_the_pure_step_over_a_mesh(tmp_path, variant):
    script = readme_block('research-script')
    if variant == 'shard_map':
        line = next(l for l in script.splitlines() if l.startswith('train = '))
        script = script.replace(line, readme_block('research-script-shard_map').strip())
        assert 'shard_map' in script
    (tmp_path / 'research.py').write_text(script)
    result = run([sys.executable, str(tmp_path / 'research.py')], devices=2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    found = re.search(r'test accuracy ([\d.]+) on (\d+) images, (\d+) devices', result.stdout)
    assert found, result.stdout
    assert float(found.group(1)) > 0.9 and found.group(2) == '297' and found.group(3) == '2'


def test_readme_opens_with_the_two_commands():
    text = (ROOT / 'README.md').read_text()
    first_block = re.search(r'```bash\n(.*?)```', text, re.S).group(1)
    commands = [line.split('#')[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ['make train', 'make test']
    assert 'pytest' in (ROOT / 'Makefile').read_text() and 'make test' in (ROOT / '.ci' / 'run').read_text()
