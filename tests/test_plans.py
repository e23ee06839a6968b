"""Issue 24 (first part): study plans are YAML files, built-in or the user's own, validated on load."""
import yaml, pytest
from harlib.study import main, PLANS
from harlib.plans import load_plan, show, BUILTIN


def test_builtin_plans_are_the_package_yaml_files(capsys):
    assert set(BUILTIN) >= {'quickstart', 'full', 'smoke'} and PLANS['quickstart'] == load_plan('quickstart')
    assert main(['--show', 'quickstart']) == 0
    text = capsys.readouterr().out
    assert text.startswith('# harlib study quickstart') and yaml.safe_load(text) == PLANS['quickstart']


@pytest.mark.parametrize('mutate, words', [
    (lambda d: d['evaluate'].update(shotz=[1]), "unknown key 'evaluate.shotz'"),
    (lambda d: d['evaluate']['modes'].update(cross_sigmoid=['lp', 'telepathy']), "unknown mode 'telepathy'"),
    (lambda d: d['evaluate'].update(targets=['Z_nowhere']), "unknown target 'Z_nowhere'"),
    (lambda d: d['pretrain'].update(methods=['cross_magic']), "unknown method 'cross_magic'"),
    (lambda d: d['evaluate']['modes'].update(imu2clip=['lp']), 'does not pretrain'),
    (lambda d: d['evaluate'].update(ft_shots=[5]), 'evaluate.ft_shots [5] are not among evaluate.shots')])
def test_a_malformed_plan_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, mutate, words):
    d = yaml.safe_load(show('smoke')); mutate(d); f = tmp_path / 'mine.yaml'; f.write_text(yaml.safe_dump(d))
    out = tmp_path / 'study'
    assert main([str(f), '--out', str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and str(f) in err and not out.exists()


def test_a_users_plan_file_runs_like_a_builtin(tmp_path):
    from harlib.study import Study
    f = tmp_path / 'my_smoke.yaml'; f.write_text(show('smoke').replace('shots: [1, 2]', 'shots: [1]'))
    s = Study(tmp_path / 'out', load_plan(f))
    assert s.plan['evaluate']['shots'] == [1] and yaml.safe_load((tmp_path / 'out' / 'plan.yaml').read_text()) == s.plan


def real_plan(root):
    "A plan over real-layout sources (empty folders: validation reads no data), towers from a local Hugging Face folder."
    for d in ('ego4d', 'mmea/UESTC-MMEA-CL/sensor/1_standing', 'mmea/UESTC-MMEA-CL/sensor/4_fall', 'pd', 'vmae'): (root / d).mkdir(parents=True)
    (root / 'vmae' / 'config.json').write_text('{"model_type": "videomae"}')
    return dict(sources=dict(ego4d=dict(dataset='ego4d', root=str(root / 'ego4d')), mmea=dict(dataset='mmea', root=str(root / 'mmea')),
                             pd=dict(dataset='pd', root=str(root / 'pd'))),
                towers=dict(videomae=str(root / 'vmae')),
                pretrain=dict(corpus='ego4d', methods=dict(cross_sigmoid=dict(lr=1e-4), imu_mae=None), epochs=1, batch_size=4),
                targets=dict(mmea5=dict(source='mmea', classes=['standing', 'fall'], protocol='folds', folds=2), pd=dict(source='pd', protocol='loso')),
                evaluate=dict(modes=dict(cross_sigmoid=['lp'], imu_mae=['lp'], random=['random']), targets=['mmea5', 'pd'], shots=[1]),
                launch=dict(nproc=1, nnodes=2, rdzv_endpoint='node01:29500'))


@pytest.mark.parametrize('mutate, words', [
    (lambda d, r: d['launch'].update(gpus=8), "unknown key 'launch.gpus'"),
    (lambda d, r: d['sources']['pd'].update(root=str(r / 'nowhere')), 'sources.pd.root'),
    (lambda d, r: d['sources']['pd'].pop('root'), 'sources.pd.root is missing'),
    (lambda d, r: d['targets']['pd'].update(classes=['walking', 'dancing']), "'dancing' is not a class of pd"),
    (lambda d, r: d['targets']['mmea5'].update(classes=['standing', 'walking']), "'walking' is not a class of mmea"),
    (lambda d, r: d['pretrain']['methods'].update(cross_magic={}), "unknown method 'cross_magic'"),
    (lambda d, r: d['evaluate']['modes'].update(imu_mae=['telepathy']), "unknown mode 'telepathy'"),
    (lambda d, r: d['towers'].update(videomae=str(r / 'pd')), 'holds no config.json'),
    (lambda d, r: d['pretrain'].update(corpus='ego5d'), "unknown source 'ego5d'")])
def test_a_malformed_real_data_plan_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, mutate, words):
    d = real_plan(tmp_path / 'real'); mutate(d, tmp_path / 'real'); f = tmp_path / 'real.yaml'; f.write_text(yaml.safe_dump(d))
    out = tmp_path / 'study'
    assert main([str(f), '--out', str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and str(f) in err and not out.exists(), err


def test_a_real_data_plan_validates_against_the_disk(tmp_path):
    d = real_plan(tmp_path / 'real'); f = tmp_path / 'real.yaml'; f.write_text(yaml.safe_dump(d))
    assert load_plan(f, disk=True)['targets']['mmea5']['classes'] == ['standing', 'fall']
