"""seglearn's smartwatch recordings (issue 25): a real target with subject ids, read from the installed package."""
import numpy as np, pytest
from harlib.datasets import load, watch_file, WATCH_CLASSES, BadInput
from harlib.imu import G

@pytest.fixture(scope='module')
def w(): return load('watch')

def test_recordings_subjects_and_windows(w):
    ix = w.index
    assert ix['recording'].nunique() == 140 and ix['subject'].nunique() == 10
    assert ix.groupby('subject')['recording'].nunique().eq(14).all()
    assert ix.groupby('subject')['label_name'].nunique().eq(7).all()             # every person did every exercise
    assert ix['recording'].str.contains('/left/').sum() > 0 and ix['recording'].str.contains('/right/').sum() > 0
    assert w.classes == WATCH_CLASSES and len(w) == 910                          # 5-s windows, no overlap
    assert w.config.spec.placement == 'wrist' and w.config.spec.rate == 50

def test_units_and_accelerometer_only_copy(w):
    raw = load('watch', normalize='none', median=1)
    assert abs(np.median(np.linalg.norm(raw.data[:, :3], axis=1)) / G - 1) < 0.1    # g with gravity -> m/s^2
    acc = load('watch', channels='acc')
    assert not acc.channel_masks()[:, 3:].any() and (acc.imu_windows()[..., 3:] == 0).all() and len(acc) == len(w)

def test_a_root_is_checked(tmp_path):
    with pytest.raises(FileNotFoundError, match='watch_dataset.npy'): load('watch', tmp_path)
    (tmp_path / 'watch_dataset.npy').write_bytes(b'not a pickle')
    with pytest.raises(BadInput, match='not a pickled dict'): load('watch', tmp_path)
    d = np.load(watch_file(), allow_pickle=True).item(); d['y'] = d['y'][:-1]
    np.save(tmp_path / 'watch_dataset.npy', np.array(d, dtype=object), allow_pickle=True)
    with pytest.raises(BadInput, match='lengths differ'): load('watch', tmp_path)
