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

A device served with estimate_batch= says "batch": true in its hello; hwnas may then send
    -> {"type": "estimate_batch", "id": B, "requests": [estimate requests, at most max_batch]}
    <- {"type": "results", "id": B, "results": [one result or error per request, in order]}

Print nothing else on stdout (use stderr for logs).  Standard library only.
"""
import json
import sys

PROTOCOL = 1


def _answer(estimate, msg):
    try:
        result = estimate(msg.get("architecture"), msg["workload"], msg.get("batch", 1))
        reply = {"type": "result", "id": msg["id"], "feasible": True}
        reply.update(result)
        return reply
    except Exception as e:  # one architecture failing is not the device failing
        return {"type": "error", "id": msg.get("id"), "message": "%s: %s" % (type(e).__name__, e)}


def serve(estimate, name, objectives=("latency_ms",), estimate_batch=None, max_batch=64,
          stdin=None, stdout=None):
    """Answers hwnas's requests until stdin closes.

    With estimate_batch(list of (architecture, workload, batch)) -> list of result dicts, the
    device tells hwnas it takes batched requests (up to max_batch at once), so a model that
    amortises work over several networks (one compile, one device session) gets them together.
    """
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
                     "objectives": list(objectives), "batch": estimate_batch is not None,
                     "max_batch": max_batch}
        elif kind == "estimate":
            reply = _answer(estimate, msg)
        elif kind == "estimate_batch" and estimate_batch is not None:
            requests = msg["requests"]
            try:
                results = estimate_batch([(r.get("architecture"), r["workload"], r.get("batch", 1))
                                          for r in requests])
                if len(results) != len(requests):
                    raise ValueError("estimate_batch returned %d results for %d requests"
                                     % (len(results), len(requests)))
                answers = []
                for r, res in zip(requests, results):
                    a = {"type": "result", "id": r["id"], "feasible": True}
                    a.update(res)
                    answers.append(a)
            except Exception:  # fall back to one by one, so one bad network fails alone
                answers = [_answer(estimate, r) for r in requests]
            reply = {"type": "results", "id": msg["id"], "results": answers}
        else:
            reply = {"type": "error", "id": msg.get("id"),
                     "message": "unknown request type %r" % (kind,)}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()
