import subprocess
import sys

import secateurs


def test_every_exported_name_resolves():
    for name in secateurs.__all__:
        assert getattr(secateurs, name) is not None, name


def test_import_is_cheap_and_lazy():
    code = ("import sys, secateurs; heavy = [m for m in ('torch_pruning', 'matplotlib', 'sklearn', 'mnist1d') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_and_help_do_not_import_torch():
    code = ("import sys, secateurs, secateurs.cli; secateurs.cli.build_parser(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
