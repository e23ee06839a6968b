"""The README's set-up and JupyterLab commands: what they would run (`make -n`), without running them."""
import os, pathlib, subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]

def dry(target, **env):
    "The commands `make TARGET` would run, as text."
    r = subprocess.run(['make', '-n', target], cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    return r.stdout

def test_setup_touches_nothing_outside_the_project():
    cmds = dry('setup')
    assert '.venv' in cmds and 'torch==2.13.0' in cmds
    for system in ('apt-get', 'sudo', 'brew', 'chromium'): assert system not in cmds, system

def test_browser_is_its_own_target():
    assert 'apt-get install' in dry('browser') or 'chromium' in dry('browser')

def test_lab_allows_root_only_for_root():
    cmds = dry('lab')
    assert 'jupyter lab --notebook-dir=nbs' in cmds
    # the --allow-root switch is decided by the shell at run time from `id -u`
    assert '--allow-root' in cmds and 'id -u' in cmds
    uid = subprocess.run(['sh', '-c', 'id -u'], capture_output=True, text=True).stdout.strip()
    line = [l for l in cmds.splitlines() if 'jupyter lab' in l][0].replace('$$', '$')
    expanded = subprocess.run(['sh', '-c', 'echo ' + line.split('jupyter lab', 1)[1]], capture_output=True, text=True).stdout
    assert ('--allow-root' in expanded) == (uid == '0')

def test_notebook_progress_bars_have_their_widgets():
    from tqdm.notebook import IProgress   # None without ipywidgets: tqdm then prints "IProgress not found"
    assert IProgress is not None
