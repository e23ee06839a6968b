"""Issue 12: evaluation you can cite. Each test names the defect it covers; each fails on the code before the issue."""
import json, math
import numpy as np, pandas as pd, pytest, torch
from harlib import evaluate as ev, downstream as ds


# ---- defect 1: window-level leakage without subject ids (BasicMotions) -----------------------------------

def test_basicmotions_groups_are_cases_and_official_split_is_used():
    t = ds.load_target('basicmotions')
    assert t.group_kind == 'recording' and t.official is not None
    splits = ev.fewshot_splits(t.y, t.groups, (10,), draws=5, official=t.official)
    g = np.asarray(t.groups)
    for s in splits:                                        # no case (10-s recording, two 5-s windows) on both sides
        assert not set(g[s.train]) & set(g[s.test])
        assert set(np.asarray(t.official)[s.test]) == {'test'} and set(np.asarray(t.official)[s.train]) == {'train'}


def test_downstream_says_which_protocol(tmp_path):
    assert ds.main(['--dataset', 'basicmotions', '--mode', 'lp', '--shots', '5', '--draws', '2', '--out', str(tmp_path), '--quiet']) == 0
    cfg = json.loads((tmp_path / 'results.json').read_text())['config']
    assert cfg['official_split'] and cfg['group_kind'] == 'recording' and 'official' in cfg['protocol']
    s = ev.summary(pd.read_csv(tmp_path / 'results.csv')).iloc[0]       # fixed test set: the CI resamples its 40 test cases
    assert s.n == 2 and 0 <= s.ci_lo <= s['mean'] <= s.ci_hi <= 1 and s.unit.startswith('official split')


# ---- defect 2: repeats that are one draw --------------------------------------------------------------------

def test_shot_count_without_distinct_draws_is_skipped_and_noted(tmp_path):
    y = np.repeat(np.arange(2), 40); g = np.arange(80) // 2           # 20 groups of two windows per class
    off = np.where(np.arange(80) % 40 < 20, 'train', 'test')          # pool: exactly 20 windows per class
    notes = []
    splits = ev.fewshot_splits(y, g, (10, 20), draws=5, official=off, skipped=notes)
    assert {s.shots for s in splits} == {10} and [n['shots'] for n in notes] == [20]
    assert len({tuple(s.train) for s in splits}) == 5
    assert ds.main(['--dataset', 'basicmotions', '--mode', 'lp', '--shots', '10', '20', '--draws', '5', '--out', str(tmp_path), '--quiet']) == 0
    res = json.loads((tmp_path / 'results.json').read_text())
    assert [n['shots'] for n in res['skipped_shots']] == [20] and {r['shots'] for r in res['results']} == {10}


# ---- defect 3: one test subject; patients never tested ---------------------------------------------------------------------------

def test_test_patients_rotate_leave_one_out():
    y = np.tile(np.repeat(np.arange(5), 30), 6); g = np.repeat([f'p{i}' for i in range(6)], 150)   # 6 patients, every class
    splits = ev.fewshot_splits(y, g, (10,), test_per_class=20)                # few patients: leave one out
    tested = [tuple(sorted(set(g[s.test]))) for s in splits]
    assert all(len(t) == 1 for t in tested) and len(set(tested)) == 6 and len(tested) == 6


# ---- defect 5: under-fitted probes --------------------------------------------------------------------------

def test_default_probe_is_solved_logistic_regression():
    from harlib.evaluate.probes import logreg_probe
    rng = np.random.default_rng(0); y = np.repeat(np.arange(4), 80); g = rng.integers(0, 8, len(y))
    X = rng.normal(size=(len(y), 64)).astype(np.float32); X[:, :4] = 0.02 * (np.eye(4)[y] + rng.normal(0, .3, (len(y), 4)))
    sp = ev.fewshot_splits(y, g, (10,), folds=3, test_per_class=20)
    ours, paper = logreg_probe(X, y, sp, 4), ev.linear_probe(X, y, sp, 4)
    assert np.mean([r['balanced_accuracy'] for r in ours]) > np.mean([r['balanced_accuracy'] for r in paper]) + 0.2
    assert all(r['converged'] for r in ours) and ds.parse_args([]).probe == 'logreg'


# ---- defect 6: unlike fine-tuning protocols -----------------------------------------------------------------

def test_finetune_full_trains_the_encoder_like_scratch(monkeypatch):
    seen = {}
    monkeypatch.setattr(ev, 'finetune_protocol', lambda *a, **k: seen.setdefault(len(seen), k) and [])
    a = ds.parse_args(['--mode', 'finetune', 'finetune_full', 'scratch'])
    for m in ('finetune', 'finetune_full', 'scratch'): ds.run_fewshot(m, torch.nn.Identity(), ds.toy_target(), [], a)
    assert seen[0]['lr_encoder'] == 1e-6 and seen[1] == seen[2] and seen[1]['lr_encoder'] == a.lr


# ---- defect 7: uncertainty out of range -----------------------------------------------------------------------

def test_ci_clipped_and_none_from_one_value():
    assert math.isnan(ev.summarize([0.7])['ci_lo'])
    for v in ([1.0, 1.0, 0.8], [0.0, 0.0, 0.3, 0.01], np.random.default_rng(0).uniform(.9, 1, 5)):
        s = ev.summarize(v); assert 0 <= s['ci_lo'] <= s['mean'] <= s['ci_hi'] <= 1


def test_zeroshot_redraws_prototypes_from_outside_the_fold():
    a = ds.parse_args(['--prototypes', '2']); t = ds.toy_target(n_classes=3, per_class=30)
    pool, test = ev.fold_sides(t.y, t.groups, 3)[0]
    assert not set(np.asarray(t.groups)[pool]) & set(np.asarray(t.groups)[test])
    draws = [ds.pick_prototypes(t, pool, a, draw=i)[1].tolist() for i in range(3)]
    assert len({tuple(d) for d in draws}) == 3


# ---- defect 8: the hand-written AdamW ---------------------------------------------------------------------------

def test_adamw_step_matches_torch():
    "In float64, so that only the update rule (not rounding order) can differ."
    torch.manual_seed(0); P0 = torch.randn(2, 3, 5, dtype=torch.float64); Gs = [torch.randn(2, 3, 5, dtype=torch.float64) for _ in range(200)]
    P, m, v, t = P0.clone(), torch.zeros_like(P0), torch.zeros_like(P0), torch.zeros(2, dtype=torch.float64)
    ref = torch.nn.Parameter(P0.clone()); opt = torch.optim.AdamW([ref], lr=1e-2, weight_decay=0.01)
    for G in Gs:
        t += 1; ev.probes._adamw_(P, G, m, v, t, torch.ones(2, dtype=torch.float64), 1e-2, 0.01)
        ref.grad = G.clone(); opt.step()
    torch.testing.assert_close(P, ref.detach(), atol=1e-6, rtol=0)


# ---- splits.json and `harlib audit` ----------------------------------------------------------------------------

def test_every_evaluation_writes_splits_and_audit_catches_a_planted_leak(tmp_path):
    from harlib.evaluate.splits import main as audit_main
    assert ds.main(['--mode', 'lp', '--shots', '5', '10', '--folds', '3', '--draws', '1', '--data_opt', 'per_class=60', '--out', str(tmp_path / 'ok'), '--quiet']) == 0
    sp = json.loads((tmp_path / 'ok' / 'splits.json').read_text())
    assert len(sp['splits']) == 6 and all('@' in i for i in sp['splits'][0]['train'])
    assert audit_main([str(tmp_path)]) == 0
    leak = sp['splits'][1]; leak['train'].append(leak['test'][0]); leak['train_groups'].append(leak['test_groups'][0])
    (tmp_path / 'bad').mkdir(); (tmp_path / 'bad' / 'splits.json').write_text(json.dumps(sp))
    assert audit_main([str(tmp_path / 'bad')]) == 1 and audit_main([str(tmp_path)]) == 1
    from harlib.cli import main as cli
    assert cli(['audit', str(tmp_path / 'ok')]) == 0


# ---- the same two defects through the old API only (so the failure on the old code is an assertion, not a missing name) ----

def test_no_basicmotions_case_on_both_sides_with_the_targets_own_groups():
    from harlib.datasets import load
    rec = load('basicmotions').index['recording'].astype(str).to_numpy()
    t = ds.load_target('basicmotions')
    for s in ev.fewshot_splits(t.y, t.groups, (10,), folds=5, test_per_class=10):
        assert not set(rec[s.train]) & set(rec[s.test])


def test_no_shot_count_reported_as_five_identical_draws():
    y = np.repeat(np.arange(2), 60); g = np.repeat(np.arange(12), 10)      # 12 subjects, 20 test windows per class
    with pytest.warns(UserWarning):
        splits = ev.fewshot_splits(y, g, (10, 40), folds=6, draws=3, test_per_class=20)
    for k, f in {(s.shots, s.fold) for s in splits}:
        draws = [tuple(s.train) for s in splits if s.shots == k and s.fold == f]
        assert len(set(draws)) == len(draws), k


# ---- defect 9: `harlib bench eval` compared unlike things ------------------------------------------------------

def test_bench_eval_same_batch_size_and_timed_once_each_side(monkeypatch):
    from harlib.bench import eval as be
    enc_batches, loops, orig = [], [], ev.FeatureCache
    monkeypatch.setattr(ev, 'FeatureCache', lambda enc, X, rows, bs=256, *a, **k: enc_batches.append(bs) or orig(enc, X, rows, bs, *a, **k))
    orig_loop = be.epoch_loop_probe
    monkeypatch.setattr(be, 'epoch_loop_probe', lambda *a, **k: loops.append(k.get('batch_size', 8)) or orig_loop(*a, **k))
    figs = be.run(quick=True)
    assert enc_batches == [figs['batch_size']] and set(loops) == {figs['batch_size']}   # one timed pass each, one batch size
