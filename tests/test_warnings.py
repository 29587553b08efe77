"""``warn_at_caller``: a warning names the user's line, past the libraries it came through.

The library frames are made by compiling small functions under file names inside the folders
``warn_at_caller`` skips (skfingerprint's, scikit-learn's, joblib's, skorch's) and outside them.
Under mutation testing mutmut's trampoline is a frame outside every library, so these tests
accept it as ``tests/conftest.points_at`` does (the module's mutants are judged by hand).
"""

import os
import subprocess
import sys
import warnings

import joblib
import pytest
import sklearn

import skfingerprint
from skfingerprint._warnings import _LIBRARIES, _package_folder, warn_at_caller

from .conftest import points_at


def _folder(module) -> str:
    return os.path.dirname(os.path.abspath(module.__file__))


def _function_in(filename: str, name: str, body: str, env: dict):
    """A function ``name`` whose frames report ``filename`` (nothing is written there)."""
    source = f"def {name}(*args):\n    {body}\n"
    exec(compile(source, filename, "exec"), env)
    return env[name]


def _chain(*filenames: str):
    """Functions compiled under ``filenames``, each calling the next; the last warns.
    Returns the first: calling it warns through every one of them."""
    env = {"warn_at_caller": warn_at_caller}
    call = _function_in(filenames[-1], "f_last", "warn_at_caller('leak', FutureWarning)", env)
    for i, filename in enumerate(reversed(filenames[:-1])):
        env[f"next_{i}"] = call
        call = _function_in(filename, f"f_{i}", f"next_{i}()", env)
    return call


def _caught(function):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        function()
    assert len(caught) == 1
    return caught[0], line


def test_a_warning_from_inside_the_libraries_names_the_users_line():
    # Catches: the loop stopped after one frame (`if` for `while`), a level that does not count
    # the frames it skips (level + 0, level + 2), a start at 1 or 3, or sys._getframe(2).
    inside = os.path.join(_folder(skfingerprint), "selection.py")
    in_sklearn = os.path.join(_folder(sklearn), "pipeline.py")
    in_joblib = os.path.join(_folder(joblib), "parallel.py")
    call = _chain(in_sklearn, in_joblib, in_sklearn, inside, inside)
    warning, line = _caught(call)
    assert points_at(warning, __file__)
    if warning.filename == __file__:  # not under mutmut's trampoline
        assert warning.lineno == line
    assert warning.category is FutureWarning and str(warning.message) == "leak"


def test_the_first_frame_outside_the_libraries_is_named_even_when_a_library_called_it():
    # Catches: a walk past the user's frame (a condition that skips any frame, `or` for the
    # start test) and a frame outside every library treated as a library's.
    inside = os.path.join(_folder(skfingerprint), "embedding.py")
    user = os.path.join(os.sep, "home", "someone", "audit.py")
    in_sklearn = os.path.join(_folder(sklearn), "pipeline.py")
    warning, _ = _caught(_chain(in_sklearn, user, inside))
    assert points_at(warning, user)
    if warning.filename == user:
        assert warning.lineno == 2  # the body's line of the function compiled for `user`


def test_a_folder_that_only_starts_like_a_librarys_is_not_skipped():
    # Catches: the folders kept without their trailing separator (`+ os.sep` dropped), which
    # would skip sklearn_extra/ or a user's skfingerprint_runs/ as if they were the libraries.
    for name in (_folder(sklearn) + "_extra", _folder(skfingerprint) + "_runs"):
        user = os.path.join(name, "run.py")
        warning, _ = _caught(_chain(user, os.path.join(_folder(skfingerprint), "pairs.py")))
        assert points_at(warning, user)


def test_a_warning_called_directly_names_the_line_that_called_it():
    # Catches: stacklevel=1 (the warning would name _warnings.py itself) and the default category.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        warn_at_caller("plain")
    assert len(caught) == 1 and caught[0].category is UserWarning
    assert points_at(caught[0], __file__)
    if caught[0].filename == __file__:
        assert caught[0].lineno == line


def test_the_skipped_folders_are_the_four_libraries():
    # Catches: a library dropped from the list or a folder computed wrong (dirname of the
    # spec's origin: the package's folder, with its separator).
    import skorch

    expected = {_folder(m) + os.sep for m in (skfingerprint, sklearn, joblib, skorch)}
    assert set(_LIBRARIES) == expected
    assert _package_folder("skorch") == _folder(skorch) + os.sep


def test_finding_the_folders_imports_neither_skorch_nor_torch():
    # Catches: `import skorch` to find its folder (skorch imports torch: seconds at import, for
    # a command that may never need it).
    code = (
        "import sys, skfingerprint._warnings; "
        "print('skorch' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("category", [UserWarning, DeprecationWarning, RuntimeWarning])
def test_the_category_asked_is_the_one_raised(category):
    # Catches: the category dropped or fixed.
    with pytest.warns(category, match="^x$"):
        warn_at_caller("x", category)
