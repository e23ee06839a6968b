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
    assert list(status) == steps and all(s['done'] for s in status.values())
    for s in steps:
        if s != 'combine': assert (smoke / 'notebooks' / f'{s.split("_", 1)[1] if s.startswith("analysis") else s}.ipynb').exists(), s

def test_results_cover_the_plan(smoke):
    df = pd.read_csv(smoke / 'results.csv')
    assert list(df.columns) == ['method', 'pretrain', 'target', 'mode', 'shots', 'repeat', 'metric', 'value']
    assert set(df.target) == {'A: MMEA-like', 'B: PD-like'}
    ours = df[df.method == 'cross-modal, sigmoid (ours)']
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
    assert 'cross-modal, sigmoid (ours)' in (smoke / 'tables' / 'summary.md').read_text()

def test_existing_study_is_refused_and_resume_skips_finished_steps(smoke, capsys):
    assert main(['smoke', '--out', str(smoke)]) == 1
    assert '--resume' in capsys.readouterr().err
    logs = []
    Study(smoke, PLANS['smoke'], resume=True, log=logs.append).run()
    assert sum('done before, skipped' in l for l in logs) == len(json.loads((smoke / 'status.json').read_text()))

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
