"""`harlib study smoke`: the whole pipeline (data, torchrun pretraining, evaluation, analysis) end to end."""
import json, pathlib, subprocess, sys
import pandas as pd, pytest
from harlib.study import Study, PLANS, main, run_name, seeds_of

@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp('study') / 'smoke'
    assert main(['smoke', '--out', str(out)]) == 0
    return out

def test_every_step_ran_and_kept_its_notebook(smoke):
    status = json.loads((smoke / 'status.json').read_text())
    plan = PLANS['smoke']
    steps = ['data', *(f'pretrain_{run_name(m, k)}' for m in plan['pretrain']['methods'] for k in range(seeds_of(plan, m))),
             *(f'evaluate_{run_name(m, k)}' for m in plan['evaluate']['modes'] for k in range(seeds_of(plan, m))),
             'combine', 'analysis_ood_results', 'analysis_embeddings']
    assert 'pretrain_cross_sigmoid_s1' in steps                                          # the smoke plan pretrains ours with two seeds
    assert sorted(status) == sorted(steps) and all(s['done'] for s in status.values())   # evaluations finish in any order (2 workers)
    for s in steps:
        if s != 'combine': assert (smoke / 'notebooks' / f'{s.split("_", 1)[1] if s.startswith("analysis") else s}.ipynb').exists(), s

def test_results_cover_the_plan(smoke):
    df = pd.read_csv(smoke / 'results.csv')
    assert list(df.columns) == ['method', 'pretrain', 'seed', 'target', 'mode', 'shots', 'fold', 'draw', 'repeat', 'metric', 'value']
    assert set(df.target) == {'A: MMEA-like', 'B: PD-like', 'A: MMEA-like (acc only)', 'B: PD-like (acc only)'}
    acc = df[df.target.str.endswith('(acc only)')]      # the same windows without the gyroscope, frozen-feature modes only
    assert set(acc['mode']) <= {'lp', 'random', 'handfeat'} and 'lp' in set(acc['mode'])
    ours = df[df.method == 'cross-modal sigmoid (ours)']
    assert {'lp', 'finetune', 'zeroshot'} <= set(ours['mode'])
    assert set(df[df.method == 'supervised from scratch']['mode']) == {'scratch'}
    ba = df[df.metric == 'balanced_accuracy'].value
    assert ba.between(0, 1).all() and len(ba) > 0
    lp = df[(df['mode'] == 'lp') & (df.metric == 'balanced_accuracy') & ~df.target.str.endswith('(acc only)')]
    subjects = {'A: MMEA-like': PLANS['smoke']['data']['mmea']['subjects'], 'B: PD-like': PLANS['smoke']['data']['pd']['subjects']}   # leave one subject out
    for (t, k), g in lp.groupby(['target', 'shots']):                 # leave one subject out, two draws per fold, both seeds of ours
        assert g.fold.nunique() == subjects[t] and g.draw.nunique() == PLANS['smoke']['evaluate']['draws'] and set(g.seed) == {0, 1}, (t, k)

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
    df.loc[cell, 'value'] += 5.0; df.to_csv(ref / 'results.csv', index=False)   # far outside any band a 2-fold cell can have
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
        gates = g[g.name == tgt].gate
        assert gates.str.startswith('hand_feature_ceiling').any() and gates.str.startswith('random_encoder_probe').any()
    assert g[g.kind == 'pretraining'].gate.str.startswith('final_loss').any()
    marked = '✗ pretraining gate failed' in (smoke / 'tables' / 'summary.md').read_text()
    assert marked == bool(failed_pretraining(g))

def test_every_evaluation_passes_the_audit_and_cis_stay_in_range(smoke):
    from harlib.evaluate.splits import audit
    res = audit(smoke / 'eval')
    assert len(res) >= 2 * len(PLANS['smoke']['evaluate']['modes']) and not any(res.values())
    s = pd.read_csv(smoke / 'tables' / 'fewshot_all.csv')
    assert s.ci_lo.dropna().between(0, 1).all() and s.ci_hi.dropna().between(0, 1).all()
    assert s[s.n < 2].ci_lo.isna().all()

def test_quickstart_loads_the_pretrained_towers(tmp_path):
    from harlib.study import METHODS, TARGETS
    s = Study(tmp_path / 'qs', PLANS['full'])
    ours, rand, mae = (s.pretrain_params(m) for m in ('cross_sigmoid', 'cross_randtower', 'imu_mae'))
    assert f'--video_weights={tmp_path / "qs" / "towers" / "videomae"}' in ours['extra_args'] and ours['freeze_video']
    assert '--video_weights' in s.pretrain_params('imu2clip')['extra_args'] and 'towers/clip' in s.pretrain_params('cross_clip')['extra_args']
    assert '--video_weights' not in rand['extra_args'] and rand['freeze_video']          # the random-init-tower ablation row
    assert not mae['freeze_video'] and ours['lr'] == PLANS['full']['pretrain']['lr']
    assert 'cross_randtower' in PLANS['full']['pretrain']['methods'] and 'towers' in PLANS['quickstart']['data']
    assert len(s.target_params('Aplus_mmea_like')['classes']) >= 20 and s.target_params('A_mmea_like')['classes'] is None
    assert {'zeroshot', 'retrieval'} <= set(PLANS['quickstart']['evaluate']['modes']['imu2clip'])

def test_quickstart_evaluation_scope_and_heldout_gate(tmp_path):
    "Held-out pairs H: retrieval only, for every method that retrieves; ablation variants on A+ and H; acc-only copies on B and C."
    from harlib.study import TARGETS
    s, e = Study(tmp_path / 'qs', PLANS['full']), PLANS['full']['evaluate']
    H = TARGETS['H_heldout_pairs']['label']
    for m, modes in e['modes'].items():
        ts = {t['name']: t for t in s.targets_for(m)}
        assert (H in ts) == ('retrieval' in modes)                     # every retrieving method meets the gate's pairs
        if H in ts: assert ts[H]['modes'] == ['retrieval'] and 'size=64' in ts[H]['data_opts'] and ts[H]['pairs'] == 1000
        acc = {n for n in ts if n.endswith('(acc only)')}
        assert acc <= {'B: PD-like (acc only)', 'C: BasicMotions (acc only)', 'D: watch (real) (acc only)'}
    assert {t['name'] for t in s.targets_for('cross_clip')} == {TARGETS['Aplus_mmea_like']['label'], H}
    assert len({t['name'] for t in s.targets_for('cross_sigmoid')}) == 9     # A, A+, B, B acc, C, C acc, D, D acc, H
    assert s.evaluate_params('cross_sigmoid')['threads'] == 1 and e['workers'] == 2

def test_retrieval_gate_reads_heldout_pairs_only(tmp_path):
    "A method's retrieval on a target's own clips is reported, not gated; on H the lower bound of its exact interval must reach 2x chance."
    from harlib.study_gates import pretrain_gates
    run = tmp_path / 'r'; run.mkdir()
    (run / 'config.json').write_text(json.dumps(dict(args=dict(batch_size=16, accum_steps=1), world_size=2, model_config=dict(kind='cross', loss='sigmoid'))))
    (run / 'metrics.jsonl').write_text('\n'.join(json.dumps(dict(step=s, loss=4 - s / 10)) for s in range(1, 11)))
    rows = lambda r1: pd.DataFrame([dict(method='m', target=t, mode='retrieval', shots=0, repeat=0, metric=k, value=v)
                                    for t, v1 in (('A', 0.0), ('H', r1)) for k, v in (('imu2video_R@1', v1), ('pairs', 100))])
    g = pretrain_gates({('m', None): run}, rows(.06), heldout=['H'])                      # 6 of 100: exact lower bound 2.2 %
    assert [r['passed'] for r in g] == [True, True] and 'H' in g[1]['gate'] and not any('on A' in r['gate'] for r in g)
    assert pretrain_gates({('m', None): run}, rows(.04), heldout=['H'])[1]['passed'] is False  # 4 of 100: point 4x chance, lower bound 1.1 %


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


# ---- issue 23: gates that fail closed, paired comparisons, every subject tested ---------------------------------

def test_gates_fail_closed_when_an_evaluation_is_missing(smoke, tmp_path):
    "Remove one evaluation (the random-init probe) and recombine: its gates are rows that fail as 'did not run', not absent rows."
    import shutil
    from harlib.study_gates import NOT_RUN
    copy = tmp_path / 'copy'
    for d in ('eval', 'pretrain'): shutil.copytree(smoke / d, copy / d, ignore=shutil.ignore_patterns('*.pt', 'models'))
    s = Study(copy, PLANS['smoke'], resume=True, log=lambda *a: None)
    before = s.gates(pd.read_csv(smoke / 'results.csv'))
    shutil.rmtree(copy / 'eval' / 'random'); s.combine()
    after = pd.read_csv(copy / 'gates.csv')
    assert len(after) == len(before)                                               # the same rows: the plan's, not the results'
    probe = after[after.gate.str.startswith('random_encoder_probe')]
    assert len(probe) and (probe.note == NOT_RUN).all() and not probe.passed.any()
    assert list(after.columns) == ['kind', 'name', 'gate', 'value', 'reference', 'chance', 'passed', 'note']

def test_comparisons_are_paired_and_the_reading_follows_them(smoke):
    from harlib.evaluate.report import COMPARISON_COLUMNS
    c = pd.read_csv(smoke / 'comparisons.csv')
    assert list(c.columns) == COMPARISON_COLUMNS and len(c)
    assert set(c[c.method == 'cross-modal sigmoid (ours)'].against_method) >= {'random-init PatchTST probe', 'supervised from scratch'}
    assert (c.seeds == 2).all()                                                     # ours' two pretraining seeds are in every comparison
    for r in c.dropna(subset=['ci_lo']).itertuples():
        assert r.reading == ('above' if r.ci_lo > 0 else 'below' if r.ci_hi < 0 else 'not shown to differ')
    reading = (smoke / 'tables' / 'reading.md').read_text().splitlines()
    cc = c.dropna(subset=['ci_lo'])
    assert len(reading) == int((cc.shots == cc.groupby(['target', 'mode']).shots.transform('max')).sum())
    assert (smoke / 'figures' / 'forest.png').stat().st_size > 1000 and (smoke / 'figures' / 'per_subject.png').stat().st_size > 1000

def test_every_subject_of_every_target_is_tested(smoke):
    for f in (smoke / 'eval').glob('*/*/splits.json'):
        sp = json.loads(f.read_text())
        for t, info in sp['targets'].items():
            few = [e for e in sp['splits'] if e['target'] == t and e['mode'] == 'fewshot']
            for k in {e['shots'] for e in few}:
                assert {g for e in few if e['shots'] == k for g in e['test_groups']} == set(info['groups']), (f, k)

def test_quickstart_is_ours_against_the_three_baselines_and_full_has_seeds(tmp_path):
    q, f = PLANS['quickstart'], PLANS['full']
    assert set(q['pretrain']['methods']) == {'cross_sigmoid', 'imu2clip', 'imu_mae'} and 'scratch' in q['evaluate']['modes']
    assert {'random', 'random_cnngru'} <= set(q['evaluate']['modes'])              # a floor for each IMU architecture
    assert all(seeds_of(f, m) == 3 for m in ('cross_sigmoid', 'imu2clip', 'imu_mae')) and seeds_of(f, 'cross_clip') == 1
    s = Study(tmp_path / 'f', f)
    assert [p['out'].rsplit('/', 1)[-1] for p in (s.pretrain_params('imu2clip', k) for k in range(3))] == ['imu2clip', 'imu2clip_s1', 'imu2clip_s2']
    assert {p['seed'] for p in (s.evaluate_params('imu2clip', k) for k in range(3))} == {f['seed']}   # every seed evaluated on the same splits
