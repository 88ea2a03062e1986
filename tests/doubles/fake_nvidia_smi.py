#!/usr/bin/env python3
"""TEST DOUBLE for nvidia-smi (not NVIDIA's): answers only ``--query-gpu=<fields> --format=csv,noheader``.

GPUs: ``FAKE_GPUS="NVIDIA A100-SXM4-80GB:8.0;NVIDIA H100 80GB HBM3:9.0;..."`` (one entry per GPU, index =
position), else one GPU ``FAKE_GPU_NAME`` / ``FAKE_GPU_CC``. Fields: index, uuid, name, compute_cap.
"""
import os
import sys


def gpus():
    spec = os.environ.get("FAKE_GPUS", "")
    if spec:
        entries = [e.rsplit(":", 1) for e in spec.split(";") if e.strip()]
    else:
        entries = [(os.environ.get("FAKE_GPU_NAME", "NVIDIA H100 80GB HBM3"), os.environ.get("FAKE_GPU_CC", "9.0"))]
    return [{"index": str(i), "uuid": f"GPU-fake{i:04d}-0000-0000-0000-000000000000", "name": name.strip(),
             "compute_cap": cc.strip()} for i, (name, cc) in enumerate(entries)]


def main(argv):
    query = [a.split("=", 1)[1] for a in argv if a.startswith("--query-gpu=")]
    if len(query) == 1 and "--format=csv,noheader" in argv:
        fields = query[0].split(",")
        if all(f in ("index", "uuid", "name", "compute_cap") for f in fields):
            for gpu in gpus():
                print(", ".join(gpu[f] for f in fields))
            return 0
    print("fake nvidia-smi: unsupported arguments", argv, file=sys.stderr)
    return 9


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
