"""Fail when the notebooks and harlib/ are out of sync, or a notebook is not clean.

Runs `nbdev_export` and `nbdev_clean` and compares every file under harlib/ and nbs/ before and after:
anything they change was not committed in its exported / cleaned form. Also checks that README.md is what
nbs/index.ipynb generates. Run from the repository root (`make check`).
"""
import hashlib, pathlib, subprocess, sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent

def snapshot(*globs):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for g in globs for p in sorted(ROOT.glob(g)) if p.is_file()}

def changed(before, after):
    return sorted(str(p.relative_to(ROOT)) for p in set(before) | set(after) if before.get(p) != after.get(p))

def run(tool, globs):
    before = snapshot(*globs)
    r = subprocess.run([str(BIN / tool)], cwd=ROOT, capture_output=True, text=True)
    if r.returncode: sys.exit(f'{tool} failed:\n{r.stdout}\n{r.stderr}')
    return changed(before, snapshot(*globs))

def main():
    bad = 0
    drift = run('nbdev_export', ['harlib/**/*.py'])
    if drift: bad = print('nbdev_export changed these files (export the notebooks and commit):', *drift, sep='\n  ') or 1
    dirty = run('nbdev_clean', ['nbs/**/*.ipynb'])
    if dirty: bad = print('nbdev_clean changed these notebooks (commit them clean):', *dirty, sep='\n  ') or 1
    from harlib.docs import readme_text
    if (ROOT / 'README.md').read_text() != readme_text(ROOT / 'nbs' / 'index.ipynb'):
        bad = print('README.md is not what nbs/index.ipynb generates: run `harlib docs --readme`') or 1
    if not bad: print('check: harlib/ matches the notebooks, notebooks are clean, README.md is current')
    return bad

if __name__ == '__main__': sys.exit(main())
