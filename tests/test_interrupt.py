"""Stopping `harlib study smoke` with SIGTERM (what `timeout` and a scheduler's time limit send) in its data step and in a
pretraining step: no process it started survives, status.json stays readable, and `--resume` continues the study.
Each test watches every descendant of the study while it runs (kernels, pool workers, torchrun, ranks, data workers)."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import psutil

BIN = Path(sys.executable).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'PYTHONUNBUFFERED': '1',
       'MPLBACKEND': 'Agg'}

def alive(p) -> bool:
    "Is psutil process `p` still running? (A zombie has ended: only its parent has not collected its status.)"
    try: return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess: return False

class Study:
    "`harlib study smoke --out OUT [args]` in a subprocess, with every descendant it had while `wait_for` polled."
    def __init__(self, out, *args):
        self.out, self.log = out, out.parent / f'{out.name}.log'
        with open(self.log, 'a') as f:
            self.p = subprocess.Popen([str(BIN / 'harlib'), 'study', 'smoke', '--out', str(out), *args], stdout=f,
                                      stderr=subprocess.STDOUT, env=ENV, cwd=out.parent)
        self.root, self.seen = psutil.Process(self.p.pid), {}

    def procs(self) -> list:
        try: self.seen.update({(c.pid, c.create_time()): c for c in self.root.children(recursive=True)})
        except psutil.NoSuchProcess: pass
        return [c for c in self.seen.values() if alive(c)]

    def running(self, *words) -> list:
        "The study's live descendants whose command line holds every one of `words`."
        out = []
        for c in self.procs():
            try: cmd = ' '.join(c.cmdline())
            except psutil.Error: continue
            if all(w in cmd for w in words): out.append(c)
        return out

    def wait_for(self, cond, what, timeout=150):
        t0 = time.time()
        while not cond():
            assert self.p.poll() is None, f'the study ended before {what}:\n{self.log.read_text()[-3000:]}'
            assert time.time() - t0 < timeout, f'no {what} after {timeout} s:\n{self.log.read_text()[-3000:]}'
            time.sleep(0.2)

    def stop(self) -> list:
        "SIGTERM the study; after it exits (143), the processes that survive it (none expected), after a short grace."
        self.procs(); self.p.send_signal(signal.SIGTERM)
        assert self.p.wait(90) == 128 + signal.SIGTERM, self.log.read_text()[-3000:]
        t0 = time.time()
        while (left := [c for c in self.seen.values() if alive(c)] + mentioning(self.out)) and time.time() - t0 < 5: time.sleep(0.2)
        return [(c.pid, ' '.join(c.cmdline())[:200]) for c in left]

def mentioning(out) -> list:
    "Live processes anywhere on this machine whose command line names the study folder."
    found = []
    for c in psutil.process_iter(['cmdline']):
        if alive(c) and c.pid != os.getpid() and str(out) in ' '.join(c.info['cmdline'] or []): found.append(c)
    return found

def status(out) -> dict:
    f = out / 'status.json'
    return json.loads(f.read_text()) if f.exists() else {}

def test_sigterm_in_the_data_step_leaves_nothing_running(tmp_path):
    out = tmp_path / 'smoke'
    s = Study(out)
    s.wait_for(lambda: len(s.running('spawn_main')) >= 2, 'corpus-rendering pool workers')   # the data step's pool is busy
    assert s.stop() == []
    assert 'stopped by SIGTERM' in s.log.read_text() and not status(out).get('data')
    r = Study(out, '--resume')                                               # --resume starts the data step again...
    r.wait_for(lambda: 'data.ipynb ->' in r.log.read_text().split('stopped by SIGTERM')[-1], 'data step on --resume')
    r.wait_for(lambda: r.running('ipykernel'), 'kernel on --resume')
    assert r.stop() == []                                                   # ...and is stopped cleanly again

def test_sigterm_in_a_pretraining_step_leaves_nothing_running(tmp_path):
    out = tmp_path / 'smoke'
    s = Study(out)
    s.wait_for(lambda: len(s.running('-m harlib.pretrain')) >= 3, 'torchrun and its two ranks', timeout=240)
    assert s.stop() == []
    st = status(out)
    assert st['data']['done'] and not any(k.startswith('pretrain') for k in st)   # data kept, pretraining to be redone
    r = Study(out, '--resume')
    r.wait_for(lambda: len(r.running('-m harlib.pretrain')) >= 3, 'pretraining on --resume')
    assert 'data: done before, skipped' in r.log.read_text()
    assert r.stop() == [] and status(out) == st
