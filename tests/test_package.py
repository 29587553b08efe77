"""The package's surface: every public name resolves, and importing it or asking the command line
for help loads none of the heavy dependencies (PEP 562 lazy names)."""

import subprocess
import sys

import pytest

import skfingerprint

HEAVY = ("torch", "timm", "faiss", "skorch", "sklearn", "matplotlib", "jinja2", "skops")


@pytest.mark.parametrize(
    "code",
    [
        "import skfingerprint",
        "import skfingerprint.cli as c; c.build_parser().format_help()",
        "import sys; sys.argv = ['skfingerprint', '--help']\n"
        "import skfingerprint.cli as c\ntry: c.main(['--help'])\nexcept SystemExit: pass",
    ],
)
def test_import_and_help_load_no_heavy_dependency(code):
    probe = f"{code}\nimport sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_every_public_name_resolves_and_is_listed():
    for name in skfingerprint.__all__:
        assert getattr(skfingerprint, name) is not None, name
    assert set(skfingerprint.__all__) <= set(dir(skfingerprint))
    assert skfingerprint.make_pairs.__module__ == "skfingerprint.pairs"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        skfingerprint.nope  # noqa: B018
