"""`harlib bench gpu` runs on a CPU with the tiny preset, so it is known to work before a GPU is lent."""
import json, os, subprocess, sys
from pathlib import Path

BIN = Path(sys.executable).parent

def test_bench_gpu_on_cpu_tiny():
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1'}
    r = subprocess.run([str(BIN / 'harlib'), 'bench', 'gpu', '--device', 'cpu', '--preset', 'tiny', '--steps', '3', '--batch_size', '4', '--json'],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    f = json.loads(r.stdout.strip().splitlines()[-1])
    assert f['case'] == 'gpu' and f['device'] == 'cpu' and f['preset'] == 'tiny' and f['ddp_backend'] == 'gloo'
    for k in ('fp32_samples_per_s', 'bf16_samples_per_s', 'fp32_tflops', 'bf16_tflops', 'gflop_per_step', 'fp32_peak_mem_gb',
              'fp32_matmul_tflops', 'ddp_samples_per_s', 'pretrain_samples_per_s'):
        assert f[k] > 0, k
    assert 0 <= f['data_wait'] <= 1 and f['fp32_of_peak'] is None          # a CPU has no data-sheet peak in the table

def test_gpu_flags_belong_to_the_gpu_case():
    r = subprocess.run([str(BIN / 'harlib'), 'bench', 'imu', '--steps', '3'], capture_output=True, text=True)
    assert r.returncode == 2 and 'harlib bench gpu' in r.stderr
