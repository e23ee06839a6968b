"""harlib.datasets on fixtures written by harlib.synthetic.write, plus the bad-input corpus (lenient and strict)."""
import numpy as np, pandas as pd, pytest, torch
from pathlib import Path
from harlib.datasets import load, BadInput, check_splits, LeakError, subject_split, WindowDataset, Rec
from harlib.synthetic import write, MMEA_CLASSES
from harlib.video import frame_number
import badinput as bad
N_MMEA = 2 * len(MMEA_CLASSES)   # the fixture: 2 subjects x 1 clip per class (23 classes in world v2)

QUIET = dict(log=lambda *a: None)

@pytest.fixture(scope='session')
def fx(tmp_path_factory):
    d = tmp_path_factory.mktemp('fx')
    return dict(mmea=write('mmea', d / 'mmea', subjects=2, minutes=1, size=32, **QUIET).parent,
                pd=write('pd', d / 'pd', subjects=2, minutes=1, **QUIET),
                ego4d=write('ego4d', d / 'ego4d', subjects=1, minutes=6, size=32, **QUIET))

def mmea_file(root, kind, cls='4_fall', clip='s000_000'):
    ext = 'mp4' if kind == 'video' else 'csv'
    return Path(root) / 'UESTC-MMEA-CL' / kind / cls / f'{clip}.{ext}'

# ---- loaders read their fixtures ---------------------------------------------------------------------------

def test_mmea_labels_pairs_and_splits(fx):
    ds = load('mmea', fx['mmea'], with_video=True, size=32)
    assert len(ds) == N_MMEA and not ds.report          # one clip per subject and class (23 classes in world v2)
    lab = dict(zip(ds.index['recording'], ds.index['label']))
    assert lab['12_standing/s000_000'] == 11 and ds.classes[11] == 'standing' and lab['1_upstairs/s001_000'] == 0
    lists = {}
    for s in ('train', 'val', 'test'):
        for line in (fx['mmea'] / 'UESTC-MMEA-CL' / f'{s}.txt').read_text().split('\n'):
            if line: lists[line.split()[0]] = s
    assert dict(zip(ds.index['recording'], ds.index['split'])) == lists        # official lists honoured
    assert (ds.index['subject'] == '').all()                                   # the release names no subjects
    it = ds[0]
    assert it['imu'].shape == (250, 6) and it['imu'].dtype == torch.float32 and it['video'].shape == (10, 32, 32, 3)
    assert it['video'].dtype == torch.uint8 and it['label'].dtype == torch.int64

def test_mmea_centre_window_and_units(fx):
    ds = load('mmea', fx['mmea'], normalize=None, median=1)
    raw = np.loadtxt(mmea_file(fx['mmea'], 'sensor', '12_standing'), delimiter=',')
    row = ds.index.index[ds.index['recording'] == '12_standing/s000_000'][0]
    n50 = int(np.ceil(len(raw) * 2)); assert abs(ds.index.loc[row, 'start_s'] - (n50 - 250) // 2 / 50) < 1e-6
    w = ds.imu_windows([row])[0]
    assert 8.5 < np.linalg.norm(w[:, :3], axis=1).mean() < 11      # standing: |specific force| ~ g in m/s^2
    assert np.abs(w[:, 3:]).max() < 3                               # rad/s, not counts

def test_mmea_class_folder_found_by_name_not_depth(fx, tmp_path):
    root = bad.copy(fx['mmea'], tmp_path / 'm')
    base = root / 'UESTC-MMEA-CL'
    (base / 'sensor' / '20_walking').rename(tmp_path / 'w')
    ds = load('mmea', root)
    assert 'walking' not in set(ds.index['label_name']) and ds.report['video_without_imu'] == 2
    from harlib.datasets import clip_key
    assert clip_key('/x/UESTC-MMEA-CL/video/29_sit_stand/deeper/s1.mp4') == ('29_sit_stand', 's1')

def test_pd_subjects_classes_and_bouts(fx):
    ds = load('patient_persec', fx['pd'])
    assert set(ds.index['subject']) == {'P01', 'P02'} and ds.classes == ['bending', 'walking', 'standing', 'turning', 'sitting']
    check_splits(ds.index)
    assert set(ds.index['split']) == {'train', 'test'}

def test_pd_clock_jump_splits_bouts(tmp_path):
    t = pd.Timestamp('2024-03-04 09:00:00') + pd.to_timedelta(np.r_[np.arange(1000), 4000 + np.arange(1000)] * 20, unit='ms')
    x = np.tile([0, 0, 4096, 0, 0, 0], (2000, 1)) + np.random.default_rng(0).integers(-50, 50, (2000, 6))
    df = pd.DataFrame(x, columns=['acc_x', 'acc_y', 'acc_z', 'gyro_x', 'gyro_y', 'gyro_z'])
    df.insert(0, 'time', t.strftime('%H:%M:%S.%f').str[:-3]); df.insert(0, 'date', t.strftime('%Y-%m-%d'))
    (tmp_path / 'P09').mkdir(); df.to_csv(tmp_path / 'P09' / 'standing.csv', index=False)
    ds = load('pd', tmp_path, normalize=None)
    assert len(ds) == 8 and ds.index['start_s'].tolist() == [0, 5, 10, 15, 80, 85, 90, 95]
    assert 9.0 < np.linalg.norm(ds.imu_windows()[:, :, :3], axis=2).mean() < 10.6     # 4096 counts = 1 g

def test_ego4d_csv_and_processed_agree_and_disk_cache(fx, tmp_path):
    a = load('ego4d', fx['ego4d'], imu_source='csv', cache_dir=tmp_path / 'c')
    b = load('ego4d', fx['ego4d'], imu_source='processed')
    c = load('ego4d', fx['ego4d'], imu_source='csv', cache_dir=tmp_path / 'c')       # from the disk cache
    assert len(list((tmp_path / 'c' / 'imu').glob('*.npz'))) == 2
    assert len(a) == len(b) == len(c) > 40
    np.testing.assert_allclose(a.imu_windows(), b.imu_windows(), atol=1e-3)
    np.testing.assert_array_equal(a.imu_windows(), c.imu_windows())
    assert np.allclose(a.index['start_s'] % 5, 0, atol=0.05) or np.allclose((a.index['start_s'] % 5) - 5, 0, atol=0.05)
    listed = pd.read_csv(fx['ego4d'] / 'bad_imu_windows.csv')
    kept = set(zip(a.index['recording'], a.index['start_s'].round()))
    assert not any((u, float(s)) in kept for u, s in zip(listed['video_uid'], listed['start_sec']))
    assert a.report['bad_window'] >= 1 or len(listed) == 0

def test_ego4d_video_pairs_align(fx):
    "Timing, not shapes: the head gyroscope's yaw rate and the camera's horizontal image motion agree best at zero lag."
    from harlib.synthetic.checks import frame_shift
    ds = load('ego4d', fx['ego4d'], with_video=True, size=32, mode='eval')
    v = ds[3]['video']; assert v.shape == (10, 32, 32, 3)
    assert ds.index['end_s'].max() <= 300 + 0.05
    ds = load('ego4d', fx['ego4d'], with_video=True, size=32, mode='eval', num_frames=50, normalize='none', median=1)
    rows = [i for i in range(min(len(ds), 40)) if ds.index['end_s'].iloc[i] + 1 < ds.index['end_s'].max()]
    def image_motion(i, shift_s=0.0):           # horizontal image shift (px) between the 50 frames of the window
        row = ds.index.iloc[i].copy(); row['start_s'] += shift_s; row['end_s'] += shift_s
        return frame_shift(ds.video_window(i, row=row))[:, 1]
    img = np.array([image_motion(i) for i in rows])                                     # [W, 49] per 0.1-s interval
    yaw = ds.imu_windows(rows)[:, :245, 5].reshape(len(rows), 49, 5).mean(2)            # gyro z (rad/s), same intervals
    def r(a, b): return np.corrcoef(a.ravel(), b.ravel())[0, 1]
    lag_r = {L: r(img[:, max(0, L):49 + min(0, L)], yaw[:, max(0, -L):49 - max(0, L)]) for L in range(-5, 6)}
    assert max(lag_r, key=lag_r.get) == 0 and lag_r[0] > 0.2, lag_r                    # best at zero lag (world v2's own head motion lowers r)
    shifted = r(np.array([image_motion(i, 1.0) for i in rows]), yaw)                      # video one second late
    assert shifted < lag_r[0] - 0.15, (shifted, lag_r[0])

def test_synthetic_and_basicmotions():
    s = load('synthetic', subjects=2, minutes=1, with_video=True, size=32, classes=['walking', 'standing', 'sitting'])
    assert s.classes == ['walking', 'standing', 'sitting'] and set(s.index['label']) <= {0, 1, 2}
    check_splits(s.index); assert s[0]['video'].shape == (10, 32, 32, 3)
    bm = load('basicmotions', split='train')
    assert len(bm) == 80 and bm.classes == ['standing', 'walking', 'running', 'badminton']
    assert (bm.index.groupby('recording').size() == 2).all()

def test_arrays_and_folder(tmp_path):
    X = [np.random.default_rng(i).normal(size=(600, 6)) for i in range(3)]
    ds = load('arrays', X=X, y=[0, 1, 0], subjects=['a', 'b', 'c'], classes=['x', 'y'], rate=50)
    assert len(ds) == 6 and ds.index['label_name'].tolist() == ['x', 'x', 'y', 'y', 'x', 'x']
    for who in ('p1', 'p2'):
        pd.DataFrame(np.random.default_rng(0).normal(size=(500, 6)), columns=list('abcdef')).assign(act='walk').to_csv(tmp_path / f'{who}.csv', index=False)
    (tmp_path / 'harlib.json').write_text('{"rate": 50, "label": "act", "subject": "file"}')
    f = load('folder', tmp_path)
    assert len(f) == 4 and f.classes == ['walk'] and set(f.index['subject']) == {'p1', 'p2'}
    with pytest.raises(FileNotFoundError, match='spec'): load('folder', tmp_path / 'nowhere')

# ---- items, fast path, DataLoader -----------------------------------------------------------------------------

def test_imu_windows_match_items_and_dataloader_workers(fx):
    ds = load('mmea', fx['mmea'], with_video=True, size=32)
    np.testing.assert_array_equal(ds.imu_windows([2, 5])[1], ds[5]['imu'].numpy())
    dl = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, timeout=60)
    n = 0
    for b in dl:
        assert b['imu'].shape[1:] == (250, 6) and b['video'].shape[1:] == (10, 32, 32, 3) and b['video'].dtype == torch.uint8
        n += len(b['label'])
    assert n == len(ds)

def test_clip_cache_serves_identical_eval_clips(fx, tmp_path):
    a = load('mmea', fx['mmea'], with_video=True, size=32, mode='eval')
    b = load('mmea', fx['mmea'], with_video=True, size=32, mode='eval', video_cache=tmp_path / 'vc')
    for i in (0, 7):
        np.testing.assert_array_equal(a[i]['video'].numpy(), b[i]['video'].numpy())
        np.testing.assert_array_equal(b[i]['video'].numpy(), b[i]['video'].numpy())
    assert b.cache.misses == 2 and b.cache.hits == 4

# ---- splits and few-shot ---------------------------------------------------------------------------------------

def test_subject_split_is_disjoint(fx):
    ds = load('pd', fx['pd'])
    check_splits(ds.index)
    sp = subject_split(ds.index.assign(subject=np.arange(len(ds)) % 5), seed=3)
    assert set(sp) == {'train', 'val', 'test'}

def test_split_leak_raises_even_under_python_O():
    import subprocess, sys
    leak = pd.DataFrame(dict(subject=['a', 'a', 'b'], split=['train', 'test', 'test']))
    with pytest.raises(LeakError, match=r"subject\(s\) \['a'\] in both test and train"): check_splits(leak)
    code = ("import pandas as pd; from harlib.datasets import check_splits, LeakError\n"
            "try: check_splits(pd.DataFrame(dict(subject=['a', 'a'], split=['train', 'test']))); print('no error')\n"
            "except LeakError as e: print('LeakError', e)")
    out = subprocess.run([sys.executable, '-O', '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.startswith('LeakError')

# ---- the bad-input corpus --------------------------------------------------------------------------------------

def _mmea_case(fx, tmp_path, damage, kind='sensor', cls='4_fall', with_video=False):
    root = bad.copy(fx['mmea'], tmp_path / 'm'); f = mmea_file(root, kind, cls); damage(f)
    return root, f, with_video

MMEA_CASES = {
    'corrupt_mp4':        (lambda f: bad.corrupt(f), 'video', True, 'bad_video'),
    'zero_length_mp4':    (lambda f: bad.zero_length(f), 'video', True, 'bad_video'),
    'truncated_csv':      (lambda f: bad.truncate_csv(f), 'sensor', False, 'truncated_csv'),
    'too_short':          (lambda f: bad.keep_rows(f, 60), 'sensor', False, 'too_short'),
    'wrong_channel_count':(lambda f: bad.drop_column(f), 'sensor', False, 'wrong_channel_count'),
    'nan_run':            (lambda f: bad.nan_run(f, 100, 40), 'sensor', False, 'nan_run'),
    'video_without_imu':  (lambda f: f.unlink(), 'sensor', False, 'video_without_imu'),
}

@pytest.mark.parametrize('case', list(MMEA_CASES))
def test_mmea_bad_input_lenient_and_strict(fx, tmp_path, case):
    damage, kind, vid, reason = MMEA_CASES[case]
    root = bad.copy(fx['mmea'], tmp_path / 'm'); f = mmea_file(root, kind); damage(f)
    ds = load('mmea', root, with_video=vid, size=32)
    assert ds.report == {reason: 1}, ds.report
    assert len(ds) == N_MMEA - 1 and '4_fall/s000_000' not in set(ds.index['recording'])
    with pytest.raises(BadInput, match=reason) as e: load('mmea', root, strict=True, with_video=vid, size=32)
    assert 's000_000' in str(e.value) and '4_fall' in str(e.value)

def test_short_nan_runs_are_interpolated_not_skipped(fx, tmp_path):
    root = bad.copy(fx['mmea'], tmp_path / 'm'); bad.nan_run(mmea_file(root, 'sensor'), 100, 3)
    ds = load('mmea', root, strict=True); assert len(ds) == N_MMEA and np.isfinite(ds.imu_windows()).all()

def test_unknown_class_folder(fx, tmp_path):
    root = bad.copy(fx['mmea'], tmp_path / 'm'); base = root / 'UESTC-MMEA-CL'
    (base / 'sensor' / 'misc').mkdir(); (base / 'sensor' / 'misc' / 'a.csv').write_text('1,2,3,4,5,6\n')
    ds = load('mmea', root); assert ds.report == {'unknown_class_folder': 1} and len(ds) == N_MMEA
    with pytest.raises(BadInput, match='misc: unknown_class_folder'): load('mmea', root, strict=True)

def test_pd_non_monotonic_timestamps_and_nan_run(fx, tmp_path):
    root = bad.copy(fx['pd'], tmp_path / 'p')
    bad.swap_rows(root / 'P01' / 'walking.csv', 10, 20, header=True)
    bad.nan_run(root / 'P02' / 'sitting.csv', 50, 30, col=3, header=True)
    ds = load('pd', root)
    assert ds.report == {'non_monotonic_timestamps': 1, 'nan_run': 1}, ds.report
    assert not {'P01/walking', 'P02/sitting'} & set(ds.index['recording'])
    with pytest.raises(BadInput, match='walking.csv: non_monotonic_timestamps'): load('pd', root, strict=True)

def test_ego4d_metadata_missing_imu_and_timestamps(fx, tmp_path):
    root = bad.copy(fx['ego4d'], tmp_path / 'e')
    meta = __import__('json').loads((root / 'ego4d.json').read_text()); uids = [v['video_uid'] for v in meta['videos']]
    def damage(o):
        o['videos'].append({'video_uid': 'no-imu-files', 'has_imu': True, 'video_metadata': {'video_duration_sec': 60}})
        o['videos'].append({'video_uid': 'no-flag', 'video_metadata': {'video_duration_sec': 60}})
        o['videos'].append({'video_uid': 'off', 'has_imu': False, 'video_metadata': {'video_duration_sec': 60}})
    bad.edit_json(root / 'ego4d.json', damage)
    bad.swap_rows(root / 'imu' / f'{uids[1]}.csv', 5, 9, header=True)
    ds = load('ego4d', root, imu_source='csv')
    for k in ('video_without_imu', 'missing_metadata', 'no_imu', 'non_monotonic_timestamps'): assert ds.report[k] == 1, (k, ds.report)
    assert set(ds.index['recording']) == {uids[0]}
    with pytest.raises(BadInput, match=f'{uids[1]}.csv: non_monotonic_timestamps'): load('ego4d', root, strict=True, imu_source='csv')

def test_ego4d_corrupt_video_only_matters_with_video(fx, tmp_path):
    root = bad.copy(fx['ego4d'], tmp_path / 'e')
    uid = __import__('json').loads((root / 'ego4d.json').read_text())['videos'][0]['video_uid']
    bad.corrupt(root / 'video' / f'{uid}.mp4')
    assert not load('ego4d', root).report.get('bad_video')
    ds = load('ego4d', root, with_video=True, size=32)
    assert ds.report['bad_video'] == 1 and uid not in set(ds.index['recording'])

def test_fill_video_cache_drops_clips_that_fail_only_while_decoding(fx, tmp_path):
    from harlib.video import write_video
    root = bad.copy(fx['mmea'], tmp_path / 'm'); v = mmea_file(root, 'video')
    noise = np.random.default_rng(0).integers(0, 255, (400, 32, 32, 3), np.uint8)
    write_video(v, noise, fps=25, faststart=True)                     # header first: probing succeeds ...
    v.write_bytes(v.read_bytes()[: v.stat().st_size // 4])            # ... but the frames of the centre 5 s are gone
    ds = load('mmea', root, with_video=True, size=32, video_cache=tmp_path / 'c')
    assert len(ds) == N_MMEA
    ds.fill_video_cache(num_workers=2)
    assert len(ds) == N_MMEA - 1 and ds.report == {'bad_video': 1} and '4_fall/s000_000' not in set(ds.index['recording'])
    with pytest.raises(BadInput, match='bad_video'):
        load('mmea', root, with_video=True, size=32, video_cache=tmp_path / 'c2', strict=True).fill_video_cache()
