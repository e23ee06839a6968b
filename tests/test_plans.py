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
