"""Executed by the *emulated aarch64* python: load a model, run it once, save the outputs.

    python _runner.py MODEL INPUTS.npz OUTPUTS.npz

It imports only the standard library, numpy and onnxruntime (the guest has nothing else) and
never imports edgeopt. Outputs are saved as out_0, out_1, ... in session output order.
A failure prints one line `EDGEOPT_RUNNER <stage>: <message>` on stderr and exits with the
stage's code, so the host can tell "model does not load on ARM" from "emulator broken".
"""

import sys

EXIT_LOAD = 10  # the model does not load on this onnxruntime (e.g. an op with no ARM kernel)
EXIT_RUN = 11  # it loads but inference fails


def _fail(stage, code, err):
    message = " ".join(str(err).split())  # one line: the host parses it
    sys.stderr.write(f"EDGEOPT_RUNNER {stage}: {message}\n")
    sys.exit(code)


def main(argv):
    model, inputs_path, outputs_path = argv
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # One thread, sequential: the same settings as the x86 reference, so a difference comes
    # from the CPU's kernels and not from how work was split across threads.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        sess = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - any load failure is reported, not raised
        _fail("load", EXIT_LOAD, err)
    with np.load(inputs_path, allow_pickle=False) as data:
        feeds = {name: data[name] for name in data.files}
    try:
        outs = sess.run(None, feeds)
    except Exception as err:  # noqa: BLE001
        _fail("run", EXIT_RUN, err)
    np.savez(outputs_path, **{f"out_{i}": np.asarray(o) for i, o in enumerate(outs)})


if __name__ == "__main__":
    main(sys.argv[1:])
