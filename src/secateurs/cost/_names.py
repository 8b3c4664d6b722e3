"""The runtimes and dtypes a latency profile can be measured for, by name. Imports nothing, so the command line can
offer them as choices without importing torch (``cost.latency_profile`` maps the dtype names to torch dtypes)."""

RUNTIMES = ("torch", "onnxruntime")
DTYPE_NAMES = ("float32", "float64", "float16", "bfloat16")
