"""The README's promises: the research script runs as printed (on 2 CPU devices), and it opens with the two
commands."""
import re
import sys

from conftest import ROOT, run


def readme_script() -> str:
    text = (ROOT / 'README.md').read_text()
    block = re.search(r'<!-- research-script -->\s*```python\n(.*?)```\s*<!-- /research-script -->', text, re.S)
    assert block, 'README has no research script block'
    return block.group(1)


def test_research_script_pmaps_the_pure_step(tmp_path):
    script = tmp_path / 'research.py'
    script.write_text(readme_script())
    result = run([sys.executable, str(script)], devices=2, cwd=tmp_path)
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
