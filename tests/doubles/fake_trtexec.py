#!/usr/bin/env python3
"""TEST DOUBLE for NVIDIA trtexec (no TensorRT inside). See tests/doubles/README.md."""
import json
import os
import sys
import time

VERSION = os.environ.get("FAKE_TRTEXEC_VERSION", "10.13.3")
MAJOR, MINOR, PATCH = (int(p) for p in VERSION.split(".")[:3])
KNOWN = {"--onnx", "--saveEngine", "--minShapes", "--optShapes", "--maxShapes", "--stronglyTyped",
         "--memPoolSize", "--builderOptimizationLevel", "--timingCacheFile", "--skipInference",
         "--verbose", "--help", "--noTF32", "--device", "--hardwareCompatibilityLevel"}
HW_COMPAT = ("none", "ampere+", "sameComputeCapability")  # sampleOptions.cpp, release/10.13 and 11.1
if MAJOR == 10:  # deprecated weak-typing flags are still parsed in 10.x (TensorRT 10.0 release notes)
    KNOWN |= {"--fp16", "--int8", "--best", "--bf16"}


def main(argv):
    log = os.environ.get("FAKE_TRTEXEC_ARGV_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(json.dumps(argv) + "\n")
    # NV_TENSORRT_VERSION: major*10000+minor*100+patch since 10.0 (v101303), major*1000+... before (v8601)
    banner_number = (MAJOR * 10000 if MAJOR >= 10 else MAJOR * 1000) + MINOR * 100 + PATCH
    print(f"&&&& RUNNING TensorRT.trtexec [TensorRT v{banner_number}] [b9] # trtexec " + " ".join(argv))
    args = {}
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in KNOWN:
            print(f"[E] Unknown option: {arg}")
            print(f"&&&& FAILED TensorRT.trtexec [TensorRT v{banner_number}] [b9] # trtexec")
            return 1
        args[key] = value
    if "--help" in args:
        print("=== Model Options ===")
        return 0
    if args.get("--hardwareCompatibilityLevel", "none").lower() not in [h.lower() for h in HW_COMPAT]:
        print(f"[E] Unknown hardwareCompatibilityLevel: {args['--hardwareCompatibilityLevel']}")
        return 1
    device = int(args.get("--device", "0"))
    gpus = [e for e in os.environ.get("FAKE_GPUS", "x").split(";") if e.strip()]
    if not 0 <= device < len(gpus):
        print(f"[E] Cuda failure: invalid device ordinal (device {device}, {len(gpus)} GPUs)")
        return 1
    print(f"[I] Selected Device ID: {device}")
    print(f"[I] TensorRT version: {MAJOR}.{MINOR}.{PATCH}")
    if "--stronglyTyped" in args and MAJOR >= 11:
        print("[W] --stronglyTyped flag is deprecated: strongly typed network is now enabled by default.")
    print("[I] Start parsing network model.")
    print("[I] Finished parsing network model. Parse time: 0.01")
    cache = args.get("--timingCacheFile")
    if cache:
        print("[I] [TRT] Global timing cache in use. Profiling results in this builder pass will be stored.")
    fail = os.environ.get("FAKE_TRTEXEC_FAIL", "")
    if str(device) in os.environ.get("FAKE_TRTEXEC_FAIL_DEVICES", "").split(","):  # fail on these GPUs only,
        time.sleep(float(os.environ.get("FAKE_TRTEXEC_FAIL_AFTER", "0")))  # after this long
        fail = "error"
    if fail == "oom":
        print("[E] Error[2]: [virtualMemoryBuffer.cpp::resizePhysical::140] Error Code 2: OutOfMemory "
              "(Requested size was 17179869184 bytes.)")
        print("[E] Engine could not be created from network")
        print(f"&&&& FAILED TensorRT.trtexec [TensorRT v{banner_number}] [b9] # trtexec")
        return 1
    if fail == "error":
        print("[E] [TRT] ModelImporter.cpp:949: --- End node ---")
        print("[E] Failed to parse onnx file")
        print(f"&&&& FAILED TensorRT.trtexec [TensorRT v{banner_number}] [b9] # trtexec")
        return 1
    plan = args["--saveEngine"]
    start = time.time()
    # FAKE_TRTEXEC_RENDEZVOUS=<dir>:<n>: each build says it started, then waits (up to 120 s) until n builds
    # have; the event records how many it saw. n seen by every build = n builds were running at once.
    rendezvous, seen = os.environ.get("FAKE_TRTEXEC_RENDEZVOUS", ""), None
    if rendezvous:
        folder, _, wanted = rendezvous.rpartition(":")
        os.makedirs(folder, exist_ok=True)
        open(os.path.join(folder, str(os.getpid())), "w").close()
        deadline = time.time() + 120
        while len(os.listdir(folder)) < int(wanted) and time.time() < deadline:
            time.sleep(0.02)
        seen = len(os.listdir(folder))
    time.sleep(float(os.environ.get("FAKE_TRTEXEC_SLEEP", "0")))  # the "build": a fixed time
    with open(plan, "wb") as handle:
        handle.write(b"FAKE-TRTEXEC-PLAN " + json.dumps(argv).encode())
    if cache:  # like trtexec: re-read the file at save time and add this build's entry (one line per build)
        old = open(cache, "rb").read() if os.path.exists(cache) else b""
        with open(cache, "wb") as handle:
            handle.write(old + f"fake-timing-entry {plan}\n".encode())
    events = os.environ.get("FAKE_TRTEXEC_EVENTS")
    if events:  # one JSON line per build: which device, when (wall clock, comparable across processes)
        record = {"device": device, "start": start, "end": time.time(), "plan": plan, "pid": os.getpid(),
                  "cuda_device_order": os.environ.get("CUDA_DEVICE_ORDER"),
                  "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                  "hw_compat": args.get("--hardwareCompatibilityLevel", "none"), "rendezvous_seen": seen}
        with open(events, "a") as handle:
            handle.write(json.dumps(record) + "\n")
    print("[I] [TRT] Engine generation completed in 0.02 seconds.")
    print("[I] Engine built in 0.03 sec.")
    print(f"[I] Created engine with size: {os.path.getsize(plan) / 2**20:.4f} MiB")
    print("[I] Skipped inference phase since --skipInference is added.")
    print(f"&&&& PASSED TensorRT.trtexec [TensorRT v{banner_number}] [b9] # trtexec")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
