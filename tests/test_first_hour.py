"""Issue 15, the first hour of a new user: every command's help, one-line mistakes, the reference run apart from
where `harlib study` writes, and studies' notebooks that run without spurious warnings."""
import ast, contextlib, importlib, io, json, os, pathlib, subprocess, sys
import pytest
from harlib import cli
from harlib.cli import Parser

ROOT = pathlib.Path(__file__).resolve().parents[1]

def _call(cmd, argv):
    "(status, stdout, stderr) of `harlib cmd argv` in this process (--help's SystemExit(0) as status 0)."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: rc = cli.main([cmd, *argv])
        except SystemExit as e: rc = e.code
    return rc, out.getvalue(), err.getvalue()

class _Got(Exception): pass

def _parser(cmd) -> Parser:
    "The parser a command builds (caught at parse_args)."
    orig = Parser.parse_args
    def grab(self, *a, **k): raise _Got(self)
    Parser.parse_args = grab
    try: cli.resolve(cmd)([])
    except _Got as g: return g.args[0]
    finally: Parser.parse_args = orig
    raise AssertionError(f'{cmd} built no harlib.cli.Parser')

@pytest.mark.parametrize('cmd', list(cli.COMMANDS))   # every command, those added later included: each builds a harlib.cli.Parser
def test_help_one_default_per_option_and_a_sentence_for_every_flag(cmd):
    rc, out, _ = _call(cmd, ['--help'])
    assert rc == 0 and '(default: None)' not in out and 'usage: harlib' in out
    p = _parser(cmd)
    for act in p._actions:
        if act.help == '==SUPPRESS==': continue
        assert act.help and len(act.help) > 8, f'{cmd} {act.option_strings or act.dest}: no help'
        assert p.formatter_class('x')._get_help_string(act).count('(default') <= 1, (cmd, act.option_strings)
        assert all('_' in o or '-' not in o[2:] for o in act.option_strings), f'{cmd}: flag style {act.option_strings}'

def test_bench_cases_and_downstream_modes_are_described():
    from harlib.bench import CASES
    from harlib.evaluate.modes import mode_names
    out = _call('bench', ['--help'])[1]
    for c in CASES: assert f'\n  {c} ' in out, c
    out = _call('downstream', ['--help'])[1]
    for m in mode_names(): assert f'\n  {m} ' in out, m   # every command-line mode (the registry's)

def test_synth_keeps_the_old_flag_spelling_hidden(tmp_path):
    out = _call('synth', ['--help'])[1]
    assert '--video_minutes' in out and '--video-minutes' not in out
    assert _parser('synth').parse_known_args(['--out', 'x', '--video-minutes', '2'])[0].video_minutes == 2

def test_top_level_help_and_an_unknown_command():
    rc, out, _ = _call('--help', [])
    assert rc == 0 and all(c in out for c in cli.COMMANDS) and '--debug' in out
    rc, _, err = _call('pretrian', [])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and 'pretrain' in err and 'downstream' in err

def test_unknown_dataset_lists_every_accepted_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = _call('downstream', ['--dataset', 'nope'])
    assert rc == 2 and all(n in err for n in ('toy', 'patient_persec', 'pd', 'mmea', 'basicmotions', 'byo'))
    rc, _, err = _call('pretrain', ['--dataset', 'nope', '--out', 'r'])
    assert rc == 2 and 'patient_persec' in err and 'ego4d' in err and not (tmp_path / 'r').exists()

MISTAKES = {  # name -> argv of one user mistake each
    'pretrain_wrong_root': ['pretrain', '--dataset', 'ego4d', '--data_root', 'NOT_EGO4D', '--out', 'r'],
    'pretrain_unknown_model': ['pretrain', '--model', 'gpt', '--out', 'r'],
    'pretrain_bad_opt': ['pretrain', '--data_opt', 'subjects', '--out', 'r'],
    'downstream_missing_root': ['downstream', '--dataset', 'mmea', '--data_root', 'nowhere', '--out', 'r'],
    'downstream_unknown_mode': ['downstream', '--mode', 'magic', '--out', 'r'],
    'downstream_missing_checkpoint': ['downstream', '--checkpoint', 'nope.pt', '--out', 'r'],
    'downstream_bad_checkpoint': ['downstream', '--checkpoint', 'junk.pt', '--out', 'r'],
    'synth_existing_out': ['synth', '--out', 'junk.pt'],
    'synth_bad_size': ['synth', '--out', 'r', '--size', '2'],
    'bench_unknown_case': ['bench', 'warp'],
    'study_unknown_plan': ['study', 'papers', '--out', 'r'],
    'study_resume_and_overwrite': ['study', 'smoke', '--out', 'r', '--resume', '--overwrite'],
    'docs_wrong_root': ['docs', '--readme', '--root', 'nowhere'],
}

@pytest.mark.parametrize('name', list(MISTAKES))
def test_a_mistake_is_one_line_status_2_and_creates_nothing(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path); (tmp_path / 'junk.pt').write_text('not a checkpoint')
    cmd, *argv = MISTAKES[name]
    rc, _, err = _call(cmd, argv)
    assert rc == 2, (name, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith(f'harlib {cmd}: ') and 'Traceback' not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['junk.pt'], name

def test_existing_study_folder_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path); (tmp_path / 'runs' / 'smoke').mkdir(parents=True); (tmp_path / 'runs' / 'smoke' / 'x').write_text('')
    rc, _, err = _call('study', ['smoke'])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and '--resume' in err and '--overwrite' in err

def test_pretrain_wrong_root_as_a_new_user_types_it(tmp_path):
    "The issue's case, through the console script: one line, status 2, no run folder left behind; --debug: the traceback."
    exe, argv = str(pathlib.Path(sys.executable).parent / 'harlib'), ['pretrain', '--dataset', 'ego4d', '--data_root', 'NOT_EGO4D']
    r = subprocess.run([exe, *argv], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and 'NOT_EGO4D' in r.stderr and '--data_root' in r.stderr
    assert list(tmp_path.iterdir()) == []
    r = subprocess.run([exe, *argv, '--debug'], capture_output=True, text=True, cwd=tmp_path)
    assert 'Traceback' in r.stderr and 'UsageError' in r.stderr and list(tmp_path.iterdir()) == []

# ---- item 1: the reference run lives apart from where `harlib study` writes
def test_reference_run_is_committed_apart_from_the_default_output():
    git = lambda *a: subprocess.run(['git', *a], cwd=ROOT, capture_output=True, text=True).stdout
    assert 'runs/reference/quickstart/results.csv' in git('ls-files', 'runs/reference/quickstart')
    assert git('ls-files', 'runs/quickstart') == ''                       # a fresh clone has no runs/quickstart
    assert git('check-ignore', 'runs/quickstart/results.csv').strip()      # and the study's output stays out of git
    assert not git('check-ignore', 'runs/reference/quickstart/results.csv').strip()
    from harlib.docs import build_site
    import inspect
    assert inspect.signature(build_site).parameters['study'].default == 'runs/reference/quickstart'

# ---- item 5: papermill parses every parameters cell; kernels start without warnings; tqdm has its widgets
@pytest.mark.parametrize('nb', sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'nbs').glob('*/*.ipynb')))
def test_papermill_parses_every_parameter(nb):
    from papermill.translators import PythonTranslator
    cells = [c for c in json.loads((ROOT / nb).read_text())['cells'] if 'parameters' in c['metadata'].get('tags', [])]
    for c in cells:
        src = ''.join(c['source'])
        names = [t.id for s in ast.parse(src).body if isinstance(s, ast.Assign) for t in s.targets]
        assert [p.name for p in PythonTranslator.inspect({'source': src})] == names, nb

def test_study_kernels_start_without_warnings_and_show_progress_bars(tmp_path, capfd):
    import nbformat
    from harlib.study import execute
    nb = nbformat.v4.new_notebook(metadata={'kernelspec': {'name': 'python3', 'language': 'python', 'display_name': 'Python 3'}})
    nb.cells = [nbformat.v4.new_code_cell('x = 1', metadata={'tags': ['parameters']}),
                nbformat.v4.new_code_cell('from tqdm.auto import tqdm\nfor _ in tqdm(range(3)): pass\nprint(x)')]
    nbformat.write(nb, tmp_path / 'a.ipynb')
    out = execute(tmp_path / 'a.ipynb', tmp_path / 'b.ipynb', dict(x=2), log=lambda *a: None)
    err = capfd.readouterr().err
    assert 'without encryption' not in err and 'Unable to parse' not in err and 'unknown parameter' not in err, err
    assert 'KeyboardInterrupt' not in err and 'WARNING' not in err and 'ERROR' not in err, err
    text = json.dumps(json.loads(out.read_text())['cells'][-1]['outputs'])
    assert 'IProgress not found' not in text and '2\\n' in text and 'widget-view' in text
