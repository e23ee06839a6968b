"""harlib qc: offsets recovered and faults found on the synthetic world with injected faults; the command on the
Ego4D layout, a folder of CSVs with videos (with and without a gyroscope) and MMEA clips; resumable; its pool ends
with it on SIGTERM; bad input is one line and status 2."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd, pytest
from harlib.qc.core import MIN_CONF
from harlib.qc.run import main as qc_main, run_qc
from harlib.synthetic import write
from harlib.synthetic.faults import inject_faults, score_qc

QUIET = dict(log=lambda *a: None)
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}

@pytest.fixture(scope='module')
def world(tmp_path_factory):
    "3 subjects x 4 min of the Ego4D layout in 1-min videos (48 px), faults injected: (root, truth)."
    root = write('ego4d', tmp_path_factory.mktemp('qc') / 'ego', subjects=3, minutes=4, size=48, video_minutes=1, seed=11, **QUIET)
    return root, inject_faults(root, seed=11)

@pytest.fixture(scope='module')
def qc_dir(world):
    out = world[0].parent / 'qc'; run_qc('ego4d', world[0], out, workers=2); return out

def test_recovery_on_the_synthetic_world(world, qc_dir):
    s = score_qc(world[1], qc_dir)
    assert s['read'] == s['recordings'] >= 8
    assert s['passed'] >= 0.5 * s['recordings']                       # most offsets pass the threshold at all
    assert s['within_tol_share'] >= 0.95, s                            # offsets within 0.1 s where confident
    assert s['false_shifts'] == 0, s                                   # no well-aligned recording shifted by > 0.1 s
    for k in ('duplicates', 'backwards', 'gaps', 'frozen', 'dead', 'clipped'):
        assert s[f'{k}_found'] == s[f'{k}_injected'], (k, s)           # every injected fault found
    assert s['duplicates_injected'] and s['backwards_injected'] and s['frozen_injected']

def test_outputs_and_resume(world, qc_dir):
    qc = pd.read_csv(qc_dir / 'qc.csv'); drop = pd.read_csv(qc_dir / 'drop.csv')
    assert list(qc.columns[:4]) == ['recording', 'offset_s', 'drift_ppm', 'confidence'] and 'faults' in qc
    assert set(qc['recording']) == set(world[1]) and (qc['passed'] == (qc['confidence'] >= MIN_CONF)).all()
    assert list(drop.columns) == ['recording', 'start_s', 'end_s', 'reason'] and (drop['start_s'] % 5 == 0).all()
    assert {'dead_sensor', 'frozen_video'} <= set(drop['reason'])
    assert (qc_dir / 'figures' / 'correlation.png').stat().st_size > 5000 and (qc_dir / 'figures' / 'offsets.png').exists()
    before = (qc_dir / 'qc.csv').read_text()
    assert run_qc('ego4d', world[0], qc_dir, workers=0)['reused'] == len(world[1])
    assert (qc_dir / 'qc.csv').read_text() == before

def _folder(src, dst, gyro=True) -> Path:
    "The Ego4D recordings of `src` as a folder of CSVs (seconds, 200 Hz; acc in g) each beside its video, with harlib.yaml."
    dst.mkdir(); meta = json.loads((src / 'ego4d.json').read_text())['videos']
    for v in meta:
        if not v['has_imu']: continue
        u = v['video_uid']; a = pd.read_csv(src / 'imu' / f'{u}.csv')
        df = pd.DataFrame(dict(t=a['canonical_timestamp_ms'] / 1000, ax=a['accl_x'] / 9.80665, ay=a['accl_y'] / 9.80665, az=a['accl_z'] / 9.80665))
        if gyro: df = df.assign(gx=a['gyro_x'], gy=a['gyro_y'], gz=a['gyro_z'])
        df.to_csv(dst / f'{u[:8]}.csv', index=False); (dst / f'{u[:8]}.mp4').write_bytes((src / 'video' / f'{u}.mp4').read_bytes())
    (dst / 'lonely.csv').write_text((dst / f'{u[:8]}.csv').read_text())           # a CSV without a video: a counted skip
    cols = '[ax, ay, az, gx, gy, gz]' if gyro else '[ax, ay, az]'
    (dst / 'harlib.yaml').write_text(f'rate: 200\nacc_unit: g\ncolumns: {cols}\ntime_column: t\ntime_unit: s\n' + ('' if gyro else 'gyro_unit: none\n'))
    return dst

@pytest.mark.parametrize('gyro', [True, False])
def test_folder_of_csvs_with_videos(world, tmp_path, gyro, capsys):
    root, truth = world; d = _folder(root, tmp_path / 'folder', gyro)
    assert qc_main(['folder', str(d), '--out', str(tmp_path / 'qc'), '--workers', '0', '--no_progress']) == 0
    assert 'harlib qc:' in capsys.readouterr().out
    qc = pd.read_csv(tmp_path / 'qc' / 'qc.csv').set_index('recording')
    assert qc.loc['lonely', 'error'].startswith('imu_without_video')
    off = {u[:8]: g['offset_s'] for u, g in truth.items()}; ok = qc[qc['passed'] == True]
    assert len(qc) == len(off) + 1 and (qc['confidence'].iloc[:-1] > 0).all()
    if gyro: assert len(ok) >= 0.5 * len(off)                           # the accelerometer's jerk alone passes less often
    assert all(abs(ok.loc[k, 'offset_s'] - off[k]) < 0.1 for k in ok.index), ok[['offset_s', 'confidence']]
    if not gyro: return
    from harlib.datasets import load                                    # the folder loader applies the QC folder
    before, after = load('folder', d), load('folder', d, qc=tmp_path / 'qc')
    back = {u[:8] for u, g in truth.items() if g['backwards']}
    assert set(before.recs) - {'lonely'} == set(off) - back and set(after.recs) - {'lonely'} == set(off)
    assert after.report['qc_shifted'] == len(ok) and after.report['qc_repaired'] == int(((qc['duplicates'] + qc['backwards']) > 0).sum())
    for k in ok.index: assert abs(after.recs[k].t0_s) < 0.1 + 0.01, (k, after.recs[k].t0_s)   # on the video clock
    assert after.report['qc_dropped'] > 0 and sum(r.valid.sum() for r in after.recs.values()) < sum(len(r.valid) for r in after.recs.values())

def test_mmea_clips(tmp_path, capsys):
    root = write('mmea', tmp_path / 'mmea', subjects=1, minutes=1.5, size=32, **QUIET)
    assert qc_main(['mmea', str(tmp_path / 'mmea'), '--out', str(tmp_path / 'qc'), '--workers', '0', '--no_progress']) == 0
    qc = pd.read_csv(tmp_path / 'qc' / 'qc.csv')
    assert len(qc) == len(list((root / 'sensor').glob('*/*.csv'))) and (qc['error'].isna()).all()
    assert (qc.loc[qc['passed'], 'offset_s'].abs() < 0.1).all()        # the clips are in sync: nothing confident is off

def test_bad_input_is_one_line(tmp_path, capsys):
    assert qc_main(['ego4d', str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'q')]) == 2
    assert qc_main(['folder', str(tmp_path), '--out', str(tmp_path / 'q')]) == 2            # no harlib.yaml
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(l.startswith('harlib qc: ') for l in err) and 'nowhere' in err[0]

def _children(pid) -> list:
    return [int(p) for p in subprocess.run(['pgrep', '-P', str(pid)], capture_output=True, text=True).stdout.split()]

def test_sigterm_ends_the_pool(world, tmp_path):
    p = subprocess.Popen([str(Path(sys.executable).parent / 'harlib'), 'qc', 'ego4d', str(world[0]), '--out', str(tmp_path / 'q'), '--workers', '2',
                          '--no_progress'], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    end = time.time() + 60
    while len(kids := _children(p.pid)) < 2 and time.time() < end and p.poll() is None: time.sleep(0.1)
    assert len(kids) >= 2, 'the pool never started'
    p.send_signal(signal.SIGTERM); p.wait(30)
    time.sleep(0.5); assert not [k for k in kids if Path(f'/proc/{k}').exists() and 'Z' not in Path(f'/proc/{k}/stat').read_text().split()[2]]
    assert p.returncode != 0

def test_torchrun_ranks_share_the_recordings(world, tmp_path):
    out = tmp_path / 'q'
    r = subprocess.run([str(Path(sys.executable).parent / 'torchrun'), '--standalone', '--nproc_per_node=2', '-m', 'harlib.qc', 'ego4d',
                        str(world[0]), '--out', str(out), '--workers', '0', '--no_progress'], env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count('harlib qc:') == 1                              # rank 0 reports once
    assert len(pd.read_csv(out / 'qc.csv')) == len(world[1]) == len(list((out / 'parts').glob('*.json')))

def test_prepare_cli_applies_qc_and_says_so(world, qc_dir, tmp_path, capsys):
    from harlib.prepare import main as prepare_main, Store
    assert prepare_main(['ego4d', '--data_root', str(world[0]), '--out', str(tmp_path / 's0'), '--workers', '0', '--no_progress']) == 0
    assert prepare_main(['ego4d', '--data_root', str(world[0]), '--out', str(tmp_path / 's1'), '--workers', '0', '--no_progress',
                         '--qc', str(qc_dir)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert 'QC applied' not in out[0] and 'QC applied' in out[1] and "'shifted'" in out[1]
    back = sum(bool(g['backwards']) for g in world[1].values())
    assert len(Store(tmp_path / 's1').recordings) == len(Store(tmp_path / 's0').recordings) + back   # repaired, not skipped

def test_store_takes_qc_only_as_prepared(world, qc_dir, tmp_path):
    "load('ego4d', STORE, qc=DIR): a store prepared with --qc DIR reads as it is (not corrected twice, QC counted as from the raw layout); any other store refuses in one line."
    from harlib.datasets import load
    from harlib.prepare import prepare_ego4d
    from harlib.qc.apply import QCResult
    prepare_ego4d(world[0], tmp_path / 's0', workers=0, progress=False); prepare_ego4d(world[0], tmp_path / 's1', workers=0, progress=False, qc=qc_dir)
    for store, other in ((tmp_path / 's0', qc_dir), (tmp_path / 's1', QCResult(qc_dir, min_conf=0))):
        with pytest.raises(ValueError) as e: load('ego4d', store, qc=other)
        msg = str(e.value); assert '\n' not in msg and 'harlib prepare ego4d' in msg and f'--qc {qc_dir}' in msg, msg
    assert 'without QC' in str(pytest.raises(ValueError, load, 'ego4d', tmp_path / 's0', qc=qc_dir).value)
    raw, plain, ds = load('ego4d', world[0], qc=qc_dir), load('ego4d', tmp_path / 's1'), load('ego4d', tmp_path / 's1', qc=qc_dir)
    pd.testing.assert_frame_equal(ds.index, plain.index)                          # no second shift, no second drop
    qc_counts = lambda d: {k: v for k, v in d.report.items() if k.startswith('qc_')}
    assert qc_counts(ds) == qc_counts(raw) and ds.report['qc_shifted'] > 0 and ds.report['qc_dropped'] > 0, (dict(ds.report), dict(raw.report))
    cols = ['recording', 'start_s', 'end_s']
    pd.testing.assert_frame_equal(ds.index[cols].reset_index(drop=True), raw.index[cols].reset_index(drop=True))

def _mmea_qc(d, rows, drops=()) -> Path:
    "A QC folder by hand for MMEA clips: rows (clip, offset_s, confidence), drops (clip, start_s)."
    d.mkdir(); pd.DataFrame([dict(recording=c, offset_s=o, drift_ppm=0.0, confidence=k, passed=k >= MIN_CONF, duplicates=0, backwards=0,
                                   repairable=True, error='') for c, o, k in rows]).to_csv(d / 'qc.csv', index=False)
    pd.DataFrame([dict(recording=c, start_s=s, end_s=s + 5, reason='dead_sensor') for c, s in drops],
                 columns=['recording', 'start_s', 'end_s', 'reason']).to_csv(d / 'drop.csv', index=False)
    return d

def test_mmea_loader_applies_qc(tmp_path):
    from harlib.datasets import load
    root = write('mmea', tmp_path / 'mmea', subjects=1, minutes=1.5, size=32, **QUIET)
    clips = sorted(root.glob('sensor/*/*.csv')); a, b, c = (f'{f.parent.name}/{f.stem}' for f in clips[:3])
    before = load('mmea', root, normalize=None, median=1)
    lines = clips[0].read_text().splitlines(True); clips[0].write_text(''.join(lines[25:]))   # clip a's IMU starts 1 s late: offset -1 s
    late = load('mmea', root, normalize=None, median=1)
    q = _mmea_qc(tmp_path / 'qc', [(a, -1.0, 9.0), (b, 0.7, 2.0), (c, 0.0, 9.0)], drops=[(c, 5.0)])
    ds = load('mmea', root, normalize=None, median=1, qc=q)
    assert ds.report['qc_shifted'] == 2 and ds.report['qc_not_shifted'] == 1 and ds.report['qc_dropped'] == 1, dict(ds.report)
    assert ds.recs[a].t0_s == pytest.approx(1.0, abs=1e-6) and ds.recs[b].t0_s == 0           # a onto the video clock; b below the threshold
    assert c not in set(ds.index['recording']) and c in set(before.index['recording'])         # its centre window touched a dropped one
    win = lambda d: d.imu_windows()[(d.index['recording'] == a).to_numpy()][0]
    i = (before.index['recording'] == a).to_numpy()
    assert ds.index.loc[ds.index['recording'] == a, 'start_s'].item() == pytest.approx(before.index.loc[i, 'start_s'].item(), abs=0.021)
    w0 = win(before); dev = lambda d: np.abs(win(d) - w0).mean() / np.abs(w0 - w0.mean(0)).mean()   # error / the motion's own size
    assert dev(ds) < 0.4 and dev(late) > 2 * dev(ds), (dev(ds), dev(late))     # the same 5 s of motion as before the cut (0.26: resampled
                                                                                # from shifted timestamps, not polyphase); without QC, 0.9

def test_loaders_without_qc_refuse_it(tmp_path):
    "Every registered loader whose reader takes no qc= refuses it in one line, before reading anything."
    import inspect
    from harlib.datasets import DATASETS, load
    without = [n for n, c in DATASETS.items() if 'qc' not in inspect.signature(c.reader).parameters]
    assert 'mmea' not in without and 'pd' in without
    for n in without:
        with pytest.raises(ValueError) as e: load(n, tmp_path / 'nowhere', qc=tmp_path / 'qc')
        assert 'qc=' in str(e.value) and '\n' not in str(e.value) and 'ego4d' in str(e.value), (n, str(e.value))
