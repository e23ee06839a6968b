"""Hand-made damage for the bad-input corpus: each helper breaks one file of a copied dataset tree in one way."""
import json, shutil
from pathlib import Path
import numpy as np

def copy(src, dst) -> Path:
    "A private copy of a fixture tree (tests damage copies, never the shared fixture)."
    shutil.copytree(src, dst); return Path(dst)

def corrupt(path):       Path(path).write_bytes(b'\x00\x00\x00\x18ftypmp42' + bytes(range(256)) * 8)   # mp4-looking garbage
def zero_length(path):   Path(path).write_bytes(b'')

def truncate_csv(path):
    "Cut a CSV in the middle of a line (as an interrupted copy leaves it)."
    data = Path(path).read_bytes(); cut = data.index(b',', len(data) // 2) + 1
    Path(path).write_bytes(data[:cut])

def keep_rows(path, n, header=False):
    "Keep only the first `n` data rows."
    lines = Path(path).read_text().splitlines(); h = 1 if header else 0
    Path(path).write_text('\n'.join(lines[:h + n]) + '\n')

def drop_column(path, header=False):
    "Remove the last column (wrong channel count)."
    lines = Path(path).read_text().splitlines()
    Path(path).write_text('\n'.join(l.rsplit(',', 1)[0] for l in lines) + '\n')

def nan_run(path, start, n, col=-1, header=False):
    "Blank `n` cells of column `col` from data row `start` (NaN after parsing)."
    lines = Path(path).read_text().splitlines(); h = 1 if header else 0
    for i in range(h + start, h + start + n):
        f = lines[i].split(','); f[col] = ''; lines[i] = ','.join(f)
    Path(path).write_text('\n'.join(lines) + '\n')

def swap_rows(path, i, j, header=False):
    "Swap two data rows (their timestamps then go backwards)."
    lines = Path(path).read_text().splitlines(); h = 1 if header else 0
    lines[h + i], lines[h + j] = lines[h + j], lines[h + i]
    Path(path).write_text('\n'.join(lines) + '\n')

def edit_json(path, fn):
    "Apply `fn(obj)` to a JSON file in place."
    obj = json.loads(Path(path).read_text()); fn(obj); Path(path).write_text(json.dumps(obj))
