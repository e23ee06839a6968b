"""Evaluation protocol: metrics by hand, planted/hard tasks, leakage, seeds, the downstream CLI."""
import json, math
import numpy as np, pandas as pd, pytest, torch, torch.nn as nn
from harlib import evaluate as ev
from harlib import downstream as ds


class Spectrum(nn.Module):
    "A fixed encoder that sees the toy task's planted frequencies."
    def forward(self, x): return torch.fft.rfft(x, dim=1).abs()[:, 1:32].flatten(1)


# ---- metrics equal hand-computed values -------------------------------------------------------------

def test_classification_metrics_by_hand():
    m = ev.classification_metrics([0, 0, 1, 1, 1, 2], [0, 0, 1, 2, 2, 2], 3)
    assert m['confusion'] == [[2, 0, 0], [0, 1, 2], [0, 0, 1]]
    assert m['balanced_accuracy'] == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert m['macro_f1'] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m['per_class_recall'] == pytest.approx([1, 1 / 3, 1])


def test_summary_ci():
    s = ev.summarize([0.7, 0.8, 0.9, 1.0, 0.6])
    sd = np.std([0.7, 0.8, 0.9, 1.0, 0.6], ddof=1)
    assert s['mean'] == pytest.approx(0.8) and s['sd'] == pytest.approx(sd)
    assert 0.6 <= s['ci_lo'] < 0.8 < s['ci_hi'] <= 1.0                  # bootstrap of the mean: inside the values' range


def test_zeroshot_metrics_by_hand():
    # prototypes: class 0 at (1,0); class 1 at (0,1) and (.6,.8); windows at the listed points
    sc = ev.prototype_scores(np.array([[1., .1], [.1, 1], [1, .9], [.2, 1]]), np.array([[1., 0], [0, 1], [.6, .8]]), [0, 1, 1], 2)
    z = ev.zeroshot_metrics(sc, [0, 1, 1, 0], 2)
    # predictions 0,1,1,1 -> ranks of the truth 1,1,1,2
    assert z['balanced_accuracy'] == pytest.approx(0.75)
    assert z['MRR'] == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert z['R@1'] == pytest.approx(0.75) and z['R@3'] == 1.0
    assert z['macro_f1'] == pytest.approx((2 / 3 + 0.8) / 2)


def test_zeroshot_paper_subsample_is_per_class_80pct():
    y = np.repeat([0, 1, 2], [10, 20, 5])
    for idx in ev.bootstrap_indices(y, 0.8, 5, seed=0, replace=False):
        assert np.bincount(y[idx]).tolist() == [8, 16, 4] and len(set(idx)) == len(idx)
    sc = np.eye(3)[y]                                       # a perfect scorer
    assert all(r['balanced_accuracy'] == 1 and r['MRR'] == 1 for r in ev.zeroshot_eval(sc, y, 3))


def test_retrieval_by_hand():
    a = np.array([[1., 0], [0, 1], [1, 1]]); b = np.array([[1., .2], [1, 1.2], [1, .9]])
    r = ev.retrieval_metrics(a, b, ks=(1, 2))
    # video->imu: b1 is closer to a2 than to a1 (rank 2); all others rank 1
    assert r['imu2video_R@1'] == 1 and r['imu2video_MRR'] == 1 and r['imu2video_median_rank'] == 1
    assert r['video2imu_R@1'] == pytest.approx(2 / 3) and r['video2imu_R@2'] == 1
    assert r['video2imu_MRR'] == pytest.approx(2.5 / 3)


def test_ties_count_against():
    assert ev.true_ranks(np.zeros((2, 4)), [0, 3]).tolist() == [4, 4]


# ---- splits: no leakage, reproducible ----------------------------------------------------------------

@pytest.mark.parametrize('seed', [0, 1, 2])
def test_no_window_or_subject_in_both(seed):
    X, y, subj = ev.toy_task(per_class=60, subjects=8, seed=seed)
    splits = ev.fewshot_splits(y, subj, shots=(5, 10, 20), folds=4, draws=2, test_per_class=10, seed=seed, val_frac=0.2)
    for s in splits:
        tr = np.r_[s.train, s.val]
        assert not set(tr) & set(s.test)
        assert not set(subj[tr]) & set(subj[s.test])
        assert np.bincount(y[tr], minlength=5).tolist() == [s.shots] * 5
        assert len(s.val) == 5 * max(1, round(0.2 * s.shots))
    tested = [g for s in splits if s.shots == 5 and s.draw == 0 for g in set(subj[s.test])]
    assert sorted(tested) == sorted(set(subj))                       # every subject tested, in exactly one fold


def test_leak_is_caught_in_code(monkeypatch):
    from harlib.evaluate import splits as es
    y = np.repeat(np.arange(3), 20); g = np.array(['a', 'b'] * 30)
    monkeypatch.setattr(es, 'fold_sides', lambda *a, **k: [(np.arange(0, 60, 4), np.array([2]))])  # window 2: subject 'a', as the pool
    with pytest.raises(es.LeakError, match='subject'): ev.fewshot_splits(y, g, shots=(2,))


def test_without_groups_window_disjoint():
    y = np.repeat(np.arange(4), 30)
    splits = ev.fewshot_splits(y, None, shots=(5, 10), folds=3, test_per_class=10)
    for s in splits:
        assert not set(s.train) & set(s.test) and np.bincount(y[s.test], minlength=4).max() <= 10
    assert len({s.fold for s in splits}) == 3


def test_reproducible_by_seed():
    X, y, subj = ev.toy_task(per_class=40)
    run = lambda seed: ev.linear_probe(ev.FeatureCache(Spectrum(), X, np.arange(len(y))), y,
                                       ev.fewshot_splits(y, subj, (5, 10), folds=2, test_per_class=10, seed=seed), 5, seed=seed, epochs=5)
    a, b, c = run(0), run(0), run(1)
    assert [r['confusion'] for r in a] == [r['confusion'] for r in b]
    assert [r['confusion'] for r in a] != [r['confusion'] for r in c]


# ---- planted easy task, hard task ---------------------------------------------------------------------

def test_planted_easy_task_above_90():
    X, y, subj = ev.toy_task(per_class=60, subjects=6, seed=5)
    splits = ev.fewshot_splits(y, subj, shots=(10, 20), folds=3, test_per_class=20, seed=0)
    res = ev.linear_probe(ev.FeatureCache(Spectrum(), X, np.arange(len(y))), y, splits, 5)
    assert min(r['balanced_accuracy'] for r in res) > 0.9


def test_random_init_encoder_probe_near_chance_on_hard_task():
    from harlib.models import build_model
    X, y, subj = ev.toy_task(per_class=60, subjects=6, signal=0.0, seed=7)
    torch.manual_seed(0)
    enc = ds.ImuFeatures(build_model('imu_mae', 'tiny'))
    splits = ev.fewshot_splits(y, subj, shots=(10, 20), folds=3, test_per_class=20, seed=0)
    res = ev.linear_probe(ev.FeatureCache(enc, X, np.arange(len(y))), y, splits, 5, standardize=True)
    assert abs(np.mean([r['balanced_accuracy'] for r in res]) - 0.2) < 0.1


def test_batched_heads_equal_separate():
    X, y, subj = ev.toy_task(per_class=30)
    F_ = ev.encode(Spectrum(), X); idx = np.arange(50)
    both = ev.fit_linear(np.stack([F_[idx], F_[idx + 50]]), np.stack([y[idx], y[idx + 50]]), 5, seeds=[3, 4], epochs=3, init='torch')
    alone = ev.fit_linear(F_[idx + 50][None], y[idx + 50][None], 5, seeds=[4], epochs=3, init='torch')
    torch.testing.assert_close(both.W[1], alone.W[0], atol=1e-5, rtol=1e-5)


def test_finetune_separate_learning_rates():
    X, y, subj = ev.toy_task(per_class=20)
    enc = nn.Sequential(Spectrum(), nn.Linear(186, 8))
    w0 = enc[1].weight.detach().clone()
    m = ev.finetune(enc, X[:40], y[:40], 5, epochs=2, lr_encoder=0.0, lr_head=1e-2, weight_decay=0.0)
    torch.testing.assert_close(m.encoder[1].weight.detach(), w0)      # lr 0 on the encoder: unchanged
    assert m.head.weight.abs().sum() > 0                               # the head learned


# ---- the downstream CLI ---------------------------------------------------------------------------------

def test_released_flags_map(tmp_path):
    a = ds.parse_args('--model imu2clip --checkpoint c.pt --mode finetune --dataset mmea --batch_size 8 --epochs 25 '
                      '--device cpu --train_samples 100 --val_samples 20 --save_model --report'.split())
    assert (a.shots, a.test_per_class, a.mode, a.save_model, a.report) == ([100], 20, ['finetune'], True, True)
    assert a.classes == ['standing', 'walking', 'sit_stand', 'downstairs', 'fall']


def test_cli_writes_results(tmp_path):
    argv = ['--model', 'imuptst', '--mode', 'lp', 'finetune', '--dataset', 'toy', '--epochs', '2', '--shots', '5',
            '--folds', '2', '--draws', '1', '--val_samples', '5', '--data_opt', 'per_class=20', '--save_model', '--report', '--quiet']
    assert ds.main(argv + ['--out', str(tmp_path / 'a')]) == 0
    assert ds.main(argv + ['--out', str(tmp_path / 'b')]) == 0
    a, b = (pd.read_csv(tmp_path / d / 'results.csv') for d in 'ab')
    assert list(a.columns) == ['method', 'pretrain', 'seed', 'target', 'mode', 'shots', 'fold', 'draw', 'repeat', 'metric', 'value']
    pd.testing.assert_frame_equal(a, b)                                # same seed, same numbers
    assert set(a['mode']) == {'lp', 'finetune'} and set(a['method']) == {'imuptst'}
    res = json.loads((tmp_path / 'a' / 'results.json').read_text())
    assert res['config']['subject_disjoint'] and len(res['results']) == 4
    assert (tmp_path / 'a' / 'report.txt').read_text().count('confusion') == 2
    assert len(list((tmp_path / 'a' / 'models').glob('*.pt'))) == 4


def _video_target(n_per_class=12, classes=3):
    "A labelled target with paired video whose colour encodes the class (for zero-shot / retrieval plumbing)."
    X, y, subj = ev.toy_task(n_classes=classes, per_class=n_per_class, subjects=4, seed=1)
    vid = np.zeros((len(y), 10, 32, 32, 3), np.uint8); vid[..., 0] = (y * 80)[:, None, None, None]
    return ds.Target('vt', y, subj, [f'c{i}' for i in range(classes)], lambda r: X[np.asarray(r, int)], lambda r: vid[np.asarray(r, int)])


def test_cli_zeroshot_and_retrieval(tmp_path, monkeypatch):
    monkeypatch.setattr(ds, 'load_target', lambda *a, **k: _video_target())
    out = tmp_path / 'z'
    assert ds.main(['--mode', 'zeroshot', 'retrieval', '--prototypes', '2', '--zs_test_per_class', '6', '--out', str(out), '--quiet']) == 0
    df = pd.read_csv(out / 'results.csv')
    zs = df[df['mode'] == 'zeroshot']
    assert sorted(zs.fold.unique()) == [0, 1, 2, 3] and sorted(zs.draw.unique()) == [0, 1] and {'MRR', 'R@1', 'R@3', 'balanced_accuracy', 'macro_f1'} <= set(zs.metric)
    assert {'imu2video_R@1', 'video2imu_MRR', 'imu2video_median_rank'} <= set(df[df['mode'] == 'retrieval'].metric)
    assert ds.main(['--mode', 'retrieval', 'zeroshot', '--prototypes', '2', '--zs_test_per_class', '6', '--out', str(tmp_path / 'z2'), '--quiet']) == 0
    again = pd.read_csv(tmp_path / 'z2' / 'results.csv')                # eval mode (no dropout): same numbers in any order
    key = ['mode', 'repeat', 'metric']
    pd.testing.assert_frame_equal(df.sort_values(key).reset_index(drop=True), again.sort_values(key).reset_index(drop=True))


def test_retrieval_pairs_are_drawn_from_every_window(tmp_path, monkeypatch):
    "--pairs N draws N pairs from the whole target, across its classes; by default 1,000, or every window of a smaller target."
    monkeypatch.setattr(ds, 'load_target', lambda *a, **k: _video_target())     # 3 classes x 12 windows, 4 subjects
    def drawn(*flags):
        out = tmp_path / ('_'.join(flags) or 'default')
        assert ds.main(['--mode', 'retrieval', *flags, '--out', str(out), '--quiet']) == 0
        res = json.loads((out / 'results.json').read_text())['results']; test = json.loads((out / 'splits.json').read_text())['splits'][0]['test']
        t = _video_target(); row = {w: i for i, w in enumerate(t.ids)}; rows = [row[w] for w in test]
        assert res[0]['pairs'] == len(rows); return np.bincount(t.y[rows], minlength=3)
    assert drawn().tolist() == [12, 12, 12]                              # fewer windows than 1,000: all of them
    some = drawn('--pairs', '7')
    assert some.sum() == 7 and (some > 0).sum() > 1                      # 7 in all, from more than one class


def test_cli_errors_are_clear(tmp_path, capsys):
    assert ds.main(['--checkpoint', str(tmp_path / 'nope.pt'), '--quiet']) == 2
    assert 'does not exist' in capsys.readouterr().err
    assert ds.main(['--dataset', 'toy', '--classes', 'walking', '--quiet', '--out', str(tmp_path)]) == 2


def test_an_earlier_evaluation_is_not_overwritten(tmp_path, capsys):
    "A second run into the same --out is refused (one line naming the folder) and leaves the results; --overwrite replaces them."
    out = tmp_path / 'e'
    argv = ['--dataset', 'toy', '--mode', 'handfeat', '--folds', '2', '--out', str(out), '--quiet']
    assert ds.main(argv + ['--shots', '5']) == 0
    before = (out / 'results.json').read_bytes(); capsys.readouterr()
    assert ds.main(argv + ['--shots', '10']) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and 'results.json' in err and '--overwrite' in err
    assert (out / 'results.json').read_bytes() == before
    assert ds.main(argv + ['--shots', '10', '--overwrite']) == 0
    assert json.loads((out / 'results.json').read_text())['config']['shots'] == [10]


def test_evaluate_pipeline_notebook(tmp_path):
    "The papermill run notebook with tiny parameters writes the combined results, table, figures and metrics."
    import pathlib, papermill as pm
    root = pathlib.Path(__file__).resolve().parents[1]
    run = tmp_path / 'run'
    pm.execute_notebook(str(root / 'nbs' / 'pipelines' / 'evaluate.ipynb'), str(tmp_path / 'out.ipynb'), cwd=str(root),
                        parameters=dict(out=str(run), targets=['toy'], modes=['lp', 'zeroshot'], shots=[5, 10], folds=2, epochs=2,
                                        model='imuptst', method='probe'),
                        kernel_name='python3', progress_bar=False)
    assert {p.name for p in (run / 'figures').iterdir()} == {'fewshot_curves.png', 'confusion_toy.png'}
    df = pd.read_csv(run / 'results.csv')
    assert set(df['method']) == {'probe'} and sorted(df['shots'].unique()) == [5, 10]
    m = json.loads((run / 'metrics.json').read_text())['mean']
    assert 0 <= m['toy|lp|5|balanced_accuracy'] <= 1 and (run / 'table.txt').exists()
    res = json.loads((run / 'results.json').read_text())
    assert res['n_skipped'] == 1 and res['skipped'][0]['mode'] == 'zeroshot'     # the toy target has no video: noted, not fatal


def test_embeddings_in_eval_mode():
    from harlib.models import build_model
    m = build_model('cross', 'tiny').train()
    t = _video_target(); a = ds.parse_args(['--quiet'])
    e1, e2 = ds.encode_imu_emb(m, t, np.arange(6), a), ds.encode_imu_emb(m, t, np.arange(6), a)
    np.testing.assert_array_equal(e1, e2)                              # dropout off: the same twice
    assert not m.training

def test_evaluation_video_is_deterministic(tmp_path):
    "Zero-shot prototypes and retrieval read the same frames every time (datasets default to training-time jitter)."
    from harlib import synthetic as syn
    root = syn.write('ego4d', tmp_path / 'ego4d', subjects=1, minutes=0.5, seed=3, size=32, log=lambda *a: None)
    t = ds.load_target('ego4d', root, with_video=True, opts=['size=32'])
    rows = np.arange(min(4, len(t.y)))
    a, b = t.videos(rows), t.videos(rows)
    assert a.shape[0] == len(rows) and np.array_equal(a, b)
