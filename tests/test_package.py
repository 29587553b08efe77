"""The package's surface: every public name resolves, importing it or asking the command line
for help loads none of the heavy dependencies (PEP 562 lazy names), and importing it asks
torch for transparent huge pages in time."""

import os
import subprocess
import sys
from pathlib import Path

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


# --- transparent huge pages --------------------------------------------------------------------
_FAULTS_AFTER_IMPORT = """
import os, resource
import skfingerprint
from skfingerprint import ViTLayerFusionEmbedder  # torch, timm, skorch, FAISS: all imported
import torch
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    x = torch.ones(16_000_000)  # 64 MB, touched whole
    del x
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), faults)
"""


def _after_import(thp_setting):
    """(the variable after importing skfingerprint, page faults of 3 fresh 64 MB tensors) in a
    fresh process started with THP_MEM_ALLOC_ENABLE as given (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if thp_setting is not None:
        env["THP_MEM_ALLOC_ENABLE"] = thp_setting
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS_AFTER_IMPORT],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    value, faults = out.stdout.strip().splitlines()[-1].split()
    return value, int(faults)


def _kernel_thp() -> str:
    try:
        return Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return ""


def test_importing_asks_torch_for_huge_pages_unless_the_environment_says_otherwise():
    # catches the request not made, and a user's explicit choice overridden
    assert _after_import(None)[0] == "1"
    assert _after_import("0")[0] == "0"


@pytest.mark.skipif(
    "[madvise]" not in _kernel_thp(),
    reason="huge pages on request need the kernel's THP in madvise mode",
)
def test_the_huge_pages_request_reaches_torch_before_its_first_allocation():
    # catches the variable set after torch's first CPU allocation, which torch then ignores
    # (a module-level tensor on skfingerprint's import path would do it): 4 kB pages fault
    # ~16,000 times per 64 MB, 2 MB pages ~32 times
    requested, refused = _after_import(None)[1], _after_import("0")[1]
    assert requested * 10 < refused, (requested, refused)
