"""interp_triton's kernels compile for a GPU (sm_90, Hopper) with Triton's own compiler and ptxas,
without one: the CPU interpreter runs them but does not type-check them as the compiler does
(a constexpr reassigned in a static loop passed the interpreter and failed here)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_COMPILE = r"""
import inspect
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from nerfcompress.grid import interp_triton as m

CASES = [  # (dims, F, table dtype, position dtype, table grad, position grad)
    (2, 1, "fp32", "fp32", True, True),
    (2, 8, "bf16", "fp32", True, False),
    (3, 2, "fp32", "fp32", True, True),
    (3, 2, "fp16", "fp32", False, True),
    (3, 4, "fp64", "fp64", True, True),
]
for dims, feats, table, pos, table_grad, position_grad in CASES:
    acc = "fp64" if table == "fp64" else "fp32"
    constexprs = dict(NUM_DIMS=dims, NUM_FEATURES=feats, NUM_LEVELS=16, BLOCK=128,
                      ACC_DTYPE=getattr(tl, {"fp64": "float64", "fp32": "float32"}[acc]),
                      POS_DTYPE=getattr(tl, {"fp64": "float64", "fp32": "float32"}[pos]))
    types = {"x_ptr": f"*{pos}", "table_ptr": f"*{table}", "out_ptr": f"*{table}", "grad_out_ptr": f"*{table}",
             "grad_table_ptr": f"*{acc}", "grad_x_ptr": f"*{acc}", "scales_ptr": "*fp64", "resolutions_ptr": "*i64",
             "rows_ptr": "*i64", "offsets_ptr": "*i64", "hashed_ptr": "*i32", "num_points": "i32",
             "num_active_levels": "i32"}
    kernels = [(m._interp_forward_kernel, {}),
               (m._interp_backward_kernel, dict(TABLE_GRAD=table_grad, POSITION_GRAD=position_grad))]
    for kernel, flags in kernels:
        names = inspect.signature(kernel.fn).parameters
        all_constexprs = {**constexprs, **flags}
        signature = {n: "constexpr" if n in all_constexprs else types[n] for n in names}
        compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=all_constexprs),
                                  target=GPUTarget("cuda", 90, 32))
        assert len(compiled.asm["cubin"]) > 1000
print("compiled", 2 * len(CASES))
"""


def test_the_kernels_compile_for_sm90_without_a_gpu():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the compiler, not the interpreter
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", _COMPILE], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "compiled 10" in result.stdout
