"""Real recordings as users have them (issue 14): an accelerometer-only folder in milli-g with date-time stamps at
62.5 Hz loads, embeds and evaluates; accelerometer-only evaluation of a 6-channel target; one normalisation from
pretraining to every target."""
import json
import numpy as np, pandas as pd, pytest, torch
from harlib.datasets import load, example_folder
from harlib.models import build_model, save_checkpoint, checkpoint_normalize
from harlib import downstream as dsm, embed

@pytest.fixture(scope='module')
def gait(tmp_path_factory):
    return example_folder(tmp_path_factory.mktemp('gait') / 'gait', subjects=3, bouts=3)

@pytest.fixture(scope='module')
def ck(tmp_path_factory):
    torch.manual_seed(0); p = tmp_path_factory.mktemp('ck') / 'ck.pt'
    save_checkpoint(p, build_model('cross', 'tiny'), step=1, normalize='physical'); return p

def test_folder_loads_embeds_and_evaluates(gait, ck, tmp_path):
    ds = load('folder', gait, strict=True)
    assert ds.classes == ['standing', 'walking', 'lying'] and not ds.channel_masks()[:, 3:].any()
    assert embed.main(['--checkpoint', str(ck), '--data_root', str(gait), '--out', str(tmp_path / 'e.parquet')]) == 0
    t = pd.read_parquet(tmp_path / 'e.parquet')
    assert len(t) == len(ds) and t.filter(like='emb_').shape[1] == 32 and set(t['subject']) == {'p01', 'p02', 'p03'}
    assert dsm.main(['--checkpoint', str(ck), '--dataset', 'folder', '--data_root', str(gait), '--mode', 'lp',
                     '--shots', '5', '--folds', '3', '--draws', '1', '--test_per_class', '5', '--epochs', '2', '--quiet', '--out', str(tmp_path / 'ev')]) == 0
    assert (pd.read_csv(tmp_path / 'ev' / 'results.csv')['target'] == 'folder').all()

def test_same_encoder_output_whatever_a_missing_gyro_held(gait, ck):
    from harlib.models import load_checkpoint
    model, _ = load_checkpoint(ck); ds = load('folder', gait)
    a = embed.embed_windows(model, ds)
    ds.data[:, 3:] = np.random.default_rng(0).normal(size=(len(ds.data), 3))     # garbage where the gyro is missing
    np.testing.assert_allclose(embed.embed_windows(model, ds), a, atol=1e-5)

def test_channels_acc_removes_the_gyroscope_and_masks_it(ck, monkeypatch, tmp_path):
    seen = {}
    real = dsm.run_fewshot
    def spy(mode, encoder, t, splits, a, store=None):
        seen['mask'], seen['x'], seen['name'] = encoder.mask, t.windows(np.arange(4)), t.name
        return real(mode, encoder, t, splits, a, store)
    monkeypatch.setattr(dsm, 'run_fewshot', spy)
    a = dsm.parse_args(['--checkpoint', str(ck), '--dataset', 'synthetic', '--data_opt', 'subjects=3', '--data_opt', 'minutes=3',
                        '--data_opt', 'labelled=true', '--classes', 'standing', 'writing', '--channels', 'acc', '--shots', '2', '--draws', '1', '--test_per_class', '2',
                        '--epochs', '1', '--quiet', '--out', str(tmp_path / 'acc')])
    dsm.run(a)
    assert seen['mask'].tolist() == [True] * 3 + [False] * 3 and (seen['x'][..., 3:] == 0).all() and (seen['x'][..., :3] != 0).any()
    assert seen['name'] == 'synthetic_acc'

def test_targets_get_the_checkpoints_normalisation(tmp_path):
    stats = {'mean': [0.0, 0.0, 9.0, 0.0, 0.0, 0.0], 'std': [2.0] * 6}
    p = save_checkpoint(tmp_path / 'ck.pt', build_model('imu_mae', 'tiny'), step=3, normalize=stats)
    assert checkpoint_normalize(p) == stats
    assert checkpoint_normalize(save_checkpoint(tmp_path / 'old.pt', build_model('imu_mae', 'tiny'), step=3)) == 'recording'  # older runs
    a = dsm.parse_args(['--checkpoint', str(p), '--dataset', 'synthetic', '--data_opt', 'subjects=2'])
    opts = dsm._opts(dsm.target_opts(a, checkpoint_normalize(p)))
    assert opts['normalize'] == stats
    ds = load('synthetic', subjects=2, minutes=1, normalize=opts['normalize'], median=1)
    raw = load('synthetic', subjects=2, minutes=1, normalize='none', median=1)
    np.testing.assert_allclose(ds.data, (raw.data - np.array(stats['mean'])) / 2.0, atol=1e-4)
    a2 = dsm.parse_args(['--checkpoint', str(p), '--dataset', 'synthetic', '--data_opt', 'normalize=recording'])
    assert dsm._opts(dsm.target_opts(a2, stats))['normalize'] == 'recording'          # an explicit option wins

def test_downstream_passes_each_windows_channel_mask(gait, ck):
    "An accelerometer-only dataset: downstream's encoders see its gyro as missing (as `harlib embed` does), not zeros measured."
    from harlib import evaluate as ev
    from harlib.models import load_checkpoint
    model, _ = load_checkpoint(ck); model.eval(); ds = load('folder', gait); t = dsm.target_from_dataset(ds, 'gait')
    rows = np.arange(min(12, len(ds))); X = t.windows(rows); acc = np.tile([True] * 3 + [False] * 3, (len(rows), 1))
    assert t.masks is not None and (t.masks(rows) == acc).all()
    masked = ev.encode(lambda x, m: model.imu_encoder(x, m), X, masks=acc)      # the gyro explicitly marked missing
    as_measured = ev.encode(lambda x: model.imu_encoder(x), X)                   # zeros fed as if measured
    assert not np.allclose(masked, as_measured, atol=1e-4)
    a = dsm.parse_args(['--dataset', 'folder', '--quiet'])
    for feature, enc in (('pre', dsm.ImuFeatures(model, 'pre', dsm.channel_choice(a))), ('post', dsm.ImuFeatures(model, 'post'))):
        probe = ev.FeatureCache(enc, t.windows, rows, masks=t.masks).feats                       # lp, random: the probes' path
        np.testing.assert_allclose(probe, embed.embed_windows(model, ds, feature)[rows], atol=1e-5)
    np.testing.assert_allclose(probe, dsm.encode_imu_emb(model, t, rows, a), atol=1e-5)        # zero-shot and retrieval
    np.testing.assert_allclose(ev.FeatureCache(dsm.ImuFeatures(model), t.windows, rows, masks=t.masks).feats, masked, atol=1e-5)
    class Spy(torch.nn.Module):                                                                 # fine-tuning: what the encoder gets
        seen = []
        def __init__(self): super().__init__(); self.lin = torch.nn.Linear(6, 4)
        def forward(self, x, mask=None): Spy.seen.append(mask); return self.lin(x.mean(1))
    ft = ev.finetune(Spy(), X, np.arange(len(rows)) % 2, 2, epochs=1, batch_size=4, M=t.masks(rows)); ev.predict(ft, X, M=t.masks(rows))
    assert len(Spy.seen) > 3 and all(m is not None and (m.numpy() == acc[:len(m)]).all() for m in Spy.seen)

def test_acc_only_target_masks_the_gyroscope(gait):
    ds = load('folder', gait); t = dsm.acc_only(dsm.target_from_dataset(ds, 'gait'))
    assert (t.masks(np.arange(3)) == [[True] * 3 + [False] * 3] * 3).all() and t.name == 'gait_acc'
