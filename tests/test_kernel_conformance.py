"""The jupyter-kernel-test conformance suite for the ``vwed`` kernelspec."""

from __future__ import annotations

import os
import tempfile

import jupyter_kernel_test

from kernel_gateway.kernelspec import write_gateway_kernelspec

_SPEC_DIR = tempfile.mkdtemp(prefix="vwed-kernelspec-")
write_gateway_kernelspec(_SPEC_DIR)
# jupyter_kernel_test starts the kernel by name through Jupyter's search path
os.environ["JUPYTER_PATH"] = os.pathsep.join(
    filter(None, [_SPEC_DIR, os.environ.get("JUPYTER_PATH")])
)


class VWEDKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "vwed"
    language_name = "python"
    file_extension = ".py"

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('oops', file=sys.stderr)"
    completion_samples = [{"text": "VWED.func", "matches": {"function"}}]  # tab completion on VWED
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2"]
    invalid_code_samples = ["import = 7q"]
    code_page_something = "zip?"
    code_generate_error = "raise ValueError('boom')"
    code_execute_result = [
        {"code": "6*7", "result": "42"},
        {"code": "type(VWED).__name__", "result": "'VWED'"},
    ]
    code_display_data = [
        {
            "code": "from IPython.display import HTML, display; display(HTML('<b>t</b>'))",
            "mime": "text/html",
        }
    ]
    code_history_pattern = "6*7"
    supported_history_operations = ("tail", "search")
    code_inspect_sample = "VWED.function.call"
    code_clear_output = "from IPython.display import clear_output; clear_output()"
