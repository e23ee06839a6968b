"""harlib.prepare: a prepared Ego4D store gives the raw path's windows, survives a SIGKILL mid-pass, is idempotent,
handles bad files leniently or strictly, opens a 587,000-window index small and fast, shards frozen-tower
embeddings over torchrun ranks; plus the pretraining step and a short run under bf16 autocast on CPU."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from harlib.datasets import load, BadInput
from harlib.prepare import (prepare_ego4d, store_dataset, Store, EmbStore, fake_store, emb_dir, encoder_key,
                            main as prepare_main)
from harlib.pretrain import frozen_encoder
from harlib.synthetic import write

BIN = Path(sys.executable).parent
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}
COLS = ['recording', 'subject', 'start_s', 'end_s', 'label', 'label_name', 'source']
QUIET = dict(log=lambda *a: None)

@pytest.fixture(scope='module')
def src(tmp_path_factory):
    "6 one-minute Ego4D videos of 2 subjects (one without IMU), raw CSV IMU with gaps and a bad-window list, 32-px mp4s."
    return write('ego4d', tmp_path_factory.mktemp('ego') / 'src', subjects=2, minutes=3, size=32, video_minutes=1, **QUIET)

@pytest.fixture(scope='module')
def dst(src, tmp_path_factory):
    d = tmp_path_factory.mktemp('store') / 'dst'
    prepare_ego4d(src, d, workers=2, video=True, size=32, progress=False, imu_source='csv')
    return d

def same_arrays(a, b):
    for f in ('imu.npy', 'valid.npy', 'windows.npy'): np.testing.assert_array_equal(np.load(a / f), np.load(b / f))
    pd.testing.assert_frame_equal(pd.read_csv(a / 'recordings.csv'), pd.read_csv(b / 'recordings.csv'))

# ---- the store is the raw path, read faster ---------------------------------------------------------------

def test_store_gives_the_raw_windows(src, dst):
    raw, ds = load('ego4d', src, imu_source='csv'), load('ego4d', dst)                          # load() detects the store
    assert len(ds) > 20 and raw.report['no_imu'] == 1 and raw.report['gap_in_window'] >= 1
    pd.testing.assert_frame_equal(ds.index[COLS], raw.index[COLS])
    np.testing.assert_array_equal(ds.imu_windows(), raw.imu_windows())
    assert dict(ds.report) == dict(raw.report)
    for i in (0, len(ds) - 1):
        a, b = ds[i], raw[i]
        assert torch.equal(a['imu'], b['imu']) and a['meta'] == b['meta'] and a['subject'] == b['subject']
        assert torch.equal(a['channel_mask'], b['channel_mask'])
    assert isinstance(ds.data, np.memmap)                                        # nothing copied whole
    pd.testing.assert_series_equal(ds.index['split'], raw.index['split'])       # the same subject split
    tr, rtr = load('ego4d', dst, split='train'), load('ego4d', src, split='train', imu_source='csv')
    np.testing.assert_array_equal(tr.imu_windows(), rtr.imu_windows())

def test_store_gives_the_raw_paired_windows(src, dst):
    raw = load('ego4d', src, with_video=True, size=32, mode='eval', imu_source='csv')
    ds = load('ego4d', dst, with_video=True, size=32, mode='eval')
    pd.testing.assert_frame_equal(ds.index[COLS], raw.index[COLS])
    assert dict(ds.report) == dict(raw.report)
    for i in range(0, len(ds), 7):                                               # same frames, re-encoded once more
        a, b = ds[i]['video'].float(), raw[i]['video'].float()
        assert a.shape == b.shape == (10, 32, 32, 3) and (a - b).abs().mean() < 12, i
    assert ds.recs[ds.index['recording'][0]].video.parent == dst / 'video'

def test_store_refuses_other_preprocessing(dst):
    with pytest.raises(ValueError, match='load the raw data instead'): store_dataset(dst, median=3)
    with pytest.raises(ValueError, match='load the raw data instead'): store_dataset(dst, normalize='dataset')
    with pytest.raises(ValueError, match='load the raw data instead'): load('ego4d', dst, channels='acc')

# ---- resumable, idempotent, bad files ----------------------------------------------------------------------

def test_kill_and_resume_gives_the_uninterrupted_store(src, dst, tmp_path):
    out = tmp_path / 'killed'
    cmd = [sys.executable, '-m', 'harlib.prepare', 'ego4d', '--data_root', str(src), '--out', str(out), '--workers', '1',
           '--video', '--size', '32', '--imu_source', 'csv', '--no_progress', '--file_sleep', '1.5']
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t0 = time.time()
        while len(list((out / 'parts').glob('*.json'))) < 2 and time.time() - t0 < 120 and p.poll() is None: time.sleep(0.1)
    finally: os.killpg(p.pid, signal.SIGKILL); p.wait()
    done = len(list((out / 'parts').glob('*.json')))
    assert 2 <= done < 5 and not (out / 'store.json').exists(), done
    with pytest.raises(ValueError, match='not finished'): load('ego4d', out)
    s = prepare_ego4d(src, out, workers=1, video=True, size=32, progress=False, imu_source='csv')
    assert s['processed'] == 5 - done and s['recordings'] == 5
    same_arrays(out, dst)
    assert not list(out.rglob('*.tmp*'))

def test_second_pass_does_nothing_until_a_file_changes(src, tmp_path):
    src2 = shutil.copytree(src, tmp_path / 'src'); out = tmp_path / 'dst'
    assert prepare_ego4d(src2, out, workers=0, progress=False, imu_source='csv')['processed'] == 5
    mtime = (out / 'imu.npy').stat().st_mtime_ns
    assert prepare_ego4d(src2, out, workers=0, progress=False, imu_source='csv')['processed'] == 0
    assert (out / 'imu.npy').stat().st_mtime_ns == mtime                       # not even re-finalized
    f = sorted((src2 / 'imu').glob('*.csv'))[0]; f.write_text(f.read_text())   # a new version of one file
    assert prepare_ego4d(src2, out, workers=0, progress=False, imu_source='csv')['processed'] == 1
    code = f'from harlib.prepare import lock_store; import time; l = lock_store({str(out)!r}); print("locked", flush=True); time.sleep(60)'
    p = subprocess.Popen([sys.executable, '-c', code], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == 'locked'
        with pytest.raises(RuntimeError, match='another `harlib prepare` pass'):       # one pass per store at a time
            prepare_ego4d(src2, out, workers=0, progress=False, imu_source='csv')
    finally: p.kill(); p.wait()
    assert prepare_ego4d(src2, out, workers=0, progress=False, imu_source='csv')['processed'] == 0   # its end released the lock

def test_bad_file_lenient_counts_strict_stops(src, tmp_path, capsys):
    src2 = shutil.copytree(src, tmp_path / 'src'); f = sorted((src2 / 'imu').glob('*.csv'))[1]
    f.write_bytes(f.read_bytes()[:-30])                                          # a truncated CSV
    s = prepare_ego4d(src2, tmp_path / 'lenient', workers=2, progress=False, imu_source='csv')
    assert s['bad_files'] == 1 and s['recordings'] == 4
    ds, raw = store_dataset(tmp_path / 'lenient'), load('ego4d', src2, imu_source='csv')
    assert ds.report['truncated_csv'] == 1 and dict(ds.report) == dict(raw.report)
    pd.testing.assert_frame_equal(ds.index[COLS], raw.index[COLS])
    with pytest.raises(BadInput, match=f'{f.name}: truncated_csv'):
        prepare_ego4d(src2, tmp_path / 'strict', workers=2, progress=False, imu_source='csv', strict=True)
    assert prepare_main(['ego4d', '--data_root', str(src2), '--out', str(tmp_path / 's2'), '--workers', '0', '--strict',
                         '--imu_source', 'csv', '--no_progress']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f.name in err[0] and 'truncated_csv' in err[0]
    assert prepare_main(['ego4d', '--data_root', str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'n')]) == 2   # one line, nothing left
    assert 'no ego4d.json' in capsys.readouterr().err and not (tmp_path / 'n').exists()
    assert prepare_main(['ego4d', '--data_root', str(src2), '--out', str(tmp_path / 'l2'), '--workers', '0',
                         '--imu_source', 'csv', '--no_progress']) == 0
    assert "skipped bad files: {'truncated_csv': 1}" in capsys.readouterr().out

def test_cli_entry(src, tmp_path):
    from harlib.cli import main
    assert main(['prepare', 'ego4d', '--data_root', str(src), '--out', str(tmp_path / 'd'), '--workers', '0', '--no_progress']) == 0
    assert len(store_dataset(tmp_path / 'd')) == len(load('ego4d', src))

# ---- Ego4D scale: the index of 587,000 windows --------------------------------------------------------------

def test_paper_sized_index_opens_fast_and_small(tmp_path):
    fake_store(tmp_path / 'big', windows=587_000, recordings=9_000)           # imu.npy is 3.5 GB, sparse
    # peak RSS of this process's own memory (VmHWM, in kB): ru_maxrss would also count the forking pytest process
    code = ('import time, re; from harlib.prepare import store_dataset; import numpy as np\n'
            'hwm = lambda: int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))\n'
            'r0 = hwm(); t = time.perf_counter()\n'
            f'ds = store_dataset({str(tmp_path / "big")!r}); t = time.perf_counter() - t\n'
            'assert ds.imu_windows(np.arange(0, len(ds), 5000)).shape == (117, 250, 6)\n'
            'print(len(ds), t, r0 / 1024, hwm() / 1024)')
    out = subprocess.run([sys.executable, '-c', code], env=ENV, capture_output=True, text=True, check=True).stdout.split()
    n, secs, mb0, mb = int(out[0]), float(out[1]), float(out[2]), float(out[3])
    print(f'587k-window store: {n} usable windows, opened in {secs:.2f} s, peak RSS {mb:.0f} MB ({mb - mb0:.0f} MB for the store)')
    assert 570_000 < n < 587_000 and secs < 10 and mb < 1024 and mb - mb0 < 400

# ---- frozen-tower embeddings over torchrun ranks ------------------------------------------------------------

def test_embeddings_sharded_over_two_ranks(dst):
    cmd = [str(BIN / 'torchrun'), '--standalone', '--nproc_per_node=2', '-m', 'harlib.prepare', 'embed', '--store', str(dst),
           '--model', 'imu_video_cross', '--preset', 'tiny', '--num_workers', '0', '--batch_size', '8', '--no_progress']
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, cwd=dst.parent)
    assert r.returncode == 0, r.stderr[-3000:]
    import argparse
    a = argparse.Namespace(model='imu_video_cross', preset='tiny', video_weights=None, video_encoder=None, seed=0)
    enc, size = frozen_encoder(a); enc.eval()
    out = emb_dir(dst, encoder_key(enc, 10, size)); assert f'{out}' in r.stdout
    emb, ds = EmbStore(out), store_dataset(dst, with_video=True, size=size, mode='eval')
    assert len(emb) == len(ds) and emb.meta['recordings'] == 5
    rows = [0, len(ds) // 2, len(ds) - 1]
    with torch.no_grad(): want = enc(torch.stack([ds[i]['video'] for i in rows])).numpy()
    got = emb.get(emb.rows(ds.index['recording'], ds.index['start_s'])[rows]).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

def test_pretraining_reads_the_embedding_store(dst, tmp_path):
    import argparse
    from harlib.prepare import embed_store
    from harlib.pretrain import main
    enc, size = frozen_encoder(argparse.Namespace(model='imu_video_cross', preset='tiny', video_weights=None, video_encoder=None, seed=0))
    embed_store(dst, enc, num_frames=10, size=size, progress=False)              # (done already if the torchrun test ran)
    args = ['--dataset', 'ego4d', '--data_root', str(dst), '--preset', 'tiny', '--no_progress', '--num_workers', '0', '--max_steps', '2',
            '--batch_size', '4', '--freeze_video', '--video_cache', str(tmp_path / 'vc')]
    assert main([*args, '--out', str(tmp_path / 'run')]) == 0
    log = (tmp_path / 'run' / 'train.log').read_text()
    assert 'video features from the embedding store' in log and 'encoding' not in log and not (tmp_path / 'vc').exists()
    assert json.loads((tmp_path / 'run' / 'config.json').read_text())['windows'] == len(load('ego4d', dst))
    assert main([*args, '--out', str(tmp_path / 'other'), '--seed', '1']) == 0                 # another encoder: the usual cache
    assert 'encoding' in (tmp_path / 'other' / 'train.log').read_text()

# ---- mixed precision, first run on CPU ----------------------------------------------------------------------

@pytest.mark.parametrize('accum', [1, 2])
def test_pretraining_step_in_bf16_autocast_on_cpu(accum):
    from harlib.models import build_model
    from harlib.losses import create_loss
    from harlib.pretrain import Objective, contrastive_step
    torch.manual_seed(0); net = Objective(build_model('cross', 'tiny'), 'cross'); loss_fn = create_loss('sigmoid')
    g = torch.Generator().manual_seed(1)
    micro = [dict(imu=torch.randn(4, 250, 6, generator=g), video=torch.randint(0, 255, (4, 10, 32, 32, 3), generator=g, dtype=torch.uint8))
             for _ in range(accum)]
    def grads(amp):
        net.zero_grad(); torch.manual_seed(2)                                        # the same dropout masks
        loss, o = contrastive_step(net, loss_fn, micro, amp)
        return float(loss), o, [p.grad.clone() for p in net.parameters() if p.grad is not None]
    l32, _, g32 = grads(lambda: torch.autocast('cpu', enabled=False))
    seen = []
    hooks = [(n, m.register_forward_hook(lambda m, i, o, n=n: seen.append((n.split('.')[1], o.dtype))))
             for n, m in net.named_modules() if isinstance(m, torch.nn.Linear)]
    lbf, o, gbf = grads(lambda: torch.autocast('cpu', dtype=torch.bfloat16))
    for _, h in hooks: h.remove()
    assert {('imu_encoder', torch.bfloat16), ('video_encoder', torch.bfloat16)} <= set(seen)   # both towers ran in bf16
    assert np.isfinite(lbf) and lbf == pytest.approx(l32, rel=0.05)
    assert len(gbf) == len(g32) and all(torch.isfinite(a).all() for a in gbf)
    cos = torch.nn.functional.cosine_similarity(torch.cat([a.flatten() for a in gbf]), torch.cat([b.flatten() for b in g32]), 0)
    assert cos > 0.9, cos

def test_pretraining_runs_in_bf16_on_cpu(tmp_path):
    from harlib.pretrain import main, read_metrics
    args = ['--dataset', 'synthetic', '--data_opt', 'subjects=2', '--data_opt', 'minutes=1', '--preset', 'tiny', '--no_progress',
            '--num_workers', '0', '--max_steps', '3', '--batch_size', '4', '--accum_steps', '2', '--log_steps', '1', '--precision', 'bf16']
    assert main([*args, '--out', str(tmp_path / 'run')]) == 0
    assert json.loads((tmp_path / 'run' / 'config.json').read_text())['precision'] == 'bf16'
    recs = read_metrics(tmp_path / 'run' / 'metrics.jsonl')
    assert [r['step'] for r in recs] == [1, 2, 3] and all(np.isfinite(r['loss']) and r['loss'] > 0 for r in recs)
