"""Sphinx configuration of the skfingerprint documentation (``make docs`` builds it).

No network at build time: intersphinx is not used, timm never reaches the hub
(``HF_HUB_OFFLINE``), and every example runs on tiny randomly initialised ViTs.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Document the source tree of this checkout, whatever is installed in the environment.
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import skfingerprint  # noqa: E402
from skfingerprint import cli  # noqa: E402

project = "skfingerprint"
author = "The skfingerprint developers"
copyright = "2026, The skfingerprint developers"
release = skfingerprint.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
default_role = "py:obj"
nitpicky = False

# --- autodoc / autosummary / numpydoc
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# --- sphinx-gallery: every examples/plot_*.py is run and its figures kept
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",  # a name: the config stays picklable
    "abort_on_example_error": False,  # report every broken example; -W still fails the build
    "only_warn_on_example_error": False,
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("skfingerprint",),
    "reference_url": {"skfingerprint": None},
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "show_memory": False,
    "min_reported_time": 1,
}

# --- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"skfingerprint {release}"
html_theme_options = {
    "navbar_end": ["navbar-icon-links"],
    "secondary_sidebar_items": ["page-toc"],
    "show_prev_next": False,
}
html_static_path: list[str] = []
html_show_sourcelink = False


# The Dask example is written separately; link it once it is in examples/, name it until then.
if (ROOT / "examples" / "plot_dask_grid_search.py").exists():
    _dask_example = ":ref:`sphx_glr_auto_examples_plot_dask_grid_search.py`"
else:
    _dask_example = "``examples/plot_dask_grid_search.py``"
rst_prolog = f"""
.. |dask_example| replace:: {_dask_example}
"""


def _skip_member(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated metadata-routing setters (``set_fit_request``, ...)."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)


def _write_cli_help() -> None:
    """Capture ``skfingerprint [COMMAND] --help`` for the CLI reference page."""
    out = HERE / "gen_modules" / "cli_help"
    out.mkdir(parents=True, exist_ok=True)
    for command in ("", "fit", "predict", "evaluate", "report", "demo"):
        argv = [command, "--help"] if command else ["--help"]
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
            cli.build_parser().parse_args(argv)
        (out / f"{command or 'main'}.txt").write_text(buf.getvalue(), encoding="utf-8")


_write_cli_help()
