"""Issue 24: a study from a YAML plan over real-layout data (Ego4D, UESTC-MMEA-CL and the clinic's PD folders, written by
the loaders' fixture writer `harlib.synthetic.write`) with towers from a local Hugging Face folder: no synthetic step;
and `--dry-run` of the paper's plan pointed at those fixtures."""
import json, pathlib, yaml, pytest
import pandas as pd
from harlib.study import main, Study
from harlib.plans import show, load_plan

QUIET = dict(log=lambda *a: None)
PAPER5 = ['standing', 'walking', 'sit_stand', 'downstairs', 'fall']


@pytest.fixture(scope='module')
def fx(tmp_path_factory):
    "Tiny real-layout folders and tower folders that `save_pretrained` wrote (tiny VideoMAE and CLIP configs, random weights)."
    from harlib.synthetic import write
    from harlib.encoders import build_video_encoder, PRESETS
    d = tmp_path_factory.mktemp('real')
    roots = dict(ego4d=write('ego4d', d / 'ego4d', subjects=1, minutes=2, size=32, seed=1, **QUIET),
                 mmea=write('mmea', d / 'mmea', subjects=3, minutes=1, size=32, seed=2, **QUIET).parent,
                 pd=write('pd', d / 'pd', subjects=2, minutes=1, seed=3, **QUIET))
    for kind in ('videomae', 'clip'):
        build_video_encoder(dict(name=kind, **PRESETS['tiny'][kind])).model.save_pretrained(str(d / 'hf' / kind))
    return dict(roots={k: str(v) for k, v in roots.items()}, towers={k: str(d / 'hf' / k) for k in ('videomae', 'clip')})


def real_plan(fx):
    r = fx['roots']
    return dict(size='tiny', nproc=1, seed=0, video_px=32,
                sources=dict(ego4d=dict(dataset='ego4d', root=r['ego4d']), mmea=dict(dataset='mmea', root=r['mmea'], options=dict(subject_pattern=r'^(s\d+)_')),
                             pd=dict(dataset='pd', root=r['pd'])),
                towers=dict(videomae=fx['towers']['videomae']),
                pretrain=dict(corpus='ego4d', epochs=1, batch_size=4, lr=0.002, freeze_towers=True, methods=dict(cross_sigmoid={})),
                targets=dict(mmea5=dict(source='mmea', classes=PAPER5, protocol='folds', folds=3, label='MMEA (5 classes)'),
                             pd=dict(source='pd', protocol='loso', label='PD')),
                evaluate=dict(shots=[1], draws=1, epochs=2, ft_epochs=1, modes=dict(cross_sigmoid=['lp'], random=['random'], ceiling=['handfeat']),
                              targets=['mmea5', 'pd'], acc_targets=[], workers=1),
                launch=dict(nproc=1, threads=1))


@pytest.fixture(scope='module')
def study(fx, tmp_path_factory):
    d = tmp_path_factory.mktemp('study'); f = d / 'real.yaml'; f.write_text(yaml.safe_dump(real_plan(fx), sort_keys=False))
    assert main([str(f), '--dry-run', '--out', str(d / 'out')]) == 0 and not (d / 'out').exists()     # a dry run writes nothing
    assert main([str(f), '--out', str(d / 'out'), '--reference', str(d / 'no_reference')]) == 0
    return d / 'out'


def test_a_real_data_plan_runs_end_to_end_without_a_synthetic_step(study, fx):
    status = json.loads((study / 'status.json').read_text())
    assert 'data' not in status and not (study / 'data').exists() and not (study / 'towers').exists()   # nothing synthetic
    assert all(s['done'] for s in status.values()) and {'pretrain_cross_sigmoid', 'evaluate_cross_sigmoid', 'combine'} <= set(status)
    params = json.loads((study / 'notebooks' / 'pretrain_cross_sigmoid.ipynb').read_text())['metadata']['papermill']['parameters']
    assert params['dataset'] == 'ego4d' and params['data_root'] == str(pathlib.Path(fx['roots']['ego4d']).resolve())
    assert f"--video_weights={pathlib.Path(fx['towers']['videomae']).resolve()}" in params['extra_args']   # the local HF folder
    df = pd.read_csv(study / 'results.csv')
    assert set(df.target) == {'MMEA (5 classes)', 'PD'} and set(df['mode']) == {'lp', 'random', 'handfeat'}
    assert set(df[df['mode'] == 'lp'].pretrain) == {'ego4d (ego4d)'}
    ev = json.loads(next((study / 'eval' / 'cross_sigmoid').glob('MMEA*/results.json')).read_text())['config']
    assert ev['target']['classes'] == PAPER5 and ev['folds'] == 3 and ev['target']['subjects'] == 3


def test_gates_tables_and_audit_of_a_real_data_study(study):
    from harlib.evaluate.splits import audit
    gates = pd.read_csv(study / 'gates.csv')
    assert {'MMEA (5 classes)', 'PD'} <= set(gates.name) and 'cross-modal sigmoid (ours)' in set(gates.name)
    assert (study / 'tables' / 'table3_fewshot.csv').exists() and (study / 'comparisons.csv').exists()
    res = audit(study / 'eval'); assert res and not any(res.values())      # every splits.json passes `harlib audit`
    c = json.loads(next((study / 'eval' / 'cross_sigmoid').glob('PD/results.json')).read_text())['config']
    assert c['folds'] == c['target']['subjects'] == 2                      # leave one patient out: every patient a fold
    assert (study / 'figures' / 'fewshot_curves.png').exists() and (study / 'tables' / 'summary.md').exists()


def paper_on_fixtures(fx, tmp_path, **launch):
    d = yaml.safe_load(show('paper'))
    for k in ('ego4d', 'mmea', 'pd'): d['sources'][k]['root'] = fx['roots'][k]
    d['towers'] = dict(fx['towers']); d['launch'].update(launch)
    f = tmp_path / 'my_paper.yaml'; f.write_text(yaml.safe_dump(d, sort_keys=False)); return f


def test_paper_plan_dry_run_prints_every_command_and_the_estimate(fx, tmp_path, capsys):
    assert load_plan('paper')['pretrain']['batch_size'] == 32            # the built-in loads (placeholder roots are not read)
    bench = tmp_path / 'gpu.json'   # a record shaped as `harlib bench gpu --json` prints it; its figure is this test's, not a measurement
    bench.write_text(json.dumps(dict(device='TEST DEVICE', preset='paper', batch=32, ddp_samples_per_s=100.0)) + '\n')
    f, out = paper_on_fixtures(fx, tmp_path), tmp_path / 'out'
    assert main([str(f), '--dry-run', '--out', str(out), '--bench', str(bench)]) == 0
    text = capsys.readouterr().out; lines = text.splitlines()
    assert not out.exists()
    ego = int(next(l for l in lines if l.strip().startswith('ego4d:')).split(':')[1].split()[0].replace(',', ''))
    assert ego > 0 and any(l.strip().startswith('mmea:') for l in lines) and any(l.strip().startswith('pd:') for l in lines)
    runs = [l for l in lines if l.strip().startswith('runs: ')]
    assert len(runs) == 6 and all('--standalone --nproc_per_node=2 -m harlib.pretrain' in l for l in runs)
    assert all('--preset=paper' in l and '--batch_size=32' in l and '--lr=0.0001' in l for l in runs)
    assert sum('--epochs=50' in l for l in runs) == 5 and sum('--epochs=100' in l for l in runs) == 1   # IMU-only SSL: 100 epochs
    assert all('--video_weights=' not in l for l in runs if '--model=imu_mae' in l)
    assert any(f"--video_weights={pathlib.Path(fx['towers']['clip']).resolve()}" in l for l in runs if '--model=imu2clip' in l)
    assert sum(l.strip().startswith('evaluate_') for l in lines) == 9 and any(l.strip().startswith('combine:') for l in lines)
    samples = ego * (5 * 50 + 100)
    assert f'{samples:,} window-epochs' in text and f'GPU-hours: {samples / 100.0 / 3600:,.1f}' in text and 'TEST DEVICE' in text


def test_paper_plan_on_two_nodes_and_without_a_measurement(fx, tmp_path, capsys):
    f = paper_on_fixtures(fx, tmp_path, nnodes=2, node_rank=1, rdzv_endpoint='node01:29500')
    assert main([str(f), '--dry-run', '--out', str(tmp_path / 'out'), '--nproc', '4']) == 0
    text = capsys.readouterr().out
    runs = [l for l in text.splitlines() if l.strip().startswith('runs: ')]
    assert runs and all('--nnodes=2 --node_rank=1 --nproc_per_node=4 --rdzv_backend=c10d --rdzv_endpoint=node01:29500' in l for l in runs)
    assert '--standalone' not in text and 'GPU-hours: not estimated' in text
