"""Issue 23, the evaluation wing: group folds that test every subject once, one unit of uncertainty whose coverage is
simulated, paired comparisons, an audit that catches repeated folds, one registry of modes and one config object."""
import copy, json
import numpy as np, pandas as pd, pytest
from harlib import evaluate as ev, downstream as ds
from harlib.evaluate.splits import main as audit_main


# ---- protocol: every subject tested exactly once, distinct draws inside a fold ------------------------------------

def test_fourteen_subjects_in_seven_folds_are_each_tested_once():
    "The reference's A had 14 subjects and its '5 repeats' tested 2 sets of 7 (repeats 0, 2, 4 the same fold)."
    y = np.tile(np.repeat(np.arange(5), 20), 14); g = np.repeat([f's{i:03d}' for i in range(14)], 100)
    splits = ev.fewshot_splits(y, g, (10, 20), folds=7, draws=2)
    tests = {s.fold: frozenset(g[s.test]) for s in splits}
    assert len(tests) == 7 and all(len(t) == 2 for t in tests.values())
    assert sorted(x for t in tests.values() for x in t) == sorted(set(g))             # each subject in exactly one fold
    for f in range(7):
        a, b = [s for s in splits if s.fold == f and s.shots == 10]
        assert np.array_equal(a.test, b.test) and not np.array_equal(a.train, b.train)
        assert len(a.test) == 200                                                     # every window of the fold's two subjects


@pytest.fixture(scope='module')
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp('wing') / 'ok'
    assert ds.main(['--mode', 'lp', '--shots', '5', '10', '--folds', '3', '--draws', '2', '--data_opt', 'per_class=60',
                    '--data_opt', 'subjects=6', '--out', str(out), '--quiet']) == 0
    return out

def test_end_to_end_modes_run_on_the_ft_shots_only(tmp_path, capsys):
    "`--ft_shots` keeps fine-tuning and scratch to a subset of the shot counts; the probes keep every one; a count not in --shots is refused."
    out = tmp_path / 'ft'
    assert ds.main(['--mode', 'lp', 'finetune_full', '--shots', '2', '4', '--ft_shots', '2', '--folds', '2', '--draws', '1', '--ft_epochs', '1',
                    '--data_opt', 'per_class=20', '--data_opt', 'subjects=4', '--out', str(out), '--quiet']) == 0
    res = pd.DataFrame(json.loads((out / 'results.json').read_text())['results'])
    assert sorted(res[res['mode'] == 'lp'].shots.unique()) == [2, 4] and sorted(res[res['mode'] == 'finetune_full'].shots.unique()) == [2]
    assert len(res[res['mode'] == 'finetune_full']) == 2                   # both folds at 2 shots
    assert ds.main(['--mode', 'scratch', '--shots', '2', '--ft_shots', '3', '--out', str(tmp_path / 'bad'), '--quiet']) == 2
    assert '--ft_shots [3]: not among --shots [2]' in capsys.readouterr().err

def _plant(src, dst, fault):
    sp = json.loads((src / 'splits.json').read_text()); few = [e for e in sp['splits'] if e['mode'] == 'fewshot']
    if fault == 'repeated fold':                  # fold 1 tests fold 0's subjects again
        f0 = next(e for e in few if e['fold'] == 0)
        for e in few:
            if e['fold'] == 1: e['test'], e['test_groups'] = list(f0['test']), list(f0['test_groups'])
    elif fault == 'untested subject':             # the last fold never ran
        sp['splits'] = [e for e in sp['splits'] if e['fold'] != 2]
    elif fault == 'identical draws':              # draw 1 of fold 0 repeats draw 0
        d0, d1 = (next(e for e in few if e['fold'] == 0 and e['shots'] == 5 and e['draw'] == d) for d in (0, 1))
        d1['train'], d1['train_groups'] = list(d0['train']), list(d0['train_groups'])
    dst.mkdir(parents=True); (dst / 'splits.json').write_text(json.dumps(sp)); return dst

@pytest.mark.parametrize('fault, words', [('repeated fold', 'test the same group'), ('untested subject', 'never tested'),
                                          ('identical draws', 'draws take the same training set')])
def test_audit_fails_planted_faults(evaluated, tmp_path, capsys, fault, words):
    assert audit_main([str(evaluated)]) == 0
    capsys.readouterr()
    assert audit_main([str(_plant(evaluated, tmp_path / 'bad', fault))]) == 1
    assert words in capsys.readouterr().out

def test_results_name_fold_and_draw_and_every_subject(evaluated):
    df = pd.read_csv(evaluated / 'results.csv'); sp = json.loads((evaluated / 'splits.json').read_text())
    lp = df[(df['mode'] == 'lp') & (df.metric == 'balanced_accuracy')]
    assert lp.groupby('shots').apply(lambda g: (g.fold.nunique(), g.draw.nunique())).tolist() == [(3, 2), (3, 2)]
    info = sp['targets']['toy']; assert info['protocol'] == 'folds' and len(info['groups']) == 6
    tested = {g for e in sp['splits'] if e['mode'] == 'fewshot' and e['shots'] == 5 for g in e['test_groups']}
    assert tested == set(info['groups'])
    s = ev.summary(df).iloc[0]
    assert s.n == 3 and s.unit == '3 folds x 1 seed(s)'                     # the unit: folds, not the six splits


# ---- the interval: one unit, coverage by simulation ------------------------------------------------------------

def test_interval_covers_on_the_studys_shapes_and_the_old_one_did_not():
    for shape, kw in [((3, 7, 2), {}), ((3, 6, 2), {}), ((1, 6, 2), dict(seed_sd=0.)), ((1, 7, 1), dict(seed_sd=0.))]:
        assert ev.simulate_coverage(*shape, n=800, seed=11, **kw) >= .93, shape
    assert ev.simulate_coverage(1, 7, 2, n=800, seed=11, old=True) < .8        # 5 repeats that were 2 folds: about half

def test_seeds_widen_the_interval():
    folds = np.array([.6, .7, .65, .72, .58, .69])
    one, three = ev.crossed_ci(folds), ev.crossed_ci(np.stack([folds - .05, folds, folds + .05]))
    assert three['ci_hi'] - three['ci_lo'] > one['ci_hi'] - one['ci_lo']


# ---- paired comparisons -----------------------------------------------------------------------------------------

def test_paired_comparison_sees_a_shift_that_unpaired_intervals_hide():
    rng = np.random.default_rng(0); fold = rng.normal(.6, .1, 7)                  # subjects differ a lot; B is 3 points above A on every one
    rows = [dict(method=m, pretrain='x', seed=0, target='T', mode='lp', shots=10, fold=k, draw=0, repeat=k, metric='balanced_accuracy',
                 value=fold[k] + d + rng.normal(0, .005)) for m, d in (('A', 0), ('B', .03)) for k in range(7)]
    df = pd.DataFrame(rows); s = ev.summary(df).set_index('method')
    assert s.loc['A', 'ci_hi'] > s.loc['B', 'ci_lo']                               # the unpaired intervals overlap
    c = ev.comparisons(df, [('B', 'lp', 'A', 'lp', 'the other')]).iloc[0]
    assert c.reading == 'above' and c.ci_lo > 0 and c.p <= 2 / 2 ** 7 + 1e-12


# ---- one registry, one config ------------------------------------------------------------------------------------

def test_every_mode_list_reads_the_registry():
    from harlib.evaluate.modes import MODES, FEWSHOT, mode_names
    from harlib import study, study_gates
    assert set(ds.make_parser()._option_string_actions['--mode'].choices) == set(mode_names())
    assert study.FLOORS == {m: MODES[m].panel for m in ('scratch', 'random', 'random_paper', 'handfeat')}
    assert set(study_gates.LEARNED) == {'lp', 'finetune', 'finetune_full', 'lp_paper'} and FEWSHOT <= set(MODES)
    for p in study.PLANS.values():
        assert all(set(ms) <= set(MODES) for ms in p['evaluate']['modes'].values())

def test_the_pipeline_builds_the_config_directly():
    import pathlib
    src = (pathlib.Path(__file__).resolve().parents[1] / 'nbs' / 'pipelines' / 'evaluate.ipynb').read_text()
    assert 'EvalConfig(' in src and 'parse_args' not in src
    c = ev.EvalConfig(dataset='toy', mode=['lp'], folds=3).resolved()
    assert ev.EvalConfig.from_argv(c.argv()) == c

def test_one_home_for_splits():
    import harlib
    assert not hasattr(harlib.datasets.splits, 'fewshot') and ev.fewshot_splits is ev.splits.fewshot_splits


def test_the_readme_reading_is_the_references_generated_reading():
    "The README's plain reading is generated from the committed reference's (the full study's) comparisons.csv, word for word."
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1]; ref = root / 'runs' / 'reference' / 'full'
    readme = (root / 'README.md').read_text()
    lines = (ref / 'tables' / 'reading.md').read_text().splitlines()
    assert lines and all(l in readme for l in lines)
    c = pd.read_csv(ref / 'comparisons.csv').dropna(subset=['ci_lo'])
    assert len(lines) == len(c[c.shots == c.groupby(['target', 'mode']).shots.transform('max')])
    for r in c.itertuples():                                                               # no "above"/"below" where the interval holds 0
        assert r.reading == ('above' if r.ci_lo > 0 else 'below' if r.ci_hi < 0 else 'not shown to differ')


def test_results_break_pd_down_by_the_clinics_severity(tmp_path):
    "Per-subject scores, and per-severity means where the clinic's patients.csv says each patient's severity (issue 23's breakdowns)."
    from harlib.synthetic import write
    root = write('pd', tmp_path / 'pd', subjects=3, minutes=1, log=lambda *a: None)
    sheet = pd.read_csv(root / 'patients.csv')
    assert list(sheet.patient) == ['P01', 'P02', 'P03'] and set(sheet.severity) <= {'mild', 'moderate', 'severe'}
    (root / 'patients.csv').write_text('patient,severity\nP01,mild\nP02,severe\nP03,severe\n')   # the clinic's own categories
    out = tmp_path / 'ev'
    assert ds.main(['--mode', 'lp', '--dataset', 'pd', '--data_root', str(root), '--shots', '1', '--draws', '1',
                    '--out', str(out), '--quiet']) == 0
    rows = json.loads((out / 'results.json').read_text())['results']
    assert len(rows) == 3                                                     # leave one patient out
    for r in rows:
        (g, v), = r['per_group'].items()
        assert r['severity_of'] == {g: {'P01': 'mild'}.get(g, 'severe')} and r['per_severity'] == {r['severity_of'][g]: v}
