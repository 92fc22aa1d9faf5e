#!/usr/bin/env python3
"""Wraps any command line that measures one architecture and prints its latency in ms, e.g. a
benchmark binary on a device farm:

    "command": ["python3", "command_device.py", "--", "./bench_one.sh", "{genome}"]

For each request the architecture's genome JSON is written to a temporary file whose path
replaces {genome} (and the batch size replaces {batch}); the command's last stdout line must be
a number (milliseconds).  A failing command or other output fails that cost with its stderr."""
import json
import os
import subprocess
import sys
import tempfile

from hwnas_device import serve


def main():
    if "--" not in sys.argv or sys.argv.index("--") == len(sys.argv) - 1:
        sys.exit("usage: command_device.py -- COMMAND [ARGS with {genome}, {batch}]")
    template = sys.argv[sys.argv.index("--") + 1:]

    def estimate(architecture, workload, batch):
        if architecture is None:
            raise ValueError("no architecture given (this device measures the network itself)")
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(architecture, f)
            path = f.name
        try:
            cmd = [a.replace("{genome}", path).replace("{batch}", str(batch)) for a in template]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0:
                raise RuntimeError("%s exited with %d: %s" % (cmd[0], run.returncode,
                                                              run.stderr.strip()[-300:]))
            lines = run.stdout.strip().splitlines()
            return {"latency_ms": float(lines[-1])}
        finally:
            os.unlink(path)

    serve(estimate, name="command", objectives=["latency_ms"])


if __name__ == "__main__":
    main()
