"""Helpers for the kernel tests: the same Triton kernels run interpreted on CPU and compiled on CUDA.

triton.jit picks interpreter or compiler once, from TRITON_INTERPRET, when the kernel is decorated;
so the tests set TRITON_INTERPRET=1 before importing a kernel module, and these helpers repair the
two cases where that is not enough.

Kernels here use only triton.language builtins, not its @jit library helpers (tl.zeros, tl.sum,
tl.cdiv...): those are decorated when triton itself is imported, so if anything imported triton
before TRITON_INTERPRET was set they stay compiled-only and would fail under the interpreter.
"""

import importlib
import types

from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction


def _kernels(module: types.ModuleType) -> dict:
    return {k: v for k, v in vars(module).items() if isinstance(v, (InterpretedFunction, JITFunction))}


def interpreted(module: types.ModuleType) -> types.ModuleType:
    """`module` with its kernels under Triton's interpreter; None if TRITON_INTERPRET is off.

    Reloads it if something imported it before TRITON_INTERPRET was set (e.g. an earlier test module).
    """
    if not all(isinstance(k, InterpretedFunction) for k in _kernels(module).values()):
        module = importlib.reload(module)
    kernels = _kernels(module).values()
    if not kernels or not all(isinstance(k, InterpretedFunction) for k in kernels):
        return None
    return module


def interpreted_or_skip(name: str) -> types.ModuleType:
    """The kernel module `name` under the interpreter, or skip the test where that is off."""
    import pytest

    module = interpreted(importlib.import_module(name))
    if module is None:
        pytest.skip("TRITON_INTERPRET is disabled")
    return module


def compile_kernels(module: types.ModuleType, monkeypatch) -> None:
    """Swap `module`'s kernels for compiled ones for one test, even if TRITON_INTERPRET=1 is set."""
    # Imported while the interpreter is still on: gluon, which the compiler pulls in, asserts at import
    # that triton's library helpers were decorated for the current mode.
    import triton.compiler.code_generator  # noqa: F401

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    for name, k in _kernels(module).items():
        if isinstance(k, InterpretedFunction):
            monkeypatch.setattr(module, name, JITFunction(k.fn))
