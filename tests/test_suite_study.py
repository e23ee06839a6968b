"""The suite study plan (issue 25): `harlib study` on a `kind: suite` plan evaluates checkpoints, the floors of their
architectures and the ceiling by subject folds on every suite dataset found under a root, and lists what it skipped;
`--dry-run` says what it found and writes nothing; a mistake in the plan is one line, exit 2, nothing created."""
import json, os, pathlib, subprocess, sys
import pandas as pd, pytest, torch, yaml
from harlib.datasets.suite import SUITE
from harlib.datasets.suite_files import write_uci_har, write_usc_had, write_dsads, write_wisdm
from harlib.models import build_model, save_checkpoint
from harlib.contract import InputContract
from harlib.plans import show
from harlib.study import main

REPO = pathlib.Path(__file__).resolve().parents[1]
FOUND = ('uci_har', 'dsads', 'usc_had')
METHODS = ('ours', 'random-init patchtst (tiny)', 'hand-feature ceiling')

@pytest.fixture(scope='module')
def suite(tmp_path_factory):
    "Three suite datasets with three people each, WISDM with one user (no subject folds), six absent; a tiny checkpoint and a refused one."
    d = tmp_path_factory.mktemp('suite'); root = d / 'har'
    for w in (write_uci_har, write_usc_had, write_dsads): w(root, subjects=3)
    write_wisdm(root / 'other', subjects=1)
    torch.manual_seed(1); save_checkpoint(d / 'ours.pt', build_model('cross', 'tiny'), step=1, normalize='physical', contract=InputContract().to_dict())
    save_checkpoint(d / 'hz100.pt', build_model('imu_mae', 'tiny'), step=1, contract=InputContract(rate=100, window=500).to_dict())
    plan = dict(yaml.safe_load(show('suite')), root=str(root), checkpoints={'ours': str(d / 'ours.pt'), 'at 100 Hz': str(d / 'hz100.pt')},
                shots=[2, 4], folds=None, options=None)
    (d / 'my_suite.yaml').write_text(yaml.safe_dump(plan, sort_keys=False))
    return d

@pytest.fixture(scope='module')
def run(suite):
    "`harlib study my_suite.yaml --out run` in its own (niced) process, as a user types it."
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')
    r = subprocess.run(['nice', '-n', '10', sys.executable, '-c', 'import sys; from harlib.cli import main; sys.exit(main())', 'study',
                        str(suite / 'my_suite.yaml'), '--out', str(suite / 'run')], capture_output=True, text=True, cwd=suite, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    return suite / 'run', r.stdout

def test_every_found_dataset_has_every_method(run):
    out, _ = run
    res = pd.read_csv(out / 'results.csv'); ba = res[res.metric == 'balanced_accuracy']
    assert set(zip(ba.dataset, ba.method)) == {(d, m) for d in FOUND for m in METHODS}
    assert (ba.groupby(['dataset', 'method', 'shots']).fold.nunique() == 3).all()          # three people: leave one subject out
    assert json.loads((out / 'eval' / 'uci_har' / 'ck_0' / 'results.json').read_text())['config']['subject_disjoint']
    assert yaml.safe_load((out / 'plan.yaml').read_text())['kind'] == 'suite'

def test_skipped_lists_the_absent_and_why(run):
    out, stdout = run
    sk = pd.read_csv(out / 'skipped.csv').fillna('')
    absent = set(SUITE) - set(FOUND) - {'wisdm'}
    assert set(sk[sk.reason.str.startswith('not found under root')].dataset) == absent and len(absent) == 6
    assert sk[sk.dataset == 'wisdm'].reason.str.startswith('no subjects').all()
    refused = sk[sk.reason.str.startswith('contract refused')]
    assert set(refused.dataset) == set(FOUND) and set(refused.method) == {'at 100 Hz'} and refused.reason.str.contains('100 Hz').all()
    assert 'skipped: ' in stdout and 'pamap2: not found under root' in stdout

def test_table_datasets_by_methods_and_the_audit(run):
    out, stdout = run
    md = (out / 'tables' / 'suite.md').read_text()
    header = next(l for l in md.splitlines() if l.startswith('| dataset'))
    assert all(m in header for m in METHODS) and all(f'| {d} |' in md for d in FOUND) and '## 2 shots' in md
    audit = json.loads((out / 'audit.json').read_text())
    assert len(audit) == len(FOUND) * len(METHODS) and not any(audit.values())
    assert 'every one passes' in stdout

def test_dry_run_lists_found_and_skipped_and_writes_nothing(suite, capsys):
    assert main([str(suite / 'my_suite.yaml'), '--out', str(suite / 'dry'), '--dry-run']) == 0
    out = capsys.readouterr().out
    assert '4 of 10 datasets found' in out and 'uci_har' in out and '3 subjects' in out
    assert 'pamap2       not found under root' in out and 'wisdm        no subjects' in out and 'contract refused' in out
    assert 'harlib downstream --checkpoint' in out and not (suite / 'dry').exists()

@pytest.mark.parametrize('mutate, words', [
    (lambda d: d.update(shotz=[1]), "unknown key 'shotz'"),
    (lambda d: d.pop('root'), "missing key 'root'"),
    (lambda d: d.update(root='/nowhere/at/all'), 'root: no folder /nowhere/at/all'),
    (lambda d: d.update(datasets=['uci_har', 'kinetics']), "unknown dataset 'kinetics'"),
    (lambda d: d['checkpoints'].update(ours='/nowhere/last.pt'), 'checkpoints.ours: no file /nowhere/last.pt')])
def test_a_malformed_suite_plan_is_one_line_exit_2_and_creates_nothing(suite, tmp_path, capsys, mutate, words):
    d = yaml.safe_load((suite / 'my_suite.yaml').read_text()); mutate(d)
    f = tmp_path / 'bad.yaml'; f.write_text(yaml.safe_dump(d)); out = tmp_path / 'study'
    for extra in ([], ['--dry-run']):
        assert main([str(f), '--out', str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and str(f) in err and not out.exists()

def test_show_suite_prints_the_builtin_yaml(capsys):
    assert main(['--show', 'suite']) == 0
    text = capsys.readouterr().out
    assert text.startswith('# harlib study suite') and yaml.safe_load(text)['kind'] == 'suite'

def test_an_existing_folder_needs_resume_which_keeps_what_ran(run, suite, capsys):
    out, _ = run; before = pd.read_csv(out / 'skipped.csv')
    assert main([str(suite / 'my_suite.yaml'), '--out', str(out)]) == 2 and '--resume' in capsys.readouterr().err
    assert main([str(suite / 'my_suite.yaml'), '--out', str(out), '--resume']) == 0
    assert capsys.readouterr().out.count('done before, kept') == len(FOUND) * len(METHODS)
    pd.testing.assert_frame_equal(pd.read_csv(out / 'skipped.csv'), before)
