"""`harlib study smoke`: the whole pipeline (data, torchrun pretraining, evaluation, analysis) end to end."""
import json, pathlib, subprocess, sys
import pandas as pd, pytest
from harlib.study import Study, PLANS, main

@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp('study') / 'smoke'
    assert main(['smoke', '--out', str(out)]) == 0
    return out

def test_every_step_ran_and_kept_its_notebook(smoke):
    status = json.loads((smoke / 'status.json').read_text())
    plan = PLANS['smoke']
    steps = ['data', *(f'pretrain_{m}' for m in plan['pretrain']['methods']), *(f'evaluate_{m}' for m in plan['evaluate']['modes']),
             'combine', 'analysis_ood_results', 'analysis_embeddings']
    assert sorted(status) == sorted(steps) and all(s['done'] for s in status.values())   # evaluations finish in any order (2 workers)
    for s in steps:
        if s != 'combine': assert (smoke / 'notebooks' / f'{s.split("_", 1)[1] if s.startswith("analysis") else s}.ipynb').exists(), s

def test_results_cover_the_plan(smoke):
    df = pd.read_csv(smoke / 'results.csv')
    assert list(df.columns) == ['method', 'pretrain', 'target', 'mode', 'shots', 'repeat', 'metric', 'value']
    assert set(df.target) == {'A: MMEA-like', 'B: PD-like', 'A: MMEA-like (acc only)', 'B: PD-like (acc only)'}
    acc = df[df.target.str.endswith('(acc only)')]      # the same windows without the gyroscope, frozen-feature modes only
    assert set(acc['mode']) <= {'lp', 'random', 'handfeat'} and 'lp' in set(acc['mode'])
    ours = df[df.method == 'cross-modal sigmoid (ours)']
    assert {'lp', 'finetune', 'zeroshot'} <= set(ours['mode'])
    assert set(df[df.method == 'supervised from scratch']['mode']) == {'scratch'}
    ba = df[df.metric == 'balanced_accuracy'].value
    assert ba.between(0, 1).all() and len(ba) > 0
    reps = df[(df['mode'] == 'lp') & (df.metric == 'balanced_accuracy')].groupby(['target', 'shots']).repeat.nunique()
    assert (reps == PLANS['smoke']['evaluate']['repeats']).all()

def test_evaluations_were_subject_disjoint(smoke):
    for f in (smoke / 'eval').glob('*/*/results.json'):
        cfg = json.loads(f.read_text())['config']
        assert cfg['subject_disjoint'] is True, f

def test_tables_and_figures_were_written(smoke):
    for t in ['table3_fewshot.csv', 'table4_zeroshot.csv', 'table5_ablation.csv', 'summary.md', 'geometry.csv']:
        assert (smoke / 'tables' / t).stat().st_size > 0, t
    for f in ['fewshot_curves.png', 'per_class_recall.png', 'imu_embeddings.png', 'modality_gap.png', 'data_window.png']:
        assert (smoke / 'figures' / f).stat().st_size > 1000, f
    assert 'cross-modal sigmoid (ours)' in (smoke / 'tables' / 'summary.md').read_text()
    assert (smoke / 'tables' / 'retrieval.csv').read_text().startswith('method,target')   # no retrieval in smoke: the header only

def test_a_finished_study_is_compared_with_its_reference(smoke, tmp_path, capsys):
    "A reference made here from the run itself matches; one whose cell moved by 10 points does not."
    ref = tmp_path / 'ref'; ref.mkdir()
    df = pd.read_csv(smoke / 'results.csv'); df.to_csv(ref / 'results.csv', index=False)
    assert main(['smoke', '--out', str(smoke), '--resume', '--reference', str(ref)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith('[study] matches the reference: all') and 'beside the reference' in '\n'.join(out)
    cell = (df['mode'] == 'lp') & (df.shots == df.shots.max()) & (df.target == df.target.iloc[0])
    df.loc[cell, 'value'] += 0.1; df.to_csv(ref / 'results.csv', index=False)
    assert main(['smoke', '--out', str(smoke), '--resume', '--reference', str(ref)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith('[study] differs from the reference: 1 of')

def test_existing_study_is_refused_and_resume_skips_finished_steps(smoke, capsys):
    assert main(['smoke', '--out', str(smoke)]) == 2
    err = capsys.readouterr().err
    assert '--resume' in err and len(err.strip().splitlines()) == 1
    logs = []
    Study(smoke, PLANS['smoke'], resume=True, log=logs.append).run()
    assert sum('done before, skipped' in l for l in logs) == len(json.loads((smoke / 'status.json').read_text()))
    timing = json.loads((smoke / 'timing.json').read_text())       # the wall time of this invocation, and that it resumed
    assert timing['resumed'] and len(timing['steps_done_before']) == len(json.loads((smoke / 'status.json').read_text()))

def test_gates_beside_the_tables_and_failed_pretraining_marked(smoke):
    from harlib.study_gates import GATE_COLUMNS, failed_pretraining
    g = pd.read_csv(smoke / 'gates.csv')
    assert list(g.columns) == GATE_COLUMNS and set(g.kind) == {'target', 'pretraining'}
    for line in (smoke / 'gates.csv').read_text().splitlines():      # no field holds a comma: a plain split reads the file too
        assert len(line.split(',')) == len(GATE_COLUMNS), line
    for tgt in ('A: MMEA-like', 'B: PD-like'):
        assert {'hand_feature_ceiling', 'random_encoder_probe'} <= set(g[g.name == tgt].gate)
    assert g[g.kind == 'pretraining'].gate.str.startswith('final_loss').any()
    marked = '✗ pretraining gate failed' in (smoke / 'tables' / 'summary.md').read_text()
    assert marked == bool(failed_pretraining(g))

def test_every_evaluation_passes_the_audit_and_cis_stay_in_range(smoke):
    from harlib.evaluate_splits import audit
    res = audit(smoke / 'eval')
    assert len(res) >= 2 * len(PLANS['smoke']['evaluate']['modes']) and not any(res.values())
    s = pd.read_csv(smoke / 'tables' / 'fewshot_all.csv')
    assert s.ci_lo.dropna().between(0, 1).all() and s.ci_hi.dropna().between(0, 1).all()
    assert s[s.n < 3].ci_lo.isna().all()

def test_quickstart_loads_the_pretrained_towers(tmp_path):
    from harlib.study import METHODS, TARGETS
    s = Study(tmp_path / 'qs', PLANS['quickstart'])
    ours, rand, mae = (s.pretrain_params(m) for m in ('cross_sigmoid', 'cross_randtower', 'imu_mae'))
    assert f'--video_weights={tmp_path / "qs" / "towers" / "videomae"}' in ours['extra_args'] and ours['freeze_video']
    assert '--video_weights' in s.pretrain_params('imu2clip')['extra_args'] and 'towers/clip' in s.pretrain_params('cross_clip')['extra_args']
    assert '--video_weights' not in rand['extra_args'] and rand['freeze_video']          # the random-init-tower ablation row
    assert not mae['freeze_video'] and ours['lr'] == PLANS['quickstart']['pretrain']['lr']
    assert 'cross_randtower' in PLANS['quickstart']['pretrain']['methods'] and 'towers' in PLANS['quickstart']['data']
    assert len(s.target_params('Aplus_mmea_like')['classes']) >= 20 and s.target_params('A_mmea_like')['classes'] is None
    assert {'zeroshot', 'retrieval'} <= set(PLANS['quickstart']['evaluate']['modes']['imu2clip'])

def test_quickstart_evaluation_scope_and_heldout_gate(tmp_path):
    "Held-out pairs H: retrieval only, for every method that retrieves; ablation variants on A+ and H; acc-only copies on B and C."
    from harlib.study import TARGETS
    s, e = Study(tmp_path / 'qs', PLANS['quickstart']), PLANS['quickstart']['evaluate']
    H = TARGETS['H_heldout_pairs']['label']
    for m, modes in e['modes'].items():
        ts = {t['name']: t for t in s.targets_for(m)}
        assert (H in ts) == ('retrieval' in modes)                     # every retrieving method meets the gate's pairs
        if H in ts: assert ts[H]['modes'] == ['retrieval'] and 'size=64' in ts[H]['data_opts'] and ts[H]['pairs'] == 300
        acc = {n for n in ts if n.endswith('(acc only)')}
        assert acc <= {'B: PD-like (acc only)', 'C: BasicMotions (acc only)'}
    assert {t['name'] for t in s.targets_for('cross_clip')} == {TARGETS['Aplus_mmea_like']['label'], H}
    assert len({t['name'] for t in s.targets_for('cross_sigmoid')}) == 7     # A, A+, B, B acc, C, C acc, H
    assert s.evaluate_params('cross_sigmoid')['threads'] == 1 and e['workers'] == 2

def test_retrieval_gate_reads_heldout_pairs_only(tmp_path):
    "A method's retrieval on a target's own clips is reported, not gated; on H it must reach 5x chance."
    from harlib.study_gates import pretrain_gates
    run = tmp_path / 'r'; run.mkdir()
    (run / 'config.json').write_text(json.dumps(dict(args=dict(batch_size=16, accum_steps=1), world_size=2, model_config=dict(kind='cross', loss='sigmoid'))))
    (run / 'metrics.jsonl').write_text('\n'.join(json.dumps(dict(step=s, loss=4 - s / 10)) for s in range(1, 11)))
    rows = lambda r1: pd.DataFrame([dict(method='m', target=t, mode='retrieval', shots=0, repeat=0, metric=k, value=v)
                                    for t, v1 in (('A', 0.0), ('H', r1)) for k, v in (('imu2video_R@1', v1), ('pairs', 100))])
    g = pretrain_gates({'m': run}, rows(.06), heldout={'H'})
    assert [r['passed'] for r in g] == [True, True] and 'H' in g[1]['gate'] and not any('on A ' in r['gate'] for r in g)
    assert pretrain_gates({'m': run}, rows(.04), heldout={'H'})[1]['passed'] is False      # 4x chance: above chance, below the gate


def test_make_data_writes_the_same_corpora_in_one_process_or_several(tmp_path):
    "The corpora render in worker processes (the largest first) or in this one; every file is the same either way."
    import hashlib
    from harlib.study import make_data
    data = dict(ego4d=dict(subjects=1, minutes=1), mmea=dict(subjects=2, minutes=1), pd=dict(subjects=1, minutes=1))
    logged = []
    one = make_data(tmp_path / 'one', data, seed=3, size=32, workers=1, log=lambda *a: None)
    two = make_data(tmp_path / 'two', data, seed=3, size=32, workers=2, log=logged.append)
    assert list(one) == list(two) == ['ego4d', 'mmea', 'pd']
    files = lambda root: {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in root.rglob('*') if p.is_file()}
    a, b = files(tmp_path / 'one' / 'data'), files(tmp_path / 'two' / 'data')
    assert len(a) > 10 and a == b
    assert [m.split(':')[0] for m in logged] == ['ego4d', 'mmea', 'pd']     # each corpus says where it was written
