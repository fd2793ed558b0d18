"""What runs on 8, 12, 24 and 80 GB cards: the memory plan each gets (`workbench/models/memory_plan.py`), as a table.

    python benchmarks/memory_plans.py

Arithmetic only, no GPU: weights from the published parameter counts (2 bytes each in bf16/fp16), activations from
`memory.py`'s per-image estimate (measured on the CPU at small sizes, scaled up). An estimate until a GPU run
measures it (`make gpu-check`).
"""

from workbench.families import sd15, sdxl
from workbench.models.memory_plan import memory_plan, plan_table

MODELS = {"SD1.5 + 1 ControlNet, 512 px": (sd15, 1, 512), "SD1.5 + 2 ControlNets, 512 px": (sd15, 2, 512),
          "SDXL + 1 ControlNet, 1024 px": (sdxl, 1, 1024), "SDXL + 2 ControlNets, 1024 px": (sdxl, 2, 1024)}

if __name__ == "__main__":
    print(plan_table(MODELS))
    print()
    for label, (family, nets, size) in MODELS.items():
        plan = memory_plan(family, nets, size, (8, 6), 24)
        print(f"{label}: weights {plan.weights_gb:.1f} GB, per image {plan.step_gb:.2f} GB denoising, "
              f"{plan.decode_gb:.2f} GB decoding (estimates)")
