"""harlib.pretrain end to end: 2-process DDP through torchrun, resume after SIGKILL, run-dir refusal,
the frozen-video cache, and the papermill pipeline notebook. Tiny model, tiny synthetic data, CPU."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from harlib.pretrain import read_metrics, main

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DATA = ['--dataset', os.environ.get('PT_DATASET', 'synthetic'), '--data_opt', 'subjects=2', '--data_opt', 'minutes=1', '--preset', 'tiny']
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1', 'MPLBACKEND': 'Agg'}

def pretrain(out, *args, nproc=0, **kw):
    "Run harlib.pretrain in a fresh process (under torchrun when nproc > 0)."
    launch = [str(BIN / 'torchrun'), '--standalone', f'--nproc_per_node={nproc}'] if nproc else [sys.executable]
    cmd = [*launch, '-m', 'harlib.pretrain', *DATA, '--out', str(out), '--no_progress', '--num_workers', '0', *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=out.parent, **kw)

@pytest.fixture
def one_thread():
    "In-process runs use one thread, like the subprocesses (OMP_NUM_THREADS=1): identical arithmetic."
    n = torch.get_num_threads(); torch.set_num_threads(1); yield; torch.set_num_threads(n)

def run_here(out, *args):
    "Run harlib.pretrain.main in this process (no start-up cost)."
    return main([*DATA, '--out', str(out), '--no_progress', '--num_workers', '0', *args])

def ok(r):
    assert r.returncode == 0, f'exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}'
    return r

def test_two_process_ddp(tmp_path):
    out = tmp_path / 'ddp'
    ok(pretrain(out, '--batch_size', '4', '--accum_steps', '2', '--max_steps', '3', '--log_steps', '1', nproc=2))
    cfg, recs = json.loads((out / 'config.json').read_text()), read_metrics(out / 'metrics.jsonl')
    assert cfg['world_size'] == 2 and cfg['args']['accum_steps'] == 2
    assert [r['step'] for r in recs] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(r['loss'])) for r in recs)
    assert set(recs[0]) >= {'step', 'epoch', 'loss', 'lr', 'logit_scale', 'bias', 'samples_per_s', 'data_wait'}
    from harlib.models import load_checkpoint
    model, ck = load_checkpoint(out / 'checkpoints' / 'last.pt')
    assert ck['step'] == 3 and ck['world'] == 2 and len(ck['rng']) == 2
    assert not any(k.startswith('module.') for k in ck['state_dict'])
    assert (out / 'train.log').read_text().count('[rank 0]') > 0

def free_port() -> int:
    import socket
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def test_two_nodes_equal_one_node_of_two(tmp_path):
    "Two torchrun launchers of one process each against one c10d endpoint (two machines on 127.0.0.1) train as one launcher of two."
    from harlib.launch import torchrun_cmd
    args = ['-m', 'harlib.pretrain', *DATA, '--no_progress', '--num_workers', '0', '--batch_size', '4', '--max_steps', '3',
            '--log_steps', '1', '--seed', '3']
    run = lambda launcher, out: subprocess.Popen([*launcher, *args, '--out', str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 text=True, env=ENV, cwd=tmp_path)
    one = run(torchrun_cmd(2, env={}), tmp_path / 'one')
    log = one.communicate(timeout=120)[0]; ok(subprocess.CompletedProcess(one.args, one.returncode, log, ''))
    ep = f'127.0.0.1:{free_port()}'
    nodes = [run(torchrun_cmd(1, nnodes=2, node_rank=r, rdzv_endpoint=ep, rdzv_id='two_nodes', env={}), tmp_path / 'two') for r in (0, 1)]
    logs = [p.communicate(timeout=120)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], '\n'.join(l[-3000:] for l in logs)
    assert '--rdzv_backend=c10d' in nodes[0].args and '--standalone' in one.args
    assert json.loads((tmp_path / 'two' / 'config.json').read_text())['world_size'] == 2
    a, b = read_metrics(tmp_path / 'one' / 'metrics.jsonl'), read_metrics(tmp_path / 'two' / 'metrics.jsonl')
    assert [r['step'] for r in a] == [r['step'] for r in b] == [1, 2, 3]
    for x, y in zip(a, b):
        for k in ('loss', 'lr', 'logit_scale', 'bias'): assert x[k] == pytest.approx(y[k], rel=1e-5, abs=1e-6), (k, x, y)

def test_refuses_existing_run_dir(tmp_path, capsys):
    out = tmp_path / 'run'; out.mkdir(); (out / 'config.json').write_text('{}')
    assert main([*DATA, '--out', str(out), '--max_steps', '1', '--no_progress']) == 2
    assert '--resume' in capsys.readouterr().err and (out / 'config.json').read_text() == '{}'
    assert main([*DATA, '--out', str(out), '--resume', '--overwrite']) == 2

def test_resume_after_sigkill_matches_uninterrupted(tmp_path, one_thread):
    args = ['--epochs', '2', '--batch_size', '4', '--log_steps', '1', '--ckpt_steps', '2', '--seed', '7', '--num_workers', '1']
    assert run_here(tmp_path / 'full', *args) == 0
    out = tmp_path / 'killed'
    p = subprocess.Popen([sys.executable, '-m', 'harlib.pretrain', *DATA, '--out', str(out), '--no_progress', *args,
                          '--step_sleep', '0.4'], env=ENV, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log, t0 = out / 'train.log', time.time()
    while not (log.exists() and 'step 4: saved last.pt' in log.read_text()):
        assert p.poll() is None and time.time() - t0 < 90, 'the run ended before its second checkpoint'
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL
    assert run_here(out, '--resume') == 0
    full, resumed = read_metrics(tmp_path / 'full' / 'metrics.jsonl'), read_metrics(out / 'metrics.jsonl')
    assert [r['step'] for r in resumed] == [r['step'] for r in full]
    for a, b in zip(full, resumed):
        for k in ('loss', 'lr', 'logit_scale', 'bias', 'epoch'): assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-7), (a, b)
    assert 'resumed at step' in log.read_text()

def test_frozen_video_cache_reused(tmp_path, one_thread):
    cache = tmp_path / 'vcache'
    common = ['--freeze_video', '--video_cache', str(cache), '--max_steps', '2', '--batch_size', '4']
    assert run_here(tmp_path / 'a', *common) == 0 and run_here(tmp_path / 'b', *common) == 0
    (key,) = [p for p in cache.iterdir()]
    assert 'encoding' in (tmp_path / 'a' / 'train.log').read_text()
    assert 'windows cached' in (tmp_path / 'b' / 'train.log').read_text()
    import numpy as np
    assert np.load(key / 'done.npy').all()

def test_papermill_pipeline(tmp_path):
    out = tmp_path / 'nb_run'; out.mkdir()  # the executed notebook goes into the run directory
    params = dict(size='tiny', dataset=DATA[1], data_opts='subjects=2 minutes=1', max_steps=3, batch_size=4, nproc=1, num_workers=0, out=str(out))
    cmd = [str(BIN / 'papermill'), str(ROOT / 'nbs' / 'pipelines' / 'pretrain.ipynb'), str(out / 'pretrain.ipynb'),
           '-k', 'python3', '--cwd', str(tmp_path)] + [x for k, v in params.items() for x in ('-p', k, str(v))]
    ok(subprocess.run(cmd, capture_output=True, text=True, env=ENV))
    assert (out / 'figures' / 'pretrain_curves.png').stat().st_size > 1000
    assert [r['step'] for r in read_metrics(out / 'metrics.jsonl')] == [1, 2, 3]
    text = (out / 'pretrain.ipynb').read_text()
    assert 'torchrun' in text and 'final_loss' in text

def test_papermill_pipeline_fails_loudly(tmp_path):
    out = tmp_path / 'taken'; out.mkdir(); (out / 'config.json').write_text('{}')
    cmd = [str(BIN / 'papermill'), str(ROOT / 'nbs' / 'pipelines' / 'pretrain.ipynb'), str(tmp_path / 'e.ipynb'), '-k', 'python3',
           '--cwd', str(tmp_path), '-p', 'out', str(out), '-p', 'max_steps', '1', '-p', 'dataset', DATA[1]]
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    assert r.returncode != 0 and 'torchrun exited with status' in r.stdout + r.stderr

def test_ego4d_layout_with_video_cache(tmp_path, one_thread):
    from harlib.synthetic import write
    write('ego4d', tmp_path / 'ego', subjects=2, minutes=1, seed=3, size=64)
    args = ['--dataset', 'ego4d', '--data_root', str(tmp_path / 'ego'), '--preset', 'tiny', '--no_progress', '--num_workers', '0',
            '--max_steps', '2', '--batch_size', '4', '--freeze_video', '--video_cache', str(tmp_path / 'vc')]
    assert main([*args, '--out', str(tmp_path / 'run')]) == 0
    recs = read_metrics(tmp_path / 'run' / 'metrics.jsonl')
    assert recs[-1]['step'] == 2 and recs[-1]['loss'] > 0
    assert json.loads((tmp_path / 'run' / 'config.json').read_text())['windows'] > 8

def test_video_cache_pairs_each_imu_window_with_its_own_video(tmp_path, one_thread):
    "Some MMEA clips lack video: the cache (filled from the with-video dataset) must still be read by window, not by position."
    import numpy as np
    from harlib.synthetic import write
    from harlib.datasets import load
    from harlib.distributed import setup_dist, EpochSeeded
    from harlib.pretrain import parse_args, Trainer, video_backbone
    root = write('mmea', tmp_path / 'mmea', subjects=2, minutes=1, seed=4, size=32, log=lambda *a: None)
    vids = sorted((root / 'video').rglob('*.mp4')); assert len(vids) >= 6
    for v in vids[::3]: v.unlink()                    # every third clip has no video: readers drop it only with video
    a = parse_args(['--dataset', 'mmea', '--data_root', str(root), '--preset', 'tiny', '--no_progress', '--num_workers', '0',
                    '--batch_size', '2', '--freeze_video', '--video_cache', str(tmp_path / 'vc'), '--out', str(tmp_path / 'run')])
    tr = Trainer(a, setup_dist('cpu'))
    with_video = load('mmea', root, with_video=True, num_frames=a.clip_len, size=32)
    assert len(tr.ds) == len(with_video) < len(load('mmea', root))   # clips without video are left out of training
    row_of = {f'{r}@{s:.3f}': i for i, (r, s) in enumerate(zip(with_video.index['recording'], with_video.index['start_s']))}
    enc, seeded = video_backbone(tr.model).eval(), EpochSeeded(with_video, a.seed)
    for p in range(len(tr.ds)):
        it = tr.ds[p]
        key = f"{it['meta']['recording']}@{it['meta']['start_s']:.3f}"
        got = tr._inputs({'imu': it['imu'][None], 'pos': torch.tensor([p])})['vfeat'][0]
        with torch.no_grad(): want = enc(seeded[row_of[key]]['video'][None])[0]
        assert torch.allclose(got, want, atol=1e-5), f'window {key} paired with another window\'s video'

def test_channel_dropout_and_rotate_flags(tmp_path, one_thread):
    from harlib.pretrain import parse_args, Trainer
    from harlib.distributed import setup_dist
    from harlib.models import read_checkpoint
    args = ['--channel_dropout', '0.5', '--rotate', '--max_steps', '2', '--batch_size', '8', '--model', 'imu_mae']
    assert run_here(tmp_path / 'aug', *args) == 0
    ck = read_checkpoint(tmp_path / 'aug' / 'checkpoints' / 'last.pt')
    assert ck['args']['channel_dropout'] == 0.5 and ck['args']['rotate'] and ck['normalize'] == 'physical'
    tr = Trainer(parse_args([*DATA, '--out', str(tmp_path / 'x'), '--channel_dropout', '0.5', '--rotate', '--batch_size', '24',
                             '--model', 'imu_mae', '--num_workers', '0']), setup_dist('cpu'))
    b = next(iter(torch.utils.data.DataLoader(tr.ds, 24)))
    x = tr._inputs(b)
    dropped = ~x['mask'][:, 3]
    assert 0.2 < dropped.float().mean() < 0.8 and (x['imu'][dropped][..., 3:] == 0).all() and x['mask'][:, :3].all()
    kept = ~dropped                                               # rotated: vector lengths kept, values changed
    assert torch.allclose(x['imu'][kept][..., :3].norm(dim=-1), b['imu'][kept][..., :3].norm(dim=-1), atol=1e-4)
    assert not torch.allclose(x['imu'][kept][..., :3], b['imu'][kept][..., :3])
    assert torch.equal(tr._inputs(b)['imu'], x['imu'])            # the same draw for the same (seed, rank, epoch, batch)
    assert main([*DATA, '--out', str(tmp_path / 'bad'), '--channel_dropout', '1.5']) == 2

def test_tilt_flag_turns_each_window_a_little(tmp_path, one_thread):
    from harlib.pretrain import parse_args, Trainer
    from harlib.distributed import setup_dist
    tr = Trainer(parse_args([*DATA, '--out', str(tmp_path / 't'), '--tilt', '12', '--batch_size', '24', '--model', 'imu_mae',
                             '--num_workers', '0']), setup_dist('cpu'))
    b = next(iter(torch.utils.data.DataLoader(tr.ds, 24)))
    x, acc = tr._inputs(b)['imu'], b['imu'][..., :3]
    R = torch.linalg.lstsq(acc, x[..., :3]).solution                    # one rotation per window fits acc and gyro alike
    assert torch.allclose(b['imu'][..., 3:] @ R, x[..., 3:], atol=1e-4)
    ang = torch.rad2deg(torch.arccos(((R.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)))
    assert (ang <= 12.05).all() and (ang > 0.01).sum() >= 20 and ang.std() > 1   # small, different for each window
    assert torch.equal(tr._inputs(b)['imu'], x)                          # the same draw for the same (seed, rank, epoch, batch)
    assert main([*DATA, '--out', str(tmp_path / 'bad'), '--tilt', '15', '--rotate']) == 2
