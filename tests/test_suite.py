"""The public HAR suite from the user's disk (issue 25): each loader on a tiny copy written in its owners' layout,
with the quirks they document; the scan of a root; bad files named in one line or counted."""
import zipfile
import numpy as np, pandas as pd, pytest
from harlib.datasets import load, scan_suite, write_suite, SUITE, DATASETS, BadInput, registry
from harlib.datasets.suite_files import FAKE_GYRO, WISDM_MALFORMED
from harlib.imu import G

@pytest.fixture(scope='module')
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp('suite') / 'har'; write_suite(r); return r

def raw(name, root, **kw): return load(name, root, normalize='none', median=1, **kw)

EXPECT = {  # classes, subjects, placement, gyroscope (True, False, or 'some': masked where the owners' files have none)
    'uci_har': (['walking', 'sitting', 'laying'], ['s01', 's02', 's03'], 'waist', True),
    'pamap2': (['lying', 'walking', 'ascending_stairs'], ['s101', 's102'], 'wrist', True),
    'wisdm': (['walking', 'jogging', 'sitting'], ['u33', 'u34'], 'thigh', False),
    'motionsense': (['downstairs', 'walking', 'sitting'], ['s01', 's02'], 'thigh', True),
    'realworld': (['climbingup', 'sitting', 'walking'], ['s01', 's02'], 'head', 'some'),
    'mhealth': (['standing_still', 'walking'], ['s01', 's02'], 'wrist', True),
    'capture24': (['sleep', 'sitting', 'walking'], ['P001', 'P002'], 'wrist', False),
    'dsads': (['sitting', 'walking_in_parking_lot', 'running_on_treadmill'], ['p1', 'p2'], 'torso', True),
    'usc_had': (['walking_forward', 'sitting', 'sleeping'], ['s01', 's02'], 'hip', True),
    'hhar': (['stand', 'sit', 'walk'], ['a', 'b'], 'wrist', 'some')}

@pytest.mark.parametrize('name', list(EXPECT))
def test_loader_reads_its_owners_layout(root, name):
    classes, subjects, placement, gyro = EXPECT[name]
    ds = raw(name, root)
    assert ds.classes == classes and sorted(ds.index['subject'].unique()) == subjects
    assert set(ds.index.loc[ds.index['label'] >= 0, 'label_name']) == set(classes)
    assert abs(np.median(np.linalg.norm(ds.data[:, :3], axis=1)) / G - 1) < 0.03        # 1 g of gravity, whatever the file's unit
    masks = ds.channel_masks()
    assert masks[:, 3:].all() == (gyro is True) and masks[:, 3:].any() == bool(gyro)
    if gyro:                                                                            # rad/s, deg/s -> rad/s, where measured
        measured = np.concatenate([r.x[:, 3] for r in ds.recs.values() if r.mask is None or r.mask[3]])
        assert abs(np.median(measured) - FAKE_GYRO) < 0.02
    assert ds.config.spec.placement == placement and registry().loc[name, 'placement'] == placement   # the default position's
    check = load(name, root)                                                            # the default preprocessing, split by subject
    assert check.index.groupby('subject')['split'].nunique().eq(1).all()

def test_registry_states_rate_units_placements_subjects_labels():
    reg = registry()
    for name, info in SUITE.items():
        assert reg.loc[name, 'rate'] > 0 and reg.loc[name, 'subjects'] == info.subjects
        assert info.units and info.placements and info.folder and len(DATASETS[name].classes) >= 6

def test_uci_har_stitches_runs_and_skips_short_ones(root):
    ds = raw('uci_har', root)
    assert ds.report['too_short'] == 1 and set(ds.index['split']) == {'train', 'test'}
    d = root / 'UCI HAR Dataset' / 'train'
    w = pd.read_csv(d / 'Inertial Signals' / 'total_acc_z_train.txt', sep=r'\s+', header=None).to_numpy()
    first = ds.index['recording'].iloc[0]; n = len(ds.recs[first].x)
    y = pd.read_csv(d / 'y_train.txt', header=None)[0].to_numpy(); k = int(np.argmax(y != 1))   # subject 1's first run of windows
    assert n == 64 * (k + 1) and np.allclose(w[1, :64], w[0, 64:])                      # one recording, 2.56-s windows half overlapping
    np.testing.assert_allclose(ds.recs[first].x[:128, 2], w[0] * G, rtol=1e-5)

def test_pamap2_dropouts_are_gaps_and_activity_0_unlabelled(root):
    ds = raw('pamap2', root)
    assert ds.report['dropped_samples'] == 60 and all(not r.valid.all() for r in ds.recs.values())
    assert (ds.index['label'] == -1).any()
    chest = raw('pamap2', root, position='chest')
    assert chest.config.spec.placement == 'chest' and 'dropped_samples' not in chest.report and len(chest) >= len(ds)
    with pytest.raises(ValueError, match="position must be one of"): load('pamap2', root, position='foot')

def test_wisdm_counts_malformed_records(root):
    ds = raw('wisdm', root)
    assert ds.report['malformed_record'] == WISDM_MALFORMED and ds.index['recording'].nunique() == 6

def test_motionsense_sign_is_android_like(root):
    ds = raw('motionsense', root)
    assert np.median(ds.data[:, 2]) > 9                                                   # iOS's -1 g at rest becomes +9.81 m/s^2

def test_realworld_positions_and_sessions_in_inner_zips(root):
    ds = raw('realworld', root)
    assert {'s02/climbingup/2', 's02/climbingup/3'} <= set(ds.index['recording'])
    for z in (root / 'realworld2016_dataset').glob('proband*/data/*.zip'): assert zipfile.is_zipfile(z)   # nothing unpacked
    assert raw('realworld', root, position='waist').config.spec.placement == 'waist'

def _gyro_of(ds): return {k: r.mask is None or bool(r.mask[3:].all()) for k, r in ds.recs.items()}

def _in_step(r) -> float:
    "Correlation of the fixture's motion seen by both sensors (acc x: 2 sin, gyro x: FAKE_GYRO + 0.3 sin): ~1 when aligned."
    return float(np.corrcoef(r.x[:, 0], r.x[:, 3])[0, 1])

def test_realworld_reads_and_aligns_the_gyroscope(root):
    from harlib.datasets.suite_files import REALWORLD_GYRO_STOPS
    ds = raw('realworld', root); gyro = _gyro_of(ds)
    assert gyro['s02/sitting/1'] is False and not ds.recs['s02/sitting/1'].x[:, 3:].any()   # no gyr_sitting_csv.zip: masked, zeros
    assert gyro['s02/climbingup/2'] and gyro['s02/climbingup/3'] and gyro['s01/sitting/1']  # inner zips too
    assert 's01/walking/1' not in gyro and gyro['s01/walking/1.0'] and not gyro['s01/walking/1.1']   # the gyroscope stops: two parts
    n0, n1 = len(ds.recs['s01/walking/1.0'].x), len(ds.recs['s01/walking/1.1'].x)
    assert abs(n0 / (n0 + n1) - REALWORLD_GYRO_STOPS) < 0.03
    assert min(_in_step(r) for k, r in ds.recs.items() if gyro[k]) > 0.95
    assert set(ds.index.loc[ds.channel_masks()[:, 3], 'recording']) == {k for k, g in gyro.items() if g}
    waist = raw('realworld', root, position='waist')
    assert _gyro_of(waist)['s01/sitting/1'] and waist.config.spec.placement == 'waist'

def test_hhar_reads_and_aligns_the_gyroscope(root, tmp_path):
    ds = raw('hhar', root); gyro = _gyro_of(ds)
    assert gyro == {'a/gear_1/0': True, 'a/gear_1/1': True, 'b/gear_1/0': True, 'b/gear_1/1': False}   # b's watch missed a session
    assert min(_in_step(r) for k, r in ds.recs.items() if gyro[k]) > 0.95
    assert all(_gyro_of(raw('hhar', root, device='phone')).values())
    write_suite(tmp_path, ['hhar']); (tmp_path / 'Activity recognition exp' / 'Watch_gyroscope.csv').unlink()
    alone = raw('hhar', tmp_path)                                        # no gyroscope file: the accelerometer alone, noted
    assert not any(_gyro_of(alone).values()) and alone.report['no_gyroscope_file'] == 1 and len(alone) == len(ds)

def test_mhealth_positions_and_null_class(root):
    assert (raw('mhealth', root).index['label'] == -1).any()
    chest = raw('mhealth', root, position='chest')
    assert not chest.channel_masks()[:, 3:].any() and chest.config.spec.placement == 'chest' and chest.config.spec.gyro_unit == 'none'

def test_capture24_schemes_and_unknown_annotations(root):
    ds = raw('capture24', root)
    assert ds.report['unknown_annotation_samples'] == 2 * 300
    assert raw('capture24', root, scheme='Walmsley2020').classes == ['sleep', 'sedentary', 'light']
    assert raw('capture24', root, participants=['P002']).index['subject'].unique().tolist() == ['P002']
    with pytest.raises(ValueError, match='no column'): load('capture24', root, scheme='Nobody2030')

def test_dsads_joins_segments(root):
    ds = raw('dsads', root)
    assert all(len(r.x) == 3 * 250 for r in ds.recs.values())                            # 3 segments of 5 s at 25 Hz -> 15 s at 50 Hz
    assert raw('dsads', root, position='LL').config.spec.placement == 'left leg'

def test_usc_had_label_from_file_name(root):
    ds = raw('usc_had', root)
    assert 's01/a08t1' in set(ds.index['recording'])                                       # the file whose field is 'activity_numbr'

def test_hhar_streams_sessions_and_devices(root):
    ds = raw('hhar', root)
    assert sorted(ds.index['recording'].unique()) == ['a/gear_1/0', 'a/gear_1/1', 'b/gear_1/0', 'b/gear_1/1']   # the 30-s pause cuts a session
    phone = raw('hhar', root, device='phone')
    assert phone.config.spec.placement == 'waist' and set(phone.index['recording'].str.split('/').str[1]) == {'nexus4_1'}
    with pytest.raises(ValueError, match='no usable recording'): load('hhar', root, devices=['lgwatch_2'])

def test_bad_files_named_or_counted(root, tmp_path):
    write_suite(tmp_path, ['mhealth', 'dsads'])
    f = tmp_path / 'MHEALTHDATASET' / 'mHealth_subject2.log'
    f.write_text('\n'.join('\t'.join(l.split('\t')[:20]) for l in f.read_text().splitlines()) + '\n')
    ds = raw('mhealth', tmp_path)
    assert ds.report['wrong_channel_count'] == 1 and ds.index['subject'].unique().tolist() == ['s01']
    with pytest.raises(BadInput, match='mHealth_subject2.log: wrong_channel_count'): load('mhealth', tmp_path, strict=True)
    s = tmp_path / 'data' / 'a09' / 'p2' / 's02.txt'; s.write_text(s.read_text().replace(',', ';'))
    with pytest.raises(BadInput, match='s02.txt: wrong_channel_count'): load('dsads', tmp_path, strict=True)

def test_scan_lists_present_and_absent(tmp_path):
    write_suite(tmp_path / 'a', ['usc_had', 'capture24']); write_suite(tmp_path / 'a' / 'b' / 'c', ['wisdm'])
    scan = scan_suite(tmp_path)                                                            # two levels down, no deeper
    assert scan.index[scan['found']].tolist() == ['capture24', 'usc_had'] and len(scan) == len(SUITE)
    assert scan.loc['usc_had', 'path'].endswith('USC-HAD')
    assert not scan_suite(tmp_path / 'nothing')['found'].any()
    with pytest.raises(FileNotFoundError, match="no dsads here"): load('dsads', tmp_path)

def test_every_label_of_every_loader_is_in_the_ontology():
    from harlib.datasets import ontology, shared_label
    declared = {n: list(c.classes) for n, c in DATASETS.items() if c.classes}
    declared['basicmotions'] = load('basicmotions').classes
    assert set(SUITE) | {'watch'} <= set(declared)
    vocab = ontology()['vocabulary']
    for n, classes in declared.items():
        for c in classes: assert shared_label(n, c) in vocab, (n, c)

def test_to_shared_pools_labels_across_datasets(root):
    from harlib.datasets import to_shared
    a, b = to_shared(load('wisdm', root)), to_shared(load('motionsense', root))
    assert a.classes == ['walking', 'running', 'sitting'] and b.classes == ['walking', 'stairs_down', 'sitting']
    assert (a.index.loc[a.index['dataset_label'] == 'jogging', 'label_name'] == 'running').all()

def test_the_ontology_file_ships_in_the_wheel(tmp_path):
    import shutil, subprocess, sys, pathlib
    repo, src = pathlib.Path(__file__).resolve().parents[1], tmp_path / 'src'      # a clean copy: no build/ or egg-info to lean on
    shutil.copytree(repo / 'harlib', src / 'harlib', ignore=shutil.ignore_patterns('__pycache__'))
    for f in ('setup.py', 'settings.ini', 'pyproject.toml', 'README.md', 'LICENSE', 'MANIFEST.in'): shutil.copy(repo / f, src / f)
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path), str(src)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'harlib/datasets/ontology.yaml' in zipfile.ZipFile(next(tmp_path.glob('harlib-*.whl'))).namelist()

def test_uci_har_joins_only_windows_that_overlap(tmp_path):
    write_suite(tmp_path, ['uci_har'])
    before = load('uci_har', tmp_path).index['recording'].nunique()
    f = tmp_path / 'UCI HAR Dataset' / 'train' / 'Inertial Signals' / 'total_acc_x_train.txt'
    lines = f.read_text().split('\n'); v = lines[4].split(); v[0] = '9.9999999e-001'; lines[4] = ' ' + ' '.join(v)
    f.write_text('\n'.join(lines))                                     # window 5 no longer continues window 4: a new recording
    assert load('uci_har', tmp_path).index['recording'].nunique() == before + 1
