"""harlib.synthetic (a subpackage: body, sensors, camera, sessions, layouts, checks): physics of the simulated IMUs, determinism, the three on-disk layouts, and the re-exported names."""
import json, numpy as np, pandas as pd, pytest
from harlib.synthetic import (ACTIVITIES, G, make_subject, simulate, clip_program, day_program, labelled_program, corpus,
                              write, main, MMEA_CLASSES, PD_CLASSES, gyro_yaw, head_yaw, camera_gyro_correlation,
                              labelled_windows, window_features)

def test_rest_reads_one_g_on_every_placement():
    s = make_subject(5)
    ses = simulate(s, [('standing', 10)], seed=1, placements=('head', 'chest', 'wrist'), video=False, noise=False)
    for p, imu in ses.imu.items():
        assert abs(np.linalg.norm(imu['acc'], axis=1).mean() - G) < 0.05, p
        assert np.abs(imu['gyro']).mean() < 0.3, p

def test_deterministic_from_seed():
    s = make_subject(2)
    a, b = (simulate(s, clip_program('walking', 8), seed=4, size=32) for _ in range(2))
    np.testing.assert_array_equal(a.imu['head']['acc'], b.imu['head']['acc'])
    np.testing.assert_array_equal(a.frames, b.frames)
    c = simulate(s, clip_program('walking', 8), seed=5, size=32)
    assert not np.array_equal(a.imu['head']['acc'], c.imu['head']['acc'])

def test_session_shapes_and_labels():
    s = make_subject(1)
    ses = simulate(s, [('sitting', 6), ('sit_to_stand', 3), ('walking', 6)], seed=0, size=64, fps=10)
    assert ses.imu['head']['acc'].shape == (750, 3) and ses.imu['head']['acc'].dtype == np.float32
    assert ses.frames.shape == (150, 64, 64, 3) and ses.frames.dtype == np.uint8
    np.testing.assert_allclose(ses.frame_t[:3], [0, .1, .2])
    assert set(np.unique(ses.labels)) == {-1, ACTIVITIES.index('sitting'), ACTIVITIES.index('sit_to_stand'), ACTIVITIES.index('walking')}
    assert [a for _, _, a in ses.segments] == ['sitting', 'sit_to_stand', 'walking']

def test_errors_name_the_problem():
    with pytest.raises(ValueError, match='unknown activity'): simulate(make_subject(0), [('flying', 3)])
    with pytest.raises(ValueError, match='unknown placement'): simulate(make_subject(0), [('standing', 3)], placements=('ankle',))
    with pytest.raises(ValueError, match='unknown layout'): write('kinetics', '/tmp/x')

def test_ego4d_layout(tmp_path):
    root = write('ego4d', tmp_path / 'e', subjects=1, minutes=1, seed=2, size=64, video_minutes=0.2, log=lambda *a: None)
    meta = json.loads((root / 'ego4d.json').read_text())
    assert [v['has_imu'] for v in meta['videos']] == [True] * 4 + [False]
    assert not (root / 'imu' / f"{meta['videos'][4]['video_uid']}.csv").exists()
    v = meta['videos'][0]; uid = v['video_uid']
    assert abs(v['video_metadata']['video_duration_sec'] - 12) < 1e-6 and v['video_metadata']['num_frames'] == 120
    df = pd.read_csv(root / 'imu' / f'{uid}.csv')
    assert list(df.columns) == ['canonical_timestamp_ms', 'gyro_x', 'gyro_y', 'gyro_z', 'accl_x', 'accl_y', 'accl_z']
    dt = np.diff(df.canonical_timestamp_ms.values); assert 4.5 < np.median(dt) < 5.5 and (dt > 0).all()
    x = np.load(root / 'processed_imu' / f'{uid}.npy'); ts = np.load(root / 'processed_imu' / f'{uid}_timestamps.npy')
    assert x.shape == (6, len(df)) and len(ts) == len(df)
    np.testing.assert_allclose(x[:3].T, df[['accl_x', 'accl_y', 'accl_z']].values, atol=1e-5)
    assert (root / 'video' / f'{uid}.mp4').stat().st_size > 1000
    bad = pd.read_csv(root / 'bad_imu_windows.csv'); assert list(bad.columns) == ['video_uid', 'start_sec', 'end_sec', 'reason']
    assert (bad.video_uid == uid).any() and dt.max() > 400   # the first IMU file has a gap, listed as bad windows
    assert abs(np.linalg.norm(df[['accl_x', 'accl_y', 'accl_z']].values, axis=1).mean() - G) < 1.0

def test_mmea_layout(tmp_path):
    root = write('mmea', tmp_path / 'm', subjects=1, minutes=0.1, seed=1, size=64, log=lambda *a: None)
    assert root.name == 'UESTC-MMEA-CL'
    lines = sum(((root / f'{k}.txt').read_text().splitlines() for k in ('train', 'val', 'test')), [])
    assert len(lines) == len(MMEA_CLASSES)
    path, first, last, label = lines[0].split(); cls = path.split('/')[0]
    assert int(label) == int(cls.split('_')[0]) - 1 and first == '1'
    x = np.loadtxt(root / 'sensor' / f'{path}.csv', delimiter=',')
    assert x.shape[1] == 6 and 15 * 25 <= len(x) <= 18 * 25 + 1
    assert (root / 'video' / f'{path}.mp4').exists()
    if cls == '12_standing': assert abs(np.linalg.norm(x[:, :3], axis=1).mean() / 8192 - 1) < 0.05

def test_pd_layout_and_cli(tmp_path):
    assert main(['--layout', 'pd', '--out', str(tmp_path / 'p'), '--subjects', '1', '--minutes', '1', '--seed', '3']) == 0
    for c in PD_CLASSES:
        df = pd.read_csv(tmp_path / 'p' / 'P01' / f'{c}.csv')
        assert list(df.columns) == ['date', 'time', 'acc_x', 'acc_y', 'acc_z', 'gyro_x', 'gyro_y', 'gyro_z']
        t = pd.to_datetime(df.date + ' ' + df.time); assert (np.diff(t.values).astype('timedelta64[ms]').astype(int) == 20).mean() > 0.9
    st = pd.read_csv(tmp_path / 'p' / 'P01' / 'standing.csv')
    assert abs(np.linalg.norm(st[['acc_x', 'acc_y', 'acc_z']].values, axis=1).mean() / 4096 - 1) < 0.05

def test_gyro_integration_recovers_turn_yaw():
    s = make_subject(11)
    ses = simulate(s, [('standing', 2), ('turning', 3), ('standing', 2)], seed=5, video=False)
    est = gyro_yaw(ses.imu['head']['gyro'], ses.imu['head']['acc'], ses.rate)
    y = head_yaw(ses.kinematics([0, ses.duration - 0.02])['R_head']); true = (y[1] - y[0] + np.pi) % (2 * np.pi) - np.pi
    assert abs(true) > np.radians(60) and abs(est - true) < np.radians(5)

def test_camera_motion_follows_head_gyro():
    ses = simulate(make_subject(4), day_program(1, seed=4), seed=4, size=48)
    assert camera_gyro_correlation(ses) > 0.5

def test_counts_sensitivity():
    ses = simulate(make_subject(0), [('standing', 4)], seed=0, video=False, noise=False)
    c = ses.counts('head', 4096, 32.8); assert c.dtype == np.int16 and c.shape == (200, 6)
    assert abs(np.linalg.norm(c[:, :3].astype(float), axis=1).mean() - 4096) < 30

def test_counts_are_one_conversion():
    from harlib.synthetic import imu_counts
    ses = simulate(make_subject(1), clip_program('walking', 4), seed=2, placements=('chest',), video=False)
    np.testing.assert_array_equal(ses.counts('chest', 4096, 32.8), imu_counts(ses.imu['chest'], 4096, 32.8))

def test_package_reexports_the_former_names():
    import harlib.synthetic as syn, harlib.constants as constants
    assert [n for n in syn.__all__ if not hasattr(syn, n)] == [] and len(syn.__all__) == 50   # 46 + world v2: HAND_ACTIVITIES, SEATED, activity_strip; ego4d_activities
    assert syn.PD_CLASSES is constants.PD_CLASSES and syn.write.__module__ == 'harlib.synthetic.layouts'
    assert syn.simulate.__module__ == 'harlib.synthetic.sessions' and syn.main is syn.layouts.main

def test_corpus_labelled_and_cached():
    a = corpus(2, 1, 'parkinsonian', 'wrist', seed=3, video=False, labelled=True)
    assert a is corpus(2, 1, 'parkinsonian', 'wrist', seed=3, video=False, labelled=True)
    assert len(a) == 2 and a[0].frames is None and a[0].subject.population == 'parkinsonian'
    assert (a[0].labels >= 0).mean() > 0.6 and 'running' not in {ACTIVITIES[l] for l in a[0].labels if l >= 0}

def test_parkinsonian_shift_lowers_a_general_classifier():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import balanced_accuracy_score
    acts = ['standing', 'sitting', 'walking', 'turning']
    mk = lambda pop, seeds: [simulate(s, labelled_program(3, s, i, clip_s=15, activities=acts), seed=i, placements=('chest',),
                                      video=False) for i in seeds for s in [make_subject(i, pop)]]
    # world v2's nuisance (drift, jitter, head motion, style) needs 6 training subjects x 3 min where v1 needed 4 x 2
    (Xt, yt, _), (Xh, yh, _), (Xp, yp, _) = (labelled_windows(mk(p, r), 'chest') for p, r in
                                             (('general', range(6)), ('general', range(50, 53)), ('parkinsonian', range(60, 63))))
    clf = RandomForestClassifier(100, random_state=0).fit(window_features(Xt), yt)
    gen, park = (balanced_accuracy_score(y, clf.predict(window_features(X))) for X, y in ((Xh, yh), (Xp, yp)))
    assert gen > park + 0.1, (gen, park)

# --- world v2 (issue 13) ---
from harlib.synthetic.body import HAND_ACTIVITIES, SEATED, rot
from harlib.synthetic.camera import scene

def test_world_v2_activity_set():
    assert len(ACTIVITIES) >= 20 and len(set(ACTIVITIES)) == len(ACTIVITIES)
    assert ACTIVITIES[:12] == ['standing', 'sitting', 'lying', 'walking', 'running', 'stairs_up', 'stairs_down',
                               'sit_to_stand', 'stand_to_sit', 'turning', 'bending', 'falling']   # v1 label indices unchanged
    assert len(HAND_ACTIVITIES) >= 10 and set(MMEA_CLASSES.values()) - {'sit_stand'} <= set(ACTIVITIES) and len(MMEA_CLASSES) >= 20

@pytest.mark.parametrize('population', ['general', 'parkinsonian'])
def test_day_programme_covers_every_activity(population):
    s = make_subject(3, population); prog = day_program(60, s, seed=3); got = {}
    for a, d in prog: got[a] = got.get(a, 0) + d
    assert abs(sum(got.values()) - 3600) < 1e-6
    for a in ACTIVITIES:
        if population == 'parkinsonian' and a == 'running': assert a not in got; continue
        assert got.get(a, 0) >= 5, (a, got.get(a, 0))                # falls and transitions included
    assert got['walking'] < 0.25 * 3600                               # no activity swamps the day

def test_parkinsonian_rest_tremor_band():
    for sev in (0.5, 1.0):
        s = make_subject(21, 'parkinsonian', severity=sev)
        ses = simulate(s, [('standing', 30)], seed=0, placements=('wrist', 'chest'), video=False)
        g = ses.imu['wrist']['gyro'][250:]; f = np.fft.rfftfreq(len(g), 1 / 50)
        P = (np.abs(np.fft.rfft(g - g.mean(0), axis=0)) ** 2).sum(1)
        assert 4 <= f[P.argmax()] <= 6, f[P.argmax()]
        c = ses.imu['chest']['gyro'][250:]; Pc = (np.abs(np.fft.rfft(c - c.mean(0), axis=0)) ** 2).sum(1)
        assert Pc[(f >= 4) & (f <= 6)].sum() > Pc[(f > 6.5) & (f < 15)].sum()        # the chest feels the tremor band too
    gen = make_subject(21)
    assert not 4 <= gen.tremor_hz <= 6 and gen.tremor_amp < make_subject(21, 'parkinsonian', severity=0.5).tremor_amp / 50

def _in_view(ses, key, t):
    "Whether body point `key` projects inside the egocentric frame at times `t`."
    p = ses.kinematics(t); R = p['R_head'] @ rot('y', np.full(len(t), 0.25)); f = np.tan(np.radians(scene(ses.size).fov) / 2)
    c = np.einsum('nji,nj->ni', R, p[key] - p['eye'])
    return (c[:, 0] > 0.05) & (np.abs(c[:, 1]) < f * c[:, 0]) & (np.abs(c[:, 2]) < f * c[:, 0])

@pytest.mark.parametrize('activity', ['eating', 'typing', 'reading', 'writing', 'washing_hands', 'wiping_table', 'stirring', 'carrying_box'])
def test_hands_visible_in_hand_activities(activity):
    s = make_subject(5); ses = simulate(s, clip_program(activity, 8, s), seed=1, size=48, fps=5)
    t = ses.frame_t[(ses.frame_t > 1) & (ses.frame_t < 7)]
    assert _in_view(ses, 'wrist' + s.handed, t).mean() > 0.6, activity
    fr = ses.frames[(ses.frame_t > 1) & (ses.frame_t < 7)].astype(float)
    skin = np.asarray(s.colors['skin'], float); shade = (fr * skin).sum(-1) / (skin @ skin)        # pixels of the skin hue
    hue = np.abs(fr - shade[..., None] * skin).max(-1) < 12
    if activity != 'carrying_box': assert (hue & (shade > 0.5)).mean() > 0.002, activity            # hands drawn (the box hides them)
    walk = simulate(s, clip_program('walking', 8, s), seed=1, size=48, fps=5, video=False)
    assert _in_view(walk, 'wrist' + s.handed, t).mean() < 0.5                                       # but not while walking

def test_sensor_nuisance_bias_drift_jitter():
    s = make_subject(8)
    clean = simulate(s, [('standing', 120)], seed=0, video=False, noise=False)
    noisy = simulate(s, [('standing', 120)], seed=0, video=False)
    a, b = noisy.imu['head']['gyro'][:1500].mean(0), noisy.imu['head']['gyro'][-1500:].mean(0)
    assert np.abs(a - b).max() > 1e-4                                   # the bias drifts
    assert np.abs(noisy.imu['head']['acc'] - clean.imu['head']['acc']).mean() > 0.01
    assert 0 < s.jitter < 0.01 and s.handed in 'LR' and 0 <= s.room < 8

def test_tower_corpus_is_disjoint_from_the_study_corpora():
    from harlib.towers import tower_subjects, check_tower_disjoint, TOWER_LABELS
    from harlib.study import TARGETS, MMEA_PLUS_CLASSES
    from harlib.datasets.splits import LeakError
    tw = tower_subjects(12)
    study = [make_subject((s * 1) * 1000 + i, pop) for s, pop in ((1, 'general'), (2, 'general'), (3, 'parkinsonian')) for i in range(40)]
    meta = dict(subjects=[x.id for x in tw], rooms=[x.room for x in tw])
    check_tower_disjoint(meta, [x.id for x in study], [x.room for x in study])
    with pytest.raises(LeakError): check_tower_disjoint(meta, [tw[0].id], [])
    assert not set(TOWER_LABELS) & set(MMEA_PLUS_CLASSES) and not set(TOWER_LABELS) & set(PD_CLASSES)   # a taxonomy of its own
    assert len(MMEA_PLUS_CLASSES) >= 20 and 'classes' in TARGETS['Aplus_mmea_like']
