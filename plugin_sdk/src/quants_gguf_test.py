#!/usr/bin/env python3
"""ref's dequantization of Q4_1, Q5_0, Q5_1, Q2_K..Q6_K is bit-exact with gguf-py's NumPy one.

Draws random blocks (quants_dump, seed printed; KESTREL_TEST_SEED fixes it), dequantizes them
with the reference plugin and with gguf.quants.dequantize, and compares the f32 bytes.
  quants_gguf_test.py PATH/TO/quants_dump
Exit 77 (ctest: skipped) when the gguf package is missing, unless KESTREL_REQUIRE_PY_DEPS=1
(scripts/test.sh sets it after scripts/install_py_deps.sh), then exit 1.
"""
import os
import subprocess
import sys
import tempfile
import time


def main():
    try:
        import numpy as np
        from gguf import GGMLQuantizationType, quants
    except ImportError as e:
        msg = f"gguf-py is not installed ({e}); run scripts/install_py_deps.sh"
        if os.environ.get("KESTREL_REQUIRE_PY_DEPS") == "1":
            print("FAIL: " + msg)
            return 1
        print("SKIP: " + msg)
        return 77
    seed = int(os.environ.get("KESTREL_TEST_SEED", str(time.time_ns() % (1 << 32))))
    print(f"seed {seed} (KESTREL_TEST_SEED={seed} repeats this run)")
    names = ["Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.argv[1], str(seed), tmp], check=True)
        for name in names:
            qtype = GGMLQuantizationType[name]
            blocks = np.fromfile(os.path.join(tmp, name + ".blocks"), dtype=np.uint8)
            ours = np.fromfile(os.path.join(tmp, name + ".f32"), dtype=np.float32)
            theirs = quants.dequantize(blocks, qtype).astype(np.float32).reshape(-1)
            if theirs.shape != ours.shape:
                print(f"FAIL {name}: {ours.size} values from ref, {theirs.size} from gguf-py")
                failed += 1
                continue
            diff = np.nonzero(ours.view(np.uint32) != theirs.view(np.uint32))[0]
            if diff.size:
                i = int(diff[0])
                print(f"FAIL {name}: {diff.size} of {ours.size} values differ; first at element "
                      f"{i} (block {i // quants.GGML_QUANT_SIZES[qtype][0]}): "
                      f"ref {ours[i]!r} gguf-py {theirs[i]!r}")
                failed += 1
            else:
                print(f"ok {name}: {ours.size} values bit-identical")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
