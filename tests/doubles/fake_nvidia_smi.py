#!/usr/bin/env python3
"""TEST DOUBLE for nvidia-smi: answers only --query-gpu=name,compute_cap --format=csv,noheader."""
import os
import sys

if "--query-gpu=name,compute_cap" in sys.argv and "--format=csv,noheader" in sys.argv:
    print(f"{os.environ.get('FAKE_GPU_NAME', 'NVIDIA H100 80GB HBM3')}, {os.environ.get('FAKE_GPU_CC', '9.0')}")
    sys.exit(0)
print("fake nvidia-smi: unsupported arguments", sys.argv[1:], file=sys.stderr)
sys.exit(9)
