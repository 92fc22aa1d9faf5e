#!/usr/bin/env python3
"""An analytic cost model in Python: a roofline of a made-up 50 GFLOP/s, 10 GB/s accelerator
drawing 2 W, with a 5 us overhead per kernel.  Use it as a template for your own model:
`hwnas hw predict --device examples/devices/external/py_roofline.json GENOME.json`."""
from hwnas_device import serve

PEAK_FLOPS, BANDWIDTH, POWER_W, KERNEL_S = 50e9, 10e9, 2.0, 5e-6


def estimate(architecture, workload, batch):
    t = 0.0
    weights = 0.0
    for n in workload["nodes"]:
        flops = batch * (2 * n["macs"] + n["other_flops"])
        traffic = n["weight_bytes"] + batch * (n["input_bytes"] + n["output_bytes"])
        t += max(flops / PEAK_FLOPS, traffic / BANDWIDTH) + n.get("kernels", 1) * KERNEL_S
        weights += n["weight_bytes"]
    return {"latency_ms": t * 1e3, "energy_mj": POWER_W * t * 1e3, "memory_bytes": weights,
            "feasible": weights <= 64e6, "reason": "" if weights <= 64e6 else "weights > 64 MB"}


if __name__ == "__main__":
    serve(estimate, name="py_roofline", objectives=["latency_ms", "energy_mj", "memory_bytes"])
