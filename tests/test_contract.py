"""Checkpoints that state their input (issue 25): pretraining writes the contract, `harlib inspect` prints it,
`adapt` brings a recording to it (and refuses in one line what it cannot), and an adapted 100-Hz accelerometer-only
recording in m/s^2 embeds exactly as the same recording resampled and converted by hand."""
import json
import numpy as np, pytest, torch
from scipy import signal
from harlib import imu
from harlib.imu import SensorSpec, G
from harlib.contract import InputContract, adapt, checkpoint_contract, contract_for, main as inspect_main
from harlib.constants import UsageError
from harlib.models import build_model, save_checkpoint, load_checkpoint
from harlib.pretrain import main as pretrain_main

DATA = ['--dataset', 'synthetic', '--data_opt', 'subjects=2', '--data_opt', 'minutes=1', '--preset', 'tiny']

@pytest.fixture(scope='module')
def acc_run(tmp_path_factory):
    "A 2-step pretraining on accelerometer-only data (the gyroscope masked in every window)."
    out = tmp_path_factory.mktemp('pt') / 'run'
    n = torch.get_num_threads(); torch.set_num_threads(1)
    try: assert pretrain_main([*DATA, '--data_opt', 'channels=acc', '--model', 'imu_mae', '--max_steps', '2', '--batch_size', '8',
                               '--out', str(out), '--no_progress', '--num_workers', '0']) == 0
    finally: torch.set_num_threads(n)
    return out / 'checkpoints' / 'last.pt'

def test_pretraining_writes_the_contract_and_inspect_prints_it(acc_run, capsys):
    c = checkpoint_contract(acc_run)
    assert not c.inferred and c.rate == 50 and c.window == 250 and c.placements == ('head',)
    assert c.trained_with == (True,) * 3 + (False,) * 3 and c.normalize == 'physical' and c.units[0] == 'g'
    assert inspect_main([str(acc_run)]) == 0
    out = capsys.readouterr().out
    assert 'model: imu_mae (preset tiny)' in out and 'trained with acc only' in out and 'placements: head' in out
    assert inspect_main([str(acc_run), '--json']) == 0 and json.loads(capsys.readouterr().out)['trained_with'] == [True] * 3 + [False] * 3

def test_inspect_refuses_a_file_in_one_line(tmp_path, capsys):
    (tmp_path / 'x.pt').write_bytes(b'junk')
    assert inspect_main([str(tmp_path / 'x.pt')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('harlib inspect:') and 'x.pt' in err[0]

def test_adapted_recording_embeds_as_by_hand(tmp_path):
    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / 'ck.pt', build_model('cross', 'tiny'), step=1, normalize='physical', contract=InputContract(placements=('head',)).to_dict())
    model, ckd = load_checkpoint(ck); model.eval(); contract = checkpoint_contract(ckd)
    rng = np.random.default_rng(1); t = np.arange(1500) / 100
    x = np.stack([3 * np.sin(2 * np.pi * 1.5 * t), np.zeros_like(t), np.full_like(t, G)], 1) + rng.normal(0, 0.2, (1500, 3))   # 15 s, 100 Hz, m/s^2
    y, mask, what = adapt(x, SensorSpec(100, 'm/s2', 'none', placement='wrist'), contract)
    assert what == 'adapted: 100 Hz -> 50 Hz; acc m/s2 -> g; no gyroscope: gyro channels zero and masked'
    hand = np.concatenate([signal.resample_poly(x, 1, 2, axis=0, padtype='line') / G, np.zeros((750, 3))], 1).astype(np.float32)
    np.testing.assert_allclose(y, hand, rtol=1e-5, atol=1e-6)
    emb = lambda a: model.encode_imu(torch.from_numpy(imu.sliding_windows(a, 250).copy()), mask=torch.as_tensor(mask)[None].expand(3, 6)).detach().numpy()
    np.testing.assert_allclose(emb(y), emb(hand), rtol=1e-5, atol=1e-6)
    assert mask.tolist() == [True] * 3 + [False] * 3

def test_units_both_ways_and_refusals():
    rng = np.random.default_rng(0); x = rng.normal(size=(500, 6))
    si = InputContract(units=('m/s2',) * 3 + ('rad/s',) * 3, normalize='recording')
    y, _, what = adapt(x, SensorSpec(50, 'g', 'deg/s'), si)
    np.testing.assert_allclose(y, x * np.repeat([G, np.pi / 180], 3), rtol=1e-5)
    assert what == 'adapted: acc g -> m/s2; gyro deg/s -> rad/s'
    with pytest.raises(UsageError, match='windows of 2.56 s'): adapt(rng.normal(size=(3, 128, 6)), SensorSpec(50), si)
    with pytest.raises(UsageError, match='shorter than one 5-s window'): adapt(rng.normal(size=(200, 3)), SensorSpec(100, gyro_unit='none'), si)
    with pytest.raises(UsageError, match='harlib adapts to'): adapt(x, SensorSpec(50), InputContract(channels=('a',) * 6))

def test_older_checkpoints_get_an_inferred_contract(tmp_path):
    old = save_checkpoint(tmp_path / 'old.pt', build_model('imu_mae', 'tiny'), step=3)   # before stored contracts and normalisations
    c = checkpoint_contract(old)
    assert c.inferred and c.normalize == 'recording' and c.units[0] == 'm/s2' and 'inferred' in c.summary()

def test_a_contract_names_the_placement_this_load_read(tmp_path):
    from harlib.datasets import load, write_suite
    write_suite(tmp_path, ['pamap2'])
    assert contract_for(load('pamap2', tmp_path, position='chest')).placements == ('chest',)
    assert contract_for(load('pamap2', tmp_path)).placements == ('wrist',)


def test_downstream_and_embed_apply_the_contract(acc_run, tmp_path, capsys):
    "A checkpoint trained on the accelerometer alone is evaluated and embedded without the gyroscope, and the commands say so."
    from harlib import downstream as dsm, embed
    data = ['--dataset', 'synthetic', '--data_opt', 'subjects=3', '--data_opt', 'minutes=3', '--data_opt', 'labelled=true']
    assert dsm.main(['--checkpoint', str(acc_run), '--model', 'imuptst', *data, '--classes', 'standing', 'writing', '--mode', 'lp',
                     '--shots', '2', '--folds', '3', '--draws', '1', '--epochs', '1', '--out', str(tmp_path / 'd'), '--quiet']) == 0
    assert 'gyroscope removed and masked' in capsys.readouterr().err
    assert json.loads((tmp_path / 'd' / 'results.json').read_text())['config']['channels'] == 'acc'
    assert embed.main(['--checkpoint', str(acc_run), *data, '--out', str(tmp_path / 'e.parquet')]) == 0
    assert 'gyroscope removed and masked' in capsys.readouterr().out

def test_a_contract_the_loaders_cannot_meet_is_refused_in_one_line(tmp_path, capsys):
    from harlib import downstream as dsm
    p = save_checkpoint(tmp_path / 'ck.pt', build_model('imu_mae', 'tiny'), step=1, normalize='physical',
                        contract=InputContract(rate=100, window=500).to_dict())
    assert dsm.main(['--checkpoint', str(p), '--model', 'imuptst', '--quiet', '--out', str(tmp_path / 'x')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'wants 500 at 100 Hz' in err[0] and not (tmp_path / 'x').exists()
