"""pytest configuration: offline, headless, one intra-op thread (a 2-core machine: torch's second thread
spin-waits when another process holds the other core, which makes small models many times slower)."""
import os
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')
os.environ.setdefault('OMP_NUM_THREADS', '1')

import torch
torch.set_num_threads(1)
