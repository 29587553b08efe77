import ast

import numpy as np
import pytest
from PIL import Image

from skfingerprint import load_imageclef_gans, read_submission, write_submission

from .conftest import write_png


def make_layout(root, rng, split="train", n_gen=4, n_used=3, n_not=2, size=16):
    folders = (
        {"generated": n_gen, "real_used": n_used, "real_not_used": n_not}
        if split == "train"
        else {"generated": n_gen, "real_unknown": n_used}
    )
    prefix = {"generated": "gen", "real_used": "u", "real_not_used": "n", "real_unknown": "t"}
    for folder, n in folders.items():
        for i in range(n):
            img = rng.integers(0, 256, size=(size, size), dtype=np.uint8)
            write_png(root / folder / f"{prefix[folder]}_{i:03d}.png", img)
    return root


def test_train_layout(tmp_path, rng):
    data = load_imageclef_gans(make_layout(tmp_path, rng))
    assert data.split == "train"
    assert len(data.X_pairs) == 5 and len(data.X_pairs.library) == 4
    assert data.ids == sorted(data.ids)
    assert dict(zip(data.ids, data.y.tolist(), strict=True)) == {
        "n_000": 0,
        "n_001": 0,
        "u_000": 1,
        "u_001": 1,
        "u_002": 1,
    }
    # every real path's folder agrees with its label
    for path, label in zip(data.real_paths, data.y, strict=True):
        assert path.parent.name == ("real_used" if label else "real_not_used")


def test_test_layout(tmp_path, rng):
    data = load_imageclef_gans(make_layout(tmp_path, rng, split="test"))
    assert data.split == "test" and data.y is None
    assert data.ids == ["t_000", "t_001", "t_002"]


def test_missing_folder(tmp_path, rng):
    make_layout(tmp_path, rng)
    for p in (tmp_path / "real_not_used").iterdir():
        p.unlink()
    (tmp_path / "real_not_used").rmdir()
    with pytest.raises(FileNotFoundError, match="real_not_used"):
        load_imageclef_gans(tmp_path)
    with pytest.raises(FileNotFoundError, match="No such ImageCLEF folder"):
        load_imageclef_gans(tmp_path / "nowhere")


def test_not_a_layout(tmp_path):
    (tmp_path / "pictures").mkdir()
    with pytest.raises(FileNotFoundError, match=r"expected sub-folders.*pictures"):
        load_imageclef_gans(tmp_path)


def test_empty_folder(tmp_path, rng):
    make_layout(tmp_path, rng)
    (tmp_path / "generated_extra").mkdir()
    for p in (tmp_path / "generated").iterdir():
        p.unlink()
    with pytest.raises(ValueError, match=r"generated.*no image files"):
        load_imageclef_gans(tmp_path)


def test_duplicate_ids(tmp_path, rng):
    make_layout(tmp_path, rng)
    write_png(tmp_path / "real_used" / "u_000.jpg", np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match="Duplicate image ids.*u_000"):
        load_imageclef_gans(tmp_path)


def test_same_image_in_both_label_folders(tmp_path, rng):
    make_layout(tmp_path, rng)
    write_png(tmp_path / "real_not_used" / "u_001.png", np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match="both in real_used/ and real_not_used/"):
        load_imageclef_gans(tmp_path)


def test_mixed_sizes(tmp_path, rng):
    make_layout(tmp_path, rng)
    write_png(tmp_path / "generated" / "odd.png", np.zeros((20, 16), np.uint8))
    with pytest.raises(ValueError, match=r"mixed sizes.*odd\.png.*16x20"):
        load_imageclef_gans(tmp_path)
    assert len(load_imageclef_gans(tmp_path, check_sizes=False).X_pairs.library) == 5


def test_mixed_layouts(tmp_path, rng):
    make_layout(tmp_path, rng)
    (tmp_path / "real_unknown").mkdir()
    with pytest.raises(ValueError, match="mixes the test layout"):
        load_imageclef_gans(tmp_path)


def test_submission_round_trip(tmp_path):
    path = write_submission(["b", "a", "c d"], np.array([1, 0, 1]), tmp_path / "sub.csv")
    assert path.read_text() == "b,1\na,0\nc d,1\n"
    ids, labels = read_submission(path)
    assert ids == ["b", "a", "c d"] and labels.tolist() == [1, 0, 1]
    assert path.stat().st_mode & 0o044  # readable by others as a normal file, not 0600
    write_submission(["x"], [True], path)  # bools are labels too; replaces the file
    assert path.read_text() == "x,1\n"


@pytest.mark.parametrize(
    ("ids", "labels", "match"),
    [
        (["a", "a"], [0, 1], "once"),
        (["a", "b"], [0, 2], "only 0"),
        (["a", "b"], [0.5, 1], "only 0"),
        (["a"], [0, 1], "1 ids but 2 labels"),
        ([], [], "empty"),
        (["a,b"], [1], "commas"),
        ([""], [1], "non-empty"),
        (["a\n"], [1], "line breaks"),
    ],
)
def test_submission_refuses_bad_content(tmp_path, ids, labels, match):
    path = tmp_path / "sub.csv"
    path.write_text("previous,1\n")
    with pytest.raises(ValueError, match=match):
        write_submission(ids, labels, path)
    assert path.read_text() == "previous,1\n"  # never left half-written
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]


@pytest.mark.parametrize(
    ("text", "match"),
    [("a,1\nb,2\n", ":2:"), ("a;1\n", ":1:"), ("", "empty"), ("a,1\na,0\n", "once")],
)
def test_read_submission_refuses_malformed_files(tmp_path, text, match):
    path = tmp_path / "s.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_submission(path)


def test_scores_file_is_ranked_highest_first_with_stable_ties(tmp_path):
    from skfingerprint import write_scores

    path = write_scores(["a", "b", "c", "d"], [0.2, 0.9, 0.2, 0.5], tmp_path / "s.csv")
    assert path.read_text() == (
        "rank,id,p_used\n1,b,0.900000\n2,d,0.500000\n3,a,0.200000\n4,c,0.200000\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv"]  # atomic: no temporary left


@pytest.mark.parametrize(
    ("ids", "scores", "match"),
    [
        (["a", "b"], [0.1], r"scores must hold one score per real image \(2\); got shape \(1,\)"),
        (["a"], [[0.1]], r"got shape \(1, 1\)"),
        (["a", "b"], ["0.1", "0.2"], "scores must be numbers; got dtype <U3"),
        (["a", "b"], [0.1, np.nan], "finite"),
        (["a", "b"], [0.1, np.inf], "finite"),
        (["a", "a"], [0.1, 0.2], r"duplicated: \['a'\]"),
        ([], [], "ids is empty"),
    ],
)
def test_scores_file_refuses_bad_content(tmp_path, ids, scores, match):
    from skfingerprint import write_scores

    with pytest.raises(ValueError, match=match):
        write_scores(ids, scores, tmp_path / "s.csv")
    assert not (tmp_path / "s.csv").exists()


# --- the layout's rules and messages, exactly (mutation testing found these unpinned) ----------


@pytest.mark.parametrize("only", ["real_used", "real_not_used"])
def test_either_label_folder_makes_a_training_layout(tmp_path, rng, only):
    """One label folder alone is a broken training layout (named), not an unknown folder;
    beside real_unknown/ it is a mixed layout."""
    make_layout(tmp_path, rng)
    missing = "real_not_used" if only == "real_used" else "real_used"
    for p in (tmp_path / missing).iterdir():
        p.unlink()
    (tmp_path / missing).rmdir()
    with pytest.raises(FileNotFoundError) as info:
        load_imageclef_gans(tmp_path)
    assert str(info.value) == f"Missing folder '{tmp_path / missing}' (train layout)"
    (tmp_path / "real_unknown").mkdir()
    with pytest.raises(ValueError) as info:
        load_imageclef_gans(tmp_path)
    assert str(info.value) == (
        f"'{tmp_path}' mixes the test layout (real_unknown/) with the training layout "
        "(real_used/, real_not_used/); keep the splits in separate folders"
    )


def test_not_a_layout_message_lists_both_layouts_and_what_is_there(tmp_path):
    expected = (
        f"'{tmp_path}' is not an ImageCLEF GANs folder: expected sub-folders generated/, "
        "real_used/, real_not_used/ (training) or generated/, real_unknown/ (test); found "
    )
    with pytest.raises(FileNotFoundError) as info:
        load_imageclef_gans(tmp_path)
    assert str(info.value) == expected + "no sub-folders"
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    with pytest.raises(FileNotFoundError) as info:
        load_imageclef_gans(tmp_path)
    assert str(info.value) == expected + "['a', 'b']"


def test_loaded_fields_are_typed_and_complete(tmp_path, rng):
    data = load_imageclef_gans(make_layout(tmp_path, rng))
    assert data.y.dtype == np.int64
    assert sorted(data.generated_paths) == sorted((tmp_path / "generated").iterdir())
    assert [p.stem for p in data.real_paths] == data.ids


@pytest.mark.parametrize(("folder", "what"), [("generated", "generated"), ("real_used", "real")])
def test_duplicate_ids_message_names_the_set_and_both_files(tmp_path, rng, folder, what):
    make_layout(tmp_path, rng)
    stem = "gen_000" if folder == "generated" else "u_000"
    write_png(tmp_path / folder / f"{stem}.jpg", np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError) as info:
        load_imageclef_gans(tmp_path)
    clash = sorted(str(p) for p in (tmp_path / folder).glob(f"{stem}.*"))
    message = str(info.value)
    assert message.startswith(
        f"Duplicate image ids among the {what} images: 1 ids occur more than once "
        f"(first: '{stem}' in "
    )
    assert sorted(ast.literal_eval(message.split(" in ", 1)[1].split(")")[0])) == clash
    assert message.endswith("must be unique.")


def test_mixed_sizes_message_names_the_first_image_and_the_odd_one(tmp_path, rng):
    """The first image (by id) is the odd one here, 16 wide and 20 high."""
    make_layout(tmp_path, rng)
    odd = write_png(tmp_path / "real_not_used" / "a_odd.png", np.zeros((20, 16), np.uint8))
    data = load_imageclef_gans(tmp_path, check_sizes=False)
    assert data.real_paths[0] == odd
    with pytest.raises(ValueError) as info:
        load_imageclef_gans(tmp_path)
    assert str(info.value) == (
        f"Images in '{tmp_path}' have mixed sizes: '{odd}' is 16x20 but "
        f"'{data.real_paths[1]}' is 16x16 (width x height). ImageCLEF images share one size."
    )


def test_ids_with_any_letter_are_fine_and_duplicates_are_listed_up_to_five(tmp_path):
    write_submission(["IMG_X1", "XX"], [1, 0], tmp_path / "s.csv")
    assert read_submission(tmp_path / "s.csv")[0] == ["IMG_X1", "XX"]
    dups = [f"d{i}" for i in range(7)] * 2
    with pytest.raises(ValueError) as info:
        write_submission(dups, [0] * 14, tmp_path / "s.csv")
    assert str(info.value).endswith("duplicated: ['d0', 'd1', 'd2', 'd3', 'd4']")
    with pytest.raises(ValueError, match="^labels must hold only 0"):
        write_submission(["a"], [2], tmp_path / "s.csv")


def test_files_are_utf8_whatever_the_locale(tmp_path):
    """Written and read as UTF-8 even where the locale's encoding is ASCII (LC_ALL=C)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys; from skfingerprint import read_submission, write_scores, write_submission\n"
        "d = sys.argv[1]\n"
        "ids = ['patient_\\u00e91', '\\u00fc2']\n"  # escapes: the command line is ASCII here
        "write_submission(ids, [1, 0], d + '/s.csv')\n"
        "write_scores(ids, [0.1, 0.9], d + '/p.csv')\n"
        "print(ascii(read_submission(d + '/s.csv')[0]))"
    )
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, check=True
    )
    assert (tmp_path / "s.csv").read_bytes() == "patient_é1,1\nü2,0\n".encode()
    assert (tmp_path / "p.csv").read_bytes().decode("utf-8").splitlines()[1] == "1,ü2,0.900000"
    assert out.stdout.strip() == b"['patient_\\xe91', '\\xfc2']"


def test_scores_ties_keep_the_order_of_the_ids_on_long_lists(tmp_path):
    """Past numpy's small-array insertion sort, a non-stable sort reorders ties."""
    from skfingerprint import write_scores

    ids = [f"r{i:03d}" for i in range(200)]
    scores = np.repeat([0.25, 0.75], 100)[np.random.default_rng(0).permutation(200)]
    lines = write_scores(ids, scores, tmp_path / "s.csv").read_text().splitlines()[1:]
    ranked = [line.split(",")[1] for line in lines]
    high = [i for i, s in zip(ids, scores, strict=True) if s == 0.75]
    low = [i for i, s in zip(ids, scores, strict=True) if s == 0.25]
    assert ranked == high + low


def test_scores_and_submission_messages_exactly(tmp_path):
    from skfingerprint import write_scores

    with pytest.raises(ValueError, match=r"^no scores to write: ids is empty$"):
        write_scores([], [], tmp_path / "s.csv")
    with pytest.raises(ValueError, match=r"^scores holds 1 non-finite values \(NaN or infinity\)$"):
        write_scores(["a"], [np.nan], tmp_path / "s.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,1\n  b;0  \n")
    with pytest.raises(ValueError) as info:
        read_submission(bad)
    assert str(info.value) == f"{bad}:2: expected '<id>,<0|1>', got '  b;0'"


@pytest.mark.parametrize("line", ["a,1 \n", "a,1X\n"])
def test_submission_lines_must_end_right_after_the_label(tmp_path, line):
    path = tmp_path / "s.csv"
    path.write_bytes(line.encode())
    with pytest.raises(ValueError, match="expected '<id>,<0|1>'"):
        read_submission(path)
    path.write_bytes(b"a,1\r\nb,0\r\n")  # Windows line ends are fine
    assert read_submission(path)[0] == ["a", "b"]


def test_bad_id_message_says_what_an_id_may_not_hold(tmp_path):
    with pytest.raises(ValueError) as info:
        write_submission(["a,b"], [1], tmp_path / "s.csv")
    assert str(info.value) == (
        "Invalid image id 'a,b' for a submission: ids must be non-empty, without commas, "
        "quotes, tabs, line breaks or surrounding spaces"
    )


def test_scores_of_an_unsigned_dtype_are_ranked_as_numbers(tmp_path):
    """Catches ranking on the caller's dtype: negating uint8 scores wraps (-1 -> 255), which
    would put the lowest score first."""
    from skfingerprint import write_scores

    path = write_scores(["a", "b", "c"], np.array([0, 2, 1], dtype=np.uint8), tmp_path / "s.csv")
    assert path.read_text() == "rank,id,p_used\n1,b,2.000000\n2,c,1.000000\n3,a,0.000000\n"


def test_pool_with_adds_the_other_folders_generated_images_after_its_own(tmp_path, rng):
    train = make_layout(tmp_path / "train", rng, n_gen=4)
    test = make_layout(tmp_path / "test", rng, split="test", n_gen=3)
    alone = load_imageclef_gans(train)
    data = load_imageclef_gans(train, pool_with=test)
    assert data.X_pairs.library.ids == [
        *(f"gen_{i:03d}" for i in range(4)),
        *(f"test/gen_{i:03d}" for i in range(3)),
    ]  # same stems in both folders, told apart by the pooled folder's name
    assert data.generated_paths == alone.generated_paths + sorted((test / "generated").iterdir())
    assert data.pooled_from == [test.resolve()] and alone.pooled_from == []
    # the rows and their labels are this folder's, untouched; the other folder's reals join as
    # the reference, unlabelled
    assert data.ids == alone.ids and data.y.tolist() == alone.y.tolist()
    assert data.X_pairs.reference.ids == ["test/t_000", "test/t_001", "test/t_002"]
    assert data.reference_paths == sorted((test / "real_unknown").iterdir())
    assert alone.X_pairs.reference is None and alone.reference_paths == []
    from_train = load_imageclef_gans(test, pool_with=train)  # both label folders, no labels
    assert from_train.X_pairs.reference.ids == [f"train/{s}" for s in alone.ids]
    assert from_train.y is None
    both = load_imageclef_gans(train, pool_with=[test, make_layout(tmp_path / "more", rng)])
    assert len(both.X_pairs.library) == 4 + 3 + 4 and both.X_pairs.library.ids[-1] == "more/gen_003"
    assert len(both.X_pairs.reference) == 3 + 5
    only_generated = tmp_path / "samples"
    write_png(only_generated / "generated" / "s.png", np.zeros((16, 16), np.uint8))
    extra = load_imageclef_gans(train, pool_with=only_generated)
    assert extra.X_pairs.library.ids[-1] == "samples/s" and extra.X_pairs.reference is None


def test_a_pooled_copy_is_found_by_the_nearest_neighbour_search(tmp_path, rng):
    """A used real image whose only copy sits in the other folder's library: its best pixel
    cosine is 1 when pooled, below 1 when not (the pooled images are searched, not only listed)."""
    from skfingerprint.baselines import PixelNearestNeighbor

    train = make_layout(tmp_path / "train", rng)
    test = make_layout(tmp_path / "test", rng, split="test")
    copy = np.asarray(Image.open(train / "real_used" / "u_000.png"))
    write_png(test / "generated" / "copy.png", copy)
    for pool, expected in ((None, False), (test, True)):
        data = load_imageclef_gans(train, pool_with=pool)
        pixel = PixelNearestNeighbor(image_size=16).fit(data.X_pairs, data.y)
        best = pixel.score_samples(data.X_pairs)
        assert np.isclose(best[data.ids.index("u_000")], 1.0, atol=1e-5) == expected


def test_pool_with_refuses_what_it_cannot_pool(tmp_path, rng):
    def refusal(error, pool_with):
        with pytest.raises(error) as caught:
            load_imageclef_gans(train, pool_with=pool_with)
        return str(caught.value)

    train = make_layout(tmp_path / "train", rng)
    assert refusal(ValueError, tmp_path / "train") == (
        f"pool_with names '{train}' itself; pool a split with the other split's folder "
        "(e.g. the training folder with the test folder)"
    )
    test = make_layout(tmp_path / "test", rng, split="test")
    again = tmp_path / "." / "test"
    assert refusal(ValueError, [test, again]) == (
        f"pool_with names a folder twice: {[str(test), str(again)]}"
    )
    twin = make_layout(tmp_path / "other" / "test", rng, split="test")
    assert refusal(ValueError, [test, twin]) == (
        "pool_with's folders share a name (['test', 'test']), which would make the pooled "
        "images' ids ambiguous; give them distinct names"
    )
    (tmp_path / "empty").mkdir()
    empty = (tmp_path / "empty").resolve()
    assert refusal(FileNotFoundError, tmp_path / "empty") == (
        f"pool_with folder '{empty}' has no generated/ sub-folder (an ImageCLEF training or "
        "test folder of the same generator is expected)"
    )
    odd = make_layout(tmp_path / "odd", rng, split="test", size=20)
    first, other = train / "generated" / "gen_000.png", odd.resolve() / "generated" / "gen_000.png"
    assert refusal(ValueError, odd) == (
        f"Images in '{train}' and pooled '{odd.resolve()}' have mixed sizes: '{first}' is 16x16 "
        f"but '{other}' is 20x20 (width x height). ImageCLEF images share one size."
    )
    # every pooled folder is named, in order
    assert refusal(ValueError, [test, odd]).startswith(
        f"Images in '{train}' and pooled '{test.resolve()}' and pooled '{odd.resolve()}' have"
    )
    # ids that occur twice within a pooled folder: the folder and the kind of image named
    for sub, kind in (("generated", "generated"), ("real_unknown", "real")):
        dup = make_layout(tmp_path / f"dup_{sub}", rng, split="test")
        write_png(dup / sub / "twice.png", np.zeros((16, 16), np.uint8))
        write_png(dup / sub / "twice.jpg", np.zeros((16, 16), np.uint8))
        message = refusal(ValueError, dup)
        assert message.startswith(
            f"Duplicate image ids among the {kind} (of '{dup.resolve()}') images: 1 ids"
        )
    assert len(load_imageclef_gans(train, pool_with=odd, check_sizes=False).X_pairs.library) == 8
