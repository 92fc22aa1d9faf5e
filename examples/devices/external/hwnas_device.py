"""hwnas external device protocol (version 1) in a few lines: your cost model is one function.

    from hwnas_device import serve

    def estimate(architecture, workload, batch):
        macs = sum(n["macs"] for n in workload["nodes"])
        return {"latency_ms": macs / 1e6 * batch}      # also: energy_mj, memory_bytes,
                                                        # feasible (bool) and reason (str)
    serve(estimate, name="my_device", objectives=["latency_ms"])

hwnas starts the program named in a device JSON ({"family": "external", "command": [...]}),
sends one JSON object per line on its stdin and reads one per line from its stdout:

    -> {"type": "hello", "protocol": 1, "device": NAME}
    <- {"type": "hello", "protocol": 1, "name": ..., "objectives": [...]}
    -> {"type": "estimate", "id": N, "batch": B, "architecture": {genome} or null,
        "workload": {"nodes": [{name, block_kind, category, macs, other_flops, params,
                                weight_bytes, input_bytes, output_bytes, bits, ...,
                                activity: {...}}], "input_bytes": ..., "measured": {...}}}
    <- {"type": "result", "id": N, "latency_ms": ..., "energy_mj": ..., "memory_bytes": ...,
        "feasible": true, "reason": ""}
    <- {"type": "error", "id": N, "message": "..."}   (raised exceptions become this)

Print nothing else on stdout (use stderr for logs).  Standard library only.
"""
import json
import sys

PROTOCOL = 1


def serve(estimate, name, objectives=("latency_ms",), stdin=None, stdout=None):
    """Answers hwnas's requests until stdin closes."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        msg = json.loads(line)
        kind = msg.get("type")
        if kind == "hello":
            reply = {"type": "hello", "protocol": PROTOCOL, "name": name,
                     "objectives": list(objectives)}
        elif kind == "estimate":
            try:
                result = estimate(msg.get("architecture"), msg["workload"], msg.get("batch", 1))
                reply = {"type": "result", "id": msg["id"], "feasible": True}
                reply.update(result)
            except Exception as e:  # one architecture failing is not the device failing
                reply = {"type": "error", "id": msg["id"],
                         "message": "%s: %s" % (type(e).__name__, e)}
        else:
            reply = {"type": "error", "id": msg.get("id"),
                     "message": "unknown request type %r" % (kind,)}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()
