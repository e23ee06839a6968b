import json, subprocess, sys
from harlib.cli import main, COMMANDS

def test_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS: assert name in out

def test_console_script_installed():
    exe = __import__('pathlib').Path(sys.executable).parent / 'harlib'
    r = subprocess.run([str(exe), '--help'], capture_output=True, text=True)
    assert r.returncode == 0 and 'bench' in r.stdout
