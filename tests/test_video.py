"""harlib.video: frame choice, damaged files, and the decoded-clip cache under DataLoader workers."""
import numpy as np, pytest, torch
from harlib.video import (write_video, counter_frames, frame_number, read_frames, ClipCache, VideoError,
                          probe)

@pytest.fixture(scope='module')
def vid(tmp_path_factory):
    d = tmp_path_factory.mktemp('vid')
    return write_video(d / 'count.mp4', counter_frames(100), fps=10)

def test_eval_is_deterministic_and_centred(vid):
    a = read_frames(vid, 2, 7, 10, 32, 'eval'); b = read_frames(vid, 2, 7, 10, 32, 'eval')
    assert a.dtype == np.uint8 and a.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(frame_number(a), np.arange(22, 70, 5))

def test_train_draws_one_frame_per_chunk(vid):
    seen = set()
    for s in range(8):
        n = frame_number(read_frames(vid, 0, 5, 5, 32, 'train', np.random.default_rng(s)))
        assert ((n >= np.arange(0, 50, 10)) & (n < np.arange(10, 60, 10))).all()
        seen.add(tuple(n))
    assert len(seen) > 1

def test_non_square_video_is_resized_then_centre_cropped(tmp_path):
    f = np.zeros((20, 48, 96, 3), np.uint8); f[:, :, 40:56] = 255   # a white bar in the middle
    p = write_video(tmp_path / 'wide.mp4', f)
    x = read_frames(p, 0, 2, 4, 24, 'eval')
    assert x.shape == (4, 24, 24, 3)
    assert x[0, :, 12].mean() > 200 and x[0, :, 0].mean() < 30      # bar stays in the centre

@pytest.mark.parametrize('make,what', [
    (lambda p, ok: p.write_bytes(b''), 'empty'),
    (lambda p, ok: p.write_bytes(b'\x00junk' * 500), 'unreadable'),
    (lambda p, ok: p.write_bytes(ok.read_bytes()[:len(ok.read_bytes()) // 3]), "corrupt or truncated"),
])
def test_damaged_files_are_named(tmp_path, vid, make, what):
    p = tmp_path / 'bad.mp4'; make(p, vid)
    with pytest.raises(VideoError, match=what) as e: read_frames(p, 0, 5)
    assert 'bad.mp4' in str(e.value)

def test_truncated_faststart_file_fails_at_decode(tmp_path):
    ok = write_video(tmp_path / 'fs.mp4', np.random.default_rng(0).integers(0, 255, (200, 32, 32, 3), np.uint8), faststart=True)
    cut = tmp_path / 'fs_cut.mp4'; cut.write_bytes(ok.read_bytes()[:ok.stat().st_size // 2])
    with pytest.raises(VideoError, match='fs_cut.mp4'): read_frames(cut, 15, 20, 10, 32, 'eval')

def test_span_outside_video(vid):
    with pytest.raises(VideoError, match='outside'): read_frames(vid, 8, 13)

class _CachedClips(torch.utils.data.Dataset):
    def __init__(self, root, path): self.c, self.p = ClipCache(root), path
    def __len__(self): return 6
    def __getitem__(self, i): return torch.from_numpy(self.c.get(self.p, i, i + 2, 4, 32, 'eval'))

def test_cache_with_dataloader_workers(tmp_path, vid):
    ds = _CachedClips(tmp_path / 'cache', vid)
    dl = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    first = torch.cat(list(dl)); second = torch.cat(list(dl))          # second epoch reads the cache
    torch.testing.assert_close(first, second)
    assert len(list((tmp_path / 'cache').rglob('*.npy'))) == 6
    assert not list((tmp_path / 'cache').rglob('*.tmp'))
    np.testing.assert_array_equal(frame_number(first[1].numpy()), [12, 17, 22, 27])

def test_cache_invalidated_when_file_changes(tmp_path):
    p = write_video(tmp_path / 'v.mp4', counter_frames(30)); c = ClipCache(tmp_path / 'c')
    a = c.get(p, 0, 2, 2, 32)
    import os, time; time.sleep(0.01)
    write_video(p, counter_frames(30)[::-1].copy()); os.utime(p)
    b = c.get(p, 0, 2, 2, 32)
    assert c.misses == 2 and not np.array_equal(a, b)

class _ManyFiles(torch.utils.data.Dataset):
    def __init__(self, paths): self.paths = paths
    def __len__(self): return len(self.paths)
    def __getitem__(self, i): return torch.from_numpy(read_frames(self.paths[i], 0, 2, 4, 32, 'eval'))

def test_workers_forked_after_the_parent_decoded(tmp_path):
    "Readers inherited through fork must never be closed in the worker (that aborts it)."
    paths = [write_video(tmp_path / f'v{i}.mp4', counter_frames(20)) for i in range(12)]
    for p in paths[:10]: read_frames(p, 0, 2, 4, 32, 'eval')              # the parent holds open readers
    dl = torch.utils.data.DataLoader(_ManyFiles(paths), batch_size=3, num_workers=2, timeout=60)
    assert torch.cat(list(dl)).shape == (12, 4, 32, 32, 3)
