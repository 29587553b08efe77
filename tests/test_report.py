"""The HTML audit report: what it shows must be what the pipeline computed, and safe to open."""

import base64
import datetime
import io
import re
import shutil
import subprocess
import warnings
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.exceptions import NotFittedError
from sklearn.metrics import cohen_kappa_score, confusion_matrix, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from skfingerprint import load_model, save_model, tpr_at_fpr, write_report
from skfingerprint.cli import main
from skfingerprint.datasets import make_synthetic_leak, write_imageclef_layout
from skfingerprint.pairs import make_pairs
from skfingerprint.pipeline import TINY_VIT, make_fingerprint_pipeline
from skfingerprint.relations import space_vectors
from skfingerprint.report import N_BOOTSTRAP, NEAR_COPY, REPEATING_SHARE, _bootstrap_kappa

from .conftest import as_bits, module_unless_fresh, points_at

PNG_URI = "data:image/png;base64,"


@pytest.fixture(scope="module")
def task():
    return make_synthetic_leak(12, 12, 36, image_size=32, random_state=0)


@pytest.fixture(scope="module")
def pipe(task):
    """The default pipeline (linear head, pixel-space candidates) on a tiny random ViT."""
    return make_fingerprint_pipeline(**TINY_VIT, k=10, random_state=0).fit(task.X_pairs, task.y)


@pytest.fixture(scope="module")
def noisy_y(task):
    """True labels with four flipped, so that kappa, AUC and the confusion matrix are not the
    trivial perfect ones this easy task gives."""
    y = task.y.copy()
    y[[0, 3, 5, 8]] ^= 1
    return y


@pytest.fixture(scope=module_unless_fresh)
def report(task, pipe, noisy_y, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    assert write_report(pipe, task.X_pairs, path, y=noisy_y) == path
    return path.read_text(encoding="utf-8")


class _Tags(HTMLParser):
    """Every start tag as ``(tag, attrs)``, and the text inside elements with an id."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(html, tag=None, **having):
    parser = _Tags()
    parser.feed(html)
    return [
        attrs
        for t, attrs in parser.tags
        if (tag is None or t == tag) and all(k in attrs for k in having)
    ]


def one_line(html):
    """The page with every run of whitespace one space, as a browser lays out its text."""
    return " ".join(html.split())


def ranked_rows(html):
    return tags(html, "tr", **{"data-rank": True})


def image_kinds(html):
    return Counter(a.get("data-kind") for a in tags(html, "img"))


def decode(uri):
    assert uri.startswith(PNG_URI)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri[len(PNG_URI) :]))))


def brute_force_nearest(pipe, X_pairs):
    """Every real image's library images, most similar first, by a full cosine matrix in the
    space where the selector picks its candidates (here the centred pixel space)."""
    emb = pipe.named_steps["embed"].transform(X_pairs)
    real, lib = space_vectors(emb, pipe.named_steps["select"].spaces_[0])
    sims = real @ lib.T
    return np.argsort(-sims, axis=1, kind="stable"), sims


def nearest_other_cosines(lib):
    """Each unit vector's best cosine to another row, by a full matrix."""
    sims = lib @ lib.T
    np.fill_diagonal(sims, -np.inf)
    return sims.max(1)


# --- what is shown is what the pipeline computed -----------------------------------------------


def test_rows_are_ranked_by_p_used_and_show_the_pipelines_values(task, pipe, noisy_y, report):
    rows = ranked_rows(report)
    assert [int(r["data-rank"]) for r in rows] == list(range(1, 25))
    p = [float(r["data-p"]) for r in rows]
    assert p == sorted(p, reverse=True)  # highest P(used) first
    # the P shown for each id is predict_proba's for that id, to the last bit
    proba = pipe.predict_proba(task.X_pairs)[:, 1]
    assert {r["data-id"]: float(r["data-p"]) for r in rows} == dict(
        zip(task.ids, proba.tolist(), strict=True)
    )
    pred = dict(zip(task.ids, pipe.predict(task.X_pairs).tolist(), strict=True))
    truth = dict(zip(task.ids, noisy_y.tolist(), strict=True))
    assert all(int(r["data-pred"]) == pred[r["data-id"]] for r in rows)
    assert all(int(r["data-true"]) == truth[r["data-id"]] for r in rows)
    assert len({r["data-p"] for r in rows}) > 1  # not a constant column


def test_header_says_what_was_audited(task, pipe, report):
    from skfingerprint import __version__

    text = one_line(report)
    stamp = re.search(r"audit by skfingerprint (\S+), (\S+)\.</p>", text)
    assert stamp.group(1) == __version__ and f"Written by skfingerprint {__version__}." in text
    created = datetime.datetime.fromisoformat(stamp.group(2))
    assert created.tzinfo is not None  # local time, with its offset
    assert abs(datetime.datetime.now().astimezone() - created) < datetime.timedelta(minutes=30)
    learned = pipe.named_steps["clf"].threshold_
    assert (
        "P(used) 0.5</span>: used when P(used) > 0.5, i.e. when the classifier's score exceeds "
        f"the threshold it learned in fit ({learned:.4g})</td>"
    ) in text.replace("&gt;", ">").replace("&#39;", "'")
    assert "is followed by its 4 nearest generated images" in text  # n_candidates=4
    assert "<th>Model</th>" not in report and "<th>Data</th>" not in report  # none given
    assert "<title>skfingerprint audit report</title>" in report
    assert tags(report, id=True)  # ids to navigate exist
    n_real = re.search(r'id="n-real">(\d+)<', report).group(1)
    n_gen = re.search(r'id="n-generated">(\d+)<', report).group(1)
    assert (int(n_real), int(n_gen)) == (24, 36)
    # the linear head says "used" where P(used) > 0.5
    assert tags(report, id=True, **{"data-threshold": True})[0]["data-threshold"] == "0.5"


def test_the_pipeline_is_described_step_by_step(pipe, report):
    """The model and where its weights came from, k, the classifier; passthrough steps left
    out wherever they stand."""
    from skfingerprint.report import _describe_steps

    model = pipe.named_steps["embed"].model
    assert re.findall(r"<li>(.*?)</li>", report) == [
        f"embed: ViTLayerFusionEmbedder ({model}, random init)",
        "select: FaissCandidateSelector (top-10 candidates)",
        "clf: LinearRelationClassifier",
    ]
    unfitted = make_fingerprint_pipeline(k=7)  # pretrained; describing it downloads nothing
    unfitted.steps.insert(1, ("nothing", "passthrough"))
    unfitted.steps.insert(3, ("none", None))
    steps = [
        "embed: ViTLayerFusionEmbedder (vit_base_patch16_224, pretrained)",
        "select: FaissCandidateSelector (top-7 candidates)",
        "clf: LinearRelationClassifier",
    ]
    assert _describe_steps(unfitted) == steps
    unfitted.set_params(embed__checkpoint="/models/vit.pth")
    steps[0] = "embed: ViTLayerFusionEmbedder (vit_base_patch16_224, weights from /models/vit.pth)"
    assert _describe_steps(unfitted) == steps


def test_the_candidates_space_is_named(report):
    """The space whose cosines the candidates show: the selector's first (the paper's selector
    has none and compares fused ViT embeddings)."""
    from types import SimpleNamespace

    from skfingerprint.report import _space_name

    assert "with their pixels cosine" in one_line(report)
    assert _space_name(SimpleNamespace()) == "ViT embedding"
    assert _space_name(SimpleNamespace(spaces_=("vit", "pixels"))) == "ViT embedding"
    assert _space_name(SimpleNamespace(spaces_=("pixels_whitened", "vit"))) == "pixels_whitened"


def test_the_threshold_shown_is_where_each_classifier_says_used(pipe):
    from sklearn.linear_model import LogisticRegression

    from skfingerprint import CANetClassifier
    from skfingerprint.report import _decision_rule

    assert _decision_rule(CANetClassifier(threshold=0.7)) == (0.7, "used when P(used) \u2265 0.7")
    t, rule = _decision_rule(pipe.named_steps["clf"])  # a sigmoid of score - threshold_
    assert t == 0.5 and f"{pipe.named_steps['clf'].threshold_:.4g}" in rule
    assert _decision_rule(LogisticRegression()) == (0.5, "used when P(used) > 0.5")  # argmax


def test_every_image_is_an_inline_png_and_the_page_fetches_nothing(task, report):
    imgs = tags(report, "img")
    n_hubs = len(tags(report, "tr", **{"data-count": True}))
    kinds = image_kinds(report)
    assert kinds == {"real": 24, "candidate": 24 * 4, "hub": n_hubs, "histogram": 1, "roc": 1}
    assert report.count("<img") == len(imgs)
    assert all(a["src"].startswith(PNG_URI) for a in imgs)
    assert all(decode(a["src"]).ndim >= 2 for a in imgs)  # each decodes as a PNG
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", report)
    assert "<link" not in report and "@import" not in report and "url(" not in report
    assert all("src" not in a for a in tags(report, "script"))


def test_the_thumbnail_of_a_row_is_its_own_real_image(task, report):
    rows = ranked_rows(report)
    reals = [a for a in tags(report, "img") if a.get("data-kind") == "real"]
    for row, img in zip(rows[:3], reals[:3], strict=True):
        i = task.ids.index(row["data-id"])
        expected = np.round(task.X_pairs.real.read(i)[..., 0] * 255).astype(np.uint8)
        np.testing.assert_array_equal(decode(img["src"]), expected)  # 32 px: stored as is


def test_candidates_are_each_real_images_nearest_generated_images(task, pipe, report):
    order, sims = brute_force_nearest(pipe, task.X_pairs)
    lib_ids = task.X_pairs.library.ids
    rows = re.findall(r'data-id="(real_\d+)"(.*?)</tr>', report, re.S)
    assert len(rows) == 24
    for rid, body in rows:
        i = task.ids.index(rid)
        shown = re.findall(r"#\d+ (gen_\d+)<br>cos <b>([-0-9.]+)</b>", body)
        assert [g for g, _ in shown] == [lib_ids[j] for j in order[i, :4]], rid
        assert [c for _, c in shown] == [f"{sims[i, j]:.3f}" for j in order[i, :4]], rid


def test_kappa_auc_and_confusion_matrix_are_sklearns(task, pipe, noisy_y, report):
    pred = pipe.predict(task.X_pairs)
    kappa = float(tags(report, id=True, **{"data-kappa": True})[0]["data-kappa"])
    assert kappa == pytest.approx(cohen_kappa_score(noisy_y, pred), abs=1e-12)
    assert 0.0 < kappa < 1.0  # the flipped labels make it a real test
    auc = float(tags(report, id=True, **{"data-auc": True})[0]["data-auc"])
    assert auc == pytest.approx(roc_auc_score(noisy_y, pipe.predict_proba(task.X_pairs)[:, 1]))
    cells = {a["data-cell"]: a for a in tags(report, "td", **{"data-cell": True})}
    assert set(cells) == {"tn", "fp", "fn", "tp"}
    (tn, fp), (fn, tp) = confusion_matrix(noisy_y, pred)
    got = dict(re.findall(r'data-cell="(tn|fp|fn|tp)">(\d+)<', report))
    assert {k: int(v) for k, v in got.items()} == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    ci = tags(report, id=True, **{"data-low": True})[0]
    low, high = float(ci["data-low"]), float(ci["data-high"])
    assert low <= round(kappa, 3) <= high and low < high


def test_the_metrics_in_words_are_sklearns_rounded(task, pipe, noisy_y, report):
    """What a reader sees, not the data attributes: the visible kappa, AUC, the four rates,
    the label counts and the number of resamples (the noisy labels make every rate differ)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    pred = pipe.predict(task.X_pairs)
    proba = pipe.predict_proba(task.X_pairs)[:, 1]
    text = one_line(report)
    kappa = cohen_kappa_score(noisy_y, pred)
    assert f'id="kappa" data-kappa="{kappa!r}">{kappa:.3f}</div>' in text
    auc = roc_auc_score(noisy_y, proba)
    assert re.search(rf'id="auc" data-auc="[0-9.e-]+">{auc:.3f}</div>', text)
    tpr = tpr_at_fpr(noisy_y, proba, 0.01)
    assert f'id="tpr-1pct" data-tpr="{tpr!r}">TPR at 1% FPR: {tpr:.3f}</div>' in text
    rates = {
        "Accuracy": accuracy_score(noisy_y, pred),
        "Precision": precision_score(noisy_y, pred),
        "Recall": recall_score(noisy_y, pred),
        "F1": f1_score(noisy_y, pred),
    }
    assert len({f"{v:.3f}" for v in rates.values()}) == 4  # a swap would show
    for name, value in rates.items():
        assert f"<tr><th>{name}</th><td>{value:.3f}</td></tr>" in text, name
    n_used = int(noisy_y.sum())
    assert n_used != len(noisy_y) - n_used
    assert f"({n_used} used, {len(noisy_y) - n_used} not used: true labels known)" in text
    assert f"paired bootstrap, {N_BOOTSTRAP} resamples" in text


def test_labels_of_one_class_show_no_auc_no_interval_and_a_whole_confusion_matrix(
    task, pipe, tmp_path
):
    """Real images that are all "not used" and all predicted so: AUC and the kappa interval
    are undefined and said to be, the confusion matrix keeps its four cells, and no ROC."""
    idle = np.flatnonzero(pipe.predict(task.X_pairs) == 0)
    assert 1 < len(idle) < len(task.y)
    X = task.X_pairs[idle]
    html = write_report(pipe, X, tmp_path / "r.html", y=np.zeros(len(idle), int)).read_text()
    text = one_line(html)
    assert "undefined: the labels hold one class only" in text and "data-auc" not in html
    assert "tpr-1pct" not in html
    assert "no interval: kappa is undefined on the resamples" in text and "data-low" not in html
    got = dict(re.findall(r'data-cell="(tn|fp|fn|tp)">(\d+)<', html))
    assert {k: int(v) for k, v in got.items()} == {"tn": len(idle), "fp": 0, "fn": 0, "tp": 0}
    assert "roc" not in image_kinds(html)
    assert f"(0 used, {len(idle)} not used: true labels known)" in text


@pytest.fixture
def figures(monkeypatch):
    """The report's matplotlib figures, kept instead of drawn (their content is what a test
    can check; the PNG bytes are not)."""
    from skfingerprint import report

    kept = []

    def keep(fig):
        kept.append(fig)
        return PNG_URI + base64.b64encode(b"x").decode()

    monkeypatch.setattr(report, "_figure_png", keep)
    return kept


def test_the_figures_draw_the_scores_the_curve_and_the_operating_point(
    task, pipe, noisy_y, tmp_path, figures
):
    from sklearn.metrics import roc_curve

    write_report(pipe, task.X_pairs, tmp_path / "r.html", y=noisy_y)
    histogram, roc = (fig.axes[0] for fig in figures)
    proba = pipe.predict_proba(task.X_pairs)[:, 1]
    pred = pipe.predict(task.X_pairs)
    # histogram: 25 bins over [0, 1], not used then used, and the threshold line
    bins = np.linspace(0.0, 1.0, 26)
    heights = [p.get_height() for p in histogram.patches]
    expected = [np.histogram(proba[noisy_y == c], bins=bins)[0] for c in (0, 1)]
    np.testing.assert_array_equal(heights, np.concatenate(expected))
    assert [p.get_x() for p in histogram.patches[:25]] == pytest.approx(bins[:-1])
    assert list(histogram.lines[0].get_xdata()) == [0.5, 0.5]
    legend = [t.get_text() for t in histogram.get_legend().get_texts()]
    assert legend == ["not used (true)", "used (true)", "threshold 0.5"]
    assert (histogram.get_xlabel(), histogram.get_xlim()) == ("P(used)", (0.0, 1.0))
    assert histogram.get_ylabel() == "real images"
    # ROC: sklearn's curve, the chance diagonal, and the classifier's (FPR, TPR)
    fpr, tpr, _ = roc_curve(noisy_y, proba)
    curve, chance, point = roc.lines
    np.testing.assert_array_equal(curve.get_xdata(), fpr)
    np.testing.assert_array_equal(curve.get_ydata(), tpr)
    assert (list(chance.get_xdata()), list(chance.get_ydata())) == ([0, 1], [0, 1])
    op = (pred[noisy_y == 0].mean(), pred[noisy_y == 1].mean())
    assert 0 < op[0] < op[1] < 1  # the flipped labels make both rates non-trivial
    assert (point.get_xdata()[0], point.get_ydata()[0]) == pytest.approx(op)
    assert (point.get_marker(), point.get_linestyle()) == ("o", "None")  # a dot, visible
    assert roc.get_xlim() == (-0.01, 1.0) and roc.get_ylim() == (0.0, 1.02)  # the whole curve
    auc = roc_auc_score(noisy_y, proba)
    legend = [t.get_text() for t in roc.get_legend().get_texts()]
    assert legend == [f"ROC (AUC {auc:.3f})", "chance", "decision threshold"]
    assert roc.get_xlabel() == "false positive rate (not used, flagged)"
    assert roc.get_ylabel() == "true positive rate (used, flagged)"


def test_without_labels_the_histogram_shows_every_score_once(task, pipe, tmp_path, figures):
    write_report(pipe, task.X_pairs, tmp_path / "r.html")
    (histogram,) = (fig.axes[0] for fig in figures)
    proba = pipe.predict_proba(task.X_pairs)[:, 1]
    heights = [p.get_height() for p in histogram.patches]
    np.testing.assert_array_equal(heights, np.histogram(proba, np.linspace(0, 1, 26))[0])
    legend = [t.get_text() for t in histogram.get_legend().get_texts()]
    assert legend == ["real images", "threshold 0.5"]


def test_bootstrap_interval_is_the_percentiles_of_resampled_sklearn_kappas():
    """The vectorised kappa of the bootstrap equals sklearn's on the same resamples."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 40)
    pred = np.where(rng.random(40) < 0.7, y, 1 - y)
    draws = np.random.default_rng(0)  # the report's fixed seed, drawn the same way
    kappas = []
    for _ in range(N_BOOTSTRAP):
        idx = draws.integers(0, 40, size=40)
        if len(np.unique(np.r_[y[idx], pred[idx]])) > 1:
            kappas.append(cohen_kappa_score(y[idx], pred[idx]))
    low, high = _bootstrap_kappa(y, pred)
    assert (low, high) == pytest.approx(tuple(np.percentile(kappas, [2.5, 97.5])), abs=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # undefined resamples are dropped without a warning
        assert _bootstrap_kappa(y, y) == (1.0, 1.0)
        assert _bootstrap_kappa(np.zeros(5, int), np.zeros(5, int)) is None  # never defined


def test_a_bootstrap_drawn_in_chunks_draws_each_resample_once():
    """3,000 images: the resamples are drawn in chunks of 666 rows (memory), and exactly
    ``n_resamples`` of them, the same ones as a single draw."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 3000)
    pred = np.where(rng.random(3000) < 0.6, y, 1 - y)
    idx = np.random.default_rng(0).integers(0, 3000, size=(700, 3000))
    kappas = [cohen_kappa_score(y[i], pred[i]) for i in idx]
    expected = tuple(np.percentile(kappas, [2.5, 97.5]))
    assert _bootstrap_kappa(y, pred, n_resamples=700) == pytest.approx(expected, abs=1e-9)


def test_hub_counts_are_a_brute_force_count(task, pipe, report):
    order, _ = brute_force_nearest(pipe, task.X_pairs)
    counts = Counter(task.X_pairs.library.ids[j] for j in order[:, 0])
    hubs = {a["data-id"]: int(a["data-count"]) for a in tags(report, "tr", **{"data-count": True})}
    expected = {g: c for g, c in counts.most_common() if c >= 2}
    assert hubs and len(hubs) == min(10, len(expected))
    assert all(hubs[g] == counts[g] for g in hubs)
    assert min(hubs.values()) >= max(c for g, c in counts.items() if g not in hubs)
    assert "A hub is weak evidence" in report
    assert max(hubs.values()) <= 8 and " more<br>" not in report  # every real image listed


def test_hub_rows_name_their_real_images_share_and_mean_p(task, pipe, tmp_path):
    """Two generated images for 24 reals: each a hub of about 12, so the list is cut at 8."""
    X = make_pairs(task.real_images, task.generated_images[:2], real_ids=task.ids)
    with pytest.warns(UserWarning, match="k=10 is larger than the library"):
        html = write_report(pipe, X, tmp_path / "r.html", n_candidates=1).read_text()
        proba = pipe.predict_proba(X)[:, 1]
        n_pred = int(pipe.predict(X).sum())
    text = one_line(html)
    assert 'id="library-diversity"' in html  # two images are enough to measure it
    order, _ = brute_force_nearest(pipe, X)
    assert "each generated image would be the nearest of 12.00 real images on average" in text
    assert f"<th>Predicted used</th><td>{n_pred} of 24 real images</td>" in text
    counts = sorted(Counter(order[:, 0]).items(), key=lambda jc: (-jc[1], jc[0]))
    assert max(c for _, c in counts) > 8
    rows = re.findall(r'<tr data-id="(\d+)" data-count="(\d+)">(.*?)</tr>', text)
    assert [(int(j), int(c)) for j, c, _ in rows] == counts
    for (j, count), (_, _, body) in zip(counts, rows, strict=True):
        reals = np.flatnonzero(order[:, 0] == j)
        assert f"{100 * count / 24:.1f}% of them" in body
        listed = ", ".join(task.ids[i] for i in reals[:8])
        more = f", and {count - 8} more" if count > 8 else ""
        assert f"<td>{listed}{more}<br>" in body
        assert f"their mean P(used): {proba[reals].mean():.3f}" in body
    # each real image's one candidate is flagged with its hub's count
    flags = re.findall(
        r"#1 (\d+)<br>cos <b>[-0-9.]+</b><br><span class=\"hubflag\">hub &times;(\d+)<", text
    )
    assert sorted(flags) == sorted((str(j), str(c)) for j, c in counts for _ in range(c))
    # n_hubs=1: the largest only, and the section stays
    with pytest.warns(UserWarning, match="k=10 is larger than the library"):
        html = write_report(pipe, X, tmp_path / "one.html", n_hubs=1).read_text()
    rows = tags(html, "tr", **{"data-count": True})
    assert [(int(r["data-id"]), int(r["data-count"])) for r in rows] == counts[:1]
    assert 'href="#hubs"' in html


@pytest.mark.usefixtures("second_neighbour_missing")
def test_a_missing_neighbour_shows_as_no_candidate_in_its_place(task, pipe, tmp_path):
    """An approximate index can return -1 for a neighbour: that cell says so, the cells after
    it still show their images."""
    html = write_report(pipe, task.X_pairs, tmp_path / "r.html", n_candidates=3).read_text()
    assert html.count("#2 no candidate") == 24 and "#2 gen_" not in html
    assert image_kinds(html)["candidate"] == 48  # the first and third of each row


def test_rows_of_equal_p_keep_their_input_order(task, pipe, tmp_path, monkeypatch):
    """P(used) rounded to one decimal (ties, as a saturated head gives): tied rows in the order
    given, so a report is the same from run to run."""
    from skfingerprint.plotting import _AppliedModel

    exact = _AppliedModel.proba
    monkeypatch.setattr(_AppliedModel, "proba", lambda self: exact(self).round(1))
    proba = pipe.predict_proba(task.X_pairs)[:, 1].round(1)
    assert len(set(proba)) < 12  # many ties among 24
    html = write_report(pipe, task.X_pairs, tmp_path / "r.html", n_hubs=0).read_text()
    ids = [r["data-id"] for r in ranked_rows(html)]
    assert ids == [task.ids[i] for i in sorted(range(24), key=lambda i: -proba[i])]


def test_each_row_shows_its_p_in_words_and_as_a_bar(task, pipe, report):
    proba = dict(zip(task.ids, pipe.predict_proba(task.X_pairs)[:, 1], strict=True))
    cells = re.findall(
        r'data-id="([^"]+)".*?<td class="num">([0-9.]+)<div class="pbar"><span style="width: '
        r'([0-9.]+)%"></span>',
        one_line(report),
    )
    assert len(cells) == 24
    for rid, text, width in cells:
        assert (text, width) == (f"{proba[rid]:.3f}", f"{100 * proba[rid]:.1f}"), rid


def test_library_diversity_is_a_brute_force_nearest_other_cosine(task, pipe, report):
    # Catches: an image counted as its own nearest other (every share 100%), the cosine taken
    # without centring on the library's mean (all near 1), or the wrong column of top_k.
    emb = pipe.named_steps["embed"].transform(task.X_pairs)
    nearest_other = nearest_other_cosines(space_vectors(emb, "pixels")[1])
    cell = tags(report, "td", id="library-diversity")[0]
    assert float(cell["data-share"]) == pytest.approx(np.mean(nearest_other > NEAR_COPY))
    assert f"median pixel cosine {np.median(nearest_other):.3f}" in one_line(report)
    assert 'id="library-repeats"' not in report  # this task's library does not repeat itself


def test_hubs_of_equal_count_are_listed_in_library_order():
    from skfingerprint.report import _hubs

    rng = np.random.default_rng(0)
    owners = rng.permutation(100)[:40]  # 40 library images, each the nearest of 2 reals
    nearest = rng.permutation(np.r_[np.repeat(owners, 2), [owners[0]], [-1] * 5])
    hubs = _hubs(nearest, 100, limit=30)
    assert [h.index for h in hubs] == [owners[0], *sorted(owners[1:])[:29]]
    assert [h.count for h in hubs] == [3] + [2] * 29
    assert hubs[1].reals == np.flatnonzero(nearest == hubs[1].index).tolist()


def test_library_diversity_is_measured_at_the_embedders_pixel_size(task, tmp_path):
    pipe16 = make_fingerprint_pipeline(**TINY_VIT, k=10, pixel_size=16, random_state=0)
    pipe16.fit(task.X_pairs, task.y)
    X = make_pairs(task.real_images[:2], task.generated_images[:2])
    with pytest.warns(UserWarning, match="k=10 is larger than the library"):
        html = write_report(pipe16, X, tmp_path / "r.html").read_text()
    row = re.search(r'id="library-diversity"[^>]*>(.*?)</td>', one_line(html))
    assert "(16 px)" in row.group(1)


def test_a_library_that_repeats_itself_is_flagged(task, pipe, tmp_path):
    # Catches: the warning shown whatever the share (or never), or the threshold compared with
    # the wrong quantity. Six distinct generated images, each in six noisy copies: every image
    # has a near-copy; the same 36 images drawn apart do not.
    rng = np.random.default_rng(0)
    library = task.X_pairs.library
    distinct = library.array[:6].astype(np.float64)  # uint8
    copies = np.repeat(distinct, 6, axis=0) + rng.normal(0, 1.0, (36, *distinct.shape[1:]))
    repeating = make_pairs(task.X_pairs.real, np.clip(copies, 0, 255).astype(np.uint8))
    html = write_report(pipe, repeating, tmp_path / "r.html", n_hubs=0).read_text()
    assert float(tags(html, "td", id="library-diversity")[0]["data-share"]) == 1.0
    assert 'id="library-repeats"' in html and "The library repeats itself" in html
    text = one_line(html)
    assert "100.0% of the generated images have a near-copy among the others (above 10%" in text
    assert "(32 px); 100.0% of them have one above 0.98" in text
    varied = make_pairs(task.X_pairs.real, library.array[:36])
    html = write_report(pipe, varied, tmp_path / "v.html", n_hubs=0).read_text()
    assert float(tags(html, "td", id="library-diversity")[0]["data-share"]) <= REPEATING_SHARE
    assert 'id="library-repeats"' not in html


def test_a_library_at_exactly_the_repeating_share_is_not_flagged(task, pipe, tmp_path):
    """20 generated images, one pair of copies: 10% have a near-copy, which is not *more* than
    the 10% that flags a repeating library."""
    library = task.X_pairs.library.array[:20].copy()
    library[19] = library[0]
    html = write_report(pipe, make_pairs(task.X_pairs.real, library), tmp_path / "r.html")
    html = html.read_text()
    assert float(tags(html, "td", id="library-diversity")[0]["data-share"]) == REPEATING_SHARE
    assert "(32 px); 10.0% of them have one above 0.98" in one_line(html)
    assert 'id="library-repeats"' not in html


def test_library_diversity_without_a_pixel_space_uses_the_librarys_own_pixels(task, tmp_path):
    """The paper's pipeline carries no pixel space: the report measures the library's pixels
    at the images' own size (32 px), centred, as the pixel space would."""
    from skfingerprint.images import pixel_vectors

    paper = make_fingerprint_pipeline("maxsim", features="paper", **TINY_VIT, k=10)
    paper.fit(task.X_pairs, task.y)
    assert "pixels" not in paper.named_steps["embed"].transform(task.X_pairs).spaces
    html = write_report(paper, task.X_pairs, tmp_path / "r.html").read_text()
    lib = pixel_vectors(task.X_pairs.library, 32)
    lib = lib - lib.mean(0)
    nearest_other = nearest_other_cosines(lib / np.linalg.norm(lib, axis=1, keepdims=True))
    cell = tags(html, "td", id="library-diversity")[0]
    assert float(cell["data-share"]) == pytest.approx(np.mean(nearest_other > NEAR_COPY))
    text = one_line(html)
    assert f"median pixel cosine {np.median(nearest_other):.3f} (32 px)" in text


def test_what_the_pipeline_warns_while_scoring_is_in_the_report(task, pipe, tmp_path):
    """12-bit reals in uint16 beside the 8-bit library: the embedder's intensity warning is
    still raised (once, at the caller's line) and is written in the report, where an auditor
    reads it; a report of images on one scale has no such box. Catches: the warnings dropped
    from the report, or swallowed (not shown again) by the report's capture."""
    real12 = as_bits(task.real_images, 12)
    dark = make_pairs(real12, task.generated_images)
    with pytest.warns(UserWarning) as shown:
        html = write_report(pipe, dark, tmp_path / "r.html").read_text(encoding="utf-8")
    messages = [str(w.message) for w in shown]
    assert len(messages) == 1
    assert re.match(r"the real images are 1[56]x darker than the generated ones", messages[0])
    assert points_at(shown[0], __file__)
    assert [a["id"] for a in tags(html, "div", id=True)].count("scoring-warnings") == 1
    text = one_line(html)
    assert (
        "<b>Warnings while scoring these images</b> (check them before trusting the ranking)"
        in text
    )
    # autoescaped, the message's apostrophe as an entity
    assert f"<li>{messages[0].replace(chr(39), '&#39;')}</li>" in text
    clean = write_report(pipe, task.X_pairs, tmp_path / "c.html").read_text(encoding="utf-8")
    assert "scoring-warnings" not in clean


def test_thumbnails_keep_colour_and_shrink_large_images_to_128_px():
    from skfingerprint.report import THUMBNAIL_SIZE, _image_png

    rng = np.random.default_rng(0)
    rgb = rng.random((20, 30, 3))
    np.testing.assert_array_equal(decode(_image_png(rgb)), (rgb * 255 + 0.5).astype(np.uint8))
    gray = rng.random((20, 30, 1))
    assert decode(_image_png(gray)).shape == (20, 30)
    big = decode(_image_png(rng.random((300, 200, 3))))
    assert THUMBNAIL_SIZE == 128 and big.shape == (128, 85, 3)  # the aspect kept


# --- inputs -----------------------------------------------------------------------------------


def test_ids_and_title_from_file_names_are_escaped(task, pipe, tmp_path):
    ids = list(task.ids)
    ids[0] = '<script>alert("x")</script>&"'
    path = write_report(
        pipe, task.X_pairs, tmp_path / "r.html", ids=ids, title="<b>audit</b>", max_rows=24
    )
    html = path.read_text()
    assert '<script>alert("x")' not in html and "<b>audit</b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;&#34;" in html
    assert html.count("<script") == 1  # the page's own image check
    assert ids[0] in {a["data-id"] for a in ranked_rows(html)}  # and it round-trips


def test_without_labels_there_are_no_metrics(task, pipe, tmp_path):
    html = write_report(pipe, task.X_pairs, tmp_path / "r.html").read_text()
    assert 'id="kappa"' not in html and 'id="confusion"' not in html
    assert "roc" not in image_kinds(html) and image_kinds(html)["histogram"] == 1
    assert all("data-true" not in r for r in ranked_rows(html))
    assert "true labels unknown" in html


def test_max_rows_and_n_candidates(task, pipe, tmp_path):
    html = write_report(
        pipe, task.X_pairs, tmp_path / "r.html", max_rows=3, n_candidates=2, n_hubs=0
    ).read_text()
    rows = ranked_rows(html)
    proba = pipe.predict_proba(task.X_pairs)[:, 1]
    top = [task.ids[i] for i in np.argsort(-proba, kind="stable")[:3]]
    assert [r["data-id"] for r in rows] == top
    assert image_kinds(html) == {"real": 3, "candidate": 6, "histogram": 1}
    assert "21 lower-ranked real images are not shown" in html
    assert 'id="hubs"' not in html


def test_an_existing_report_is_replaced_atomically(task, pipe, tmp_path):
    path = tmp_path / "r.html"
    path.write_text("old")
    write_report(pipe, task.X_pairs, path, max_rows=2)
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(y=[0, 1]), ValueError, "2 labels for 24 real images"),
        (dict(y=[0, 1, 2] * 8), ValueError, "^y must hold only 0 .not used. and 1"),
        (dict(y=np.zeros((24, 2))), ValueError, "1-d"),
        (dict(ids=["a"]), ValueError, "ids has 1 names"),
        (dict(n_candidates=0), ValueError, "n_candidates must be an integer >= 1"),
        (dict(n_candidates=2.0), ValueError, "n_candidates must be an integer >= 1; got 2.0"),
        (dict(n_hubs=True), ValueError, "n_hubs must be an integer >= 0; got True"),
        (dict(max_rows=0), ValueError, "^max_rows must be an integer >= 1; got 0"),
        (dict(max_rows=1.0), ValueError, "^max_rows must be an integer >= 1; got 1.0"),
    ],
)
def test_bad_inputs_are_refused_before_writing(task, pipe, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        write_report(pipe, task.X_pairs, tmp_path / "r.html", **kwargs)
    assert not any(tmp_path.iterdir())


def test_unfitted_or_wrong_models_are_refused(task, pipe, tmp_path):
    unfitted = make_fingerprint_pipeline(**TINY_VIT, k=10)
    with pytest.raises(NotFittedError) as info:
        write_report(unfitted, task.X_pairs, tmp_path / "r.html")
    assert str(info.value) == (
        "This pipeline is not fitted yet: call pipeline.fit(X_pairs, y) first, or load a "
        "fitted one with skfingerprint.load_model"
    )
    with pytest.raises(TypeError) as info:
        write_report(pipe.named_steps["clf"], task.X_pairs, tmp_path / "r.html")
    assert str(info.value) == (
        "pipeline must be a fitted sklearn Pipeline with a ViTLayerFusionEmbedder, a "
        "FaissCandidateSelector and a classifier (e.g. from make_fingerprint_pipeline); "
        "got LinearRelationClassifier"
    )
    with pytest.raises(TypeError) as info:
        write_report(pipe[:-1], task.X_pairs, tmp_path / "r.html")
    assert str(info.value) == (
        "write_report needs a pipeline whose last step is a classifier with predict_proba "
        "(it gives P(used)); the last step is FaissCandidateSelector"
    )
    # the last of three steps is named (steps[1] would name the selector again)
    no_proba = Pipeline([*pipe.steps[:2], ("clf", FunctionTransformer())])
    with pytest.raises(TypeError, match=r"; the last step is FunctionTransformer$"):
        write_report(no_proba, task.X_pairs, tmp_path / "r.html")
    with pytest.raises(IsADirectoryError, match=r"'.*' is a folder; give a file name"):
        write_report(pipe, task.X_pairs, tmp_path)
    with pytest.raises(TypeError, match="^X_pairs must be X_pairs built by"):
        write_report(pipe, task.X_pairs.real, tmp_path / "r.html")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(pipe, task.X_pairs, tmp_path / "missing" / "r.html")
    assert not any(tmp_path.iterdir())


# --- the command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clef(tmp_path_factory, task, pipe):
    """An ImageCLEF training folder (the task) and test folder, and the pipeline's model file."""
    root = tmp_path_factory.mktemp("clef")
    write_imageclef_layout(task, root / "train", split="train")
    test = make_synthetic_leak(6, 6, 18, image_size=32, random_state=1)
    write_imageclef_layout(test, root / "test", split="test")
    save_model(pipe, root / "model.skops")
    return root


def test_cli_report_on_a_test_folder(clef, capsys, tmp_path):
    out = tmp_path / "report.html"
    code = main(["report", str(clef / "model.skops"), str(clef / "test"), "-o", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert f"wrote {out}: 12 of 12 real images" in stdout
    html = out.read_text()
    assert len(ranked_rows(html)) == 12 and 'id="kappa"' not in html
    assert str(clef / "model.skops") in html and str(clef / "test") in html


def test_cli_report_on_a_labelled_folder_uses_its_labels(clef, task, pipe, capsys, tmp_path):
    out = tmp_path / "r.html"
    argv = ["report", str(clef / "model.skops"), str(clef / "train"), "-o", str(out)]
    code = main([*argv, "--candidates", "2", "--max-rows", "5", "--title", "Audit <x>"])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert "is labelled (training layout)" in err  # not just "labelled": in tmp_path's name
    html = out.read_text()
    assert len(ranked_rows(html)) == 5 and image_kinds(html)["candidate"] == 10
    assert "<title>Audit &lt;x&gt;</title>" in html
    # the folder's labels, in the folder's row order, give sklearn's kappa
    from skfingerprint import load_imageclef_gans

    split = load_imageclef_gans(clef / "train")
    kappa = cohen_kappa_score(split.y, pipe.predict(split.X_pairs))
    assert float(re.search(r'data-kappa="([^"]+)"', html).group(1)) == pytest.approx(kappa)


def test_cli_report_refuses_bad_inputs(clef, capsys, tmp_path):
    def error(*argv):
        code = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return code, err

    out = tmp_path / "r.html"
    code, err = error("report", clef / "test", clef / "model.skops", "-o", out)
    assert code == 2 and "swapped" in err
    code, err = error("report", clef / "model.skops", clef / "nope", "-o", out)
    assert code == 2 and "does not exist" in err
    code, err = error("report", clef / "model.skops", clef / "test", "-o", tmp_path / "x" / "r")
    assert code == 2 and "does not exist" in err
    code, err = error("report", clef / "model.skops", clef / "test", "-o", out, "--max-rows", "0")
    assert code == 2 and "at least 1" in err
    # a model file holding a bare classifier: no candidates to show
    bare = save_model(load_model(clef / "model.skops")["estimator"][-1], tmp_path / "c.skops")
    code, err = error("report", bare, clef / "test", "-o", out)
    assert code == 2 and "needs a pipeline" in err
    assert not out.exists()


# --- in a real browser ------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)


def _chromium(url, profile, *extra):
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--window-size=1200,2000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_report_renders_in_a_headless_browser(task, pipe, noisy_y, tmp_path):
    path = write_report(pipe, task.X_pairs, tmp_path / "report.html", y=noisy_y)
    n_images = len(tags(path.read_text(), "img"))
    res = _chromium(path.as_uri(), tmp_path / "profile-dom", "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert "<title>skfingerprint audit report</title>" in dom
    assert len(ranked_rows(dom)) == 24
    # the page's own script ran after load and found every image decoded
    check = tags(dom, "p", id=True, **{"data-broken": True})
    check = next(a for a in check if a["id"] == "image-check")
    assert check["data-images"] == str(n_images) and check["data-broken"] == "0", check
    assert f"all {n_images} images loaded" in dom
    shot = tmp_path / "report.png"
    res = _chromium(path.as_uri(), tmp_path / "profile-shot", f"--screenshot={shot}")
    assert res.returncode == 0, res.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("L"))
    assert image.shape == (2000, 1200)
    assert image.std() > 20  # a page was drawn, not a blank screen


def test_the_report_is_utf8_whatever_the_locale(pipe, tmp_path):
    """Written as UTF-8 even where the locale's encoding is ASCII (LC_ALL=C, UTF-8 mode off):
    a title (or an image id) outside ASCII must not fail the write or come out garbled."""
    import os
    import sys

    model = save_model(pipe, tmp_path / "m.skops")
    code = (
        "import sys; from skfingerprint import load_model, write_report\n"
        "from skfingerprint.datasets import make_synthetic_leak\n"
        "task = make_synthetic_leak(12, 12, 36, image_size=32, random_state=0)\n"
        "pipe = load_model(sys.argv[1])['estimator']\n"
        "write_report(pipe, task.X_pairs, sys.argv[2], title='audit \\u00e9')\n"
    )
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}
    run = subprocess.run(
        [sys.executable, "-c", code, str(model), str(tmp_path / "r.html")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "<title>audit é</title>" in (tmp_path / "r.html").read_bytes().decode("utf-8")


def test_cli_report_says_which_model_and_shows_progress(clef, pipe, capsys, tmp_path):
    """The page names the model file, the folder it was fitted on and when; -v reaches the
    pipeline; every message of the command is exact (catches the source line, the verbosity
    switch or a log line lost)."""
    from skfingerprint import clear_memory_cache

    path = save_model(pipe, tmp_path / "m.skops", train_dir="/data/train")
    created = load_model(path)["created"]
    out = tmp_path / "r.html"
    clear_memory_cache()  # the ViT runs again, so its progress shows
    code = main(["report", str(path), str(clef / "train"), "-o", str(out), "-v"])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert f"{path} (fitted on /data/train, {created})" in out.read_text()
    assert (
        f"{clef / 'train'} is labelled (training layout): the report adds kappa, AUC, the "
        "confusion matrix and the ROC curve"
    ) in err
    assert "scoring " in err and " and writing the report" in err
    assert "ViT embedding (real images): 24 images in " in err
    joblib_path = save_model(pipe, tmp_path / "m.joblib", format="joblib")
    argv = ["report", str(joblib_path), str(clef / "test"), "-o", str(out)]
    assert main(argv) == 2 and "--allow-pickle" in capsys.readouterr().err
    assert main([*argv, "--allow-pickle"]) == 0


def test_cli_report_error_messages_name_what_is_wrong(clef, capsys, tmp_path):
    bare = save_model(load_model(clef / "model.skops")["estimator"][-1], tmp_path / "c.skops")
    out = tmp_path / "r.html"
    assert main(["report", str(bare), str(clef / "test"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        f"model file '{bare}' holds a LinearRelationClassifier; the report needs a pipeline "
        "from 'skfingerprint fit' (an embedder, a candidate selector and a classifier), to show "
        "each real image's nearest generated images"
    ) in err
    missing = tmp_path / "nope" / "r.html"
    assert main(["report", str(clef / "model.skops"), str(clef / "test"), "-o", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write report file '{missing}': folder '{missing.parent}'" in err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(clef / "model.skops"), str(tmp_path / "empty"), "-o", str(out)]) == 2
    assert "(see 'skfingerprint report --help' for the layout)" in capsys.readouterr().err


def test_cli_report_summary_lines_are_exact(clef, capsys, tmp_path):
    """Catches --max-rows not counted in the summary, the labels clause shown on an unlabelled
    folder (or lost on a labelled one), a closing line changed, and a title of None when no
    --title is given."""
    out = tmp_path / "r.html"
    model = str(clef / "model.skops")
    assert main(["report", model, str(clef / "test"), "-o", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {out}: 12 of 12 real images ranked by P(used), each beside its 4 nearest "
        "generated images",
        "open it in a browser: it is one self-contained file (no network needed)",
    ]
    assert "<title>skfingerprint audit report</title>" in out.read_text()
    argv = ["report", model, str(clef / "train"), "-o", str(out), "--max-rows", "5"]
    assert main([*argv, "--candidates", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"wrote {out}: 5 of 24 real images ranked by P(used), each beside its 2 nearest "
        "generated images; metrics against the folder's labels"
    )


def test_cli_report_names_the_fit_folder_without_a_date(clef, pipe, capsys, tmp_path):
    """A model file that records where it was fitted but not when (written by hand)."""
    import joblib

    from skfingerprint.persistence import MODEL_FORMAT, MODEL_FORMAT_VERSION

    path = tmp_path / "m.joblib"
    joblib.dump(
        {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "estimator": pipe,
         "train_dir": "/data/train"},
        path,
    )  # fmt: skip
    out = tmp_path / "r.html"
    argv = ["report", str(path), str(clef / "test"), "-o", str(out), "--allow-pickle"]
    assert main(argv) == 0, capsys.readouterr().err
    assert f"{path} (fitted on /data/train)<" in out.read_text()


@pytest.mark.parametrize("missing, named", [("jinja2", "jinja2"), (None, "jinja2 and matplotlib")])
def test_cli_report_says_which_dependency_is_missing(
    clef, capsys, tmp_path, monkeypatch, missing, named
):
    import skfingerprint.report

    def no_dependency(*args, **kwargs):
        raise ImportError("simulated", name=missing)

    monkeypatch.setattr(skfingerprint.report, "write_report", no_dependency)
    out = tmp_path / "r.html"
    assert main(["report", str(clef / "model.skops"), str(clef / "test"), "-o", str(out)]) == 1
    assert capsys.readouterr().err.endswith(
        f"error: the HTML report needs {named}, which is not installed: pip install "
        "'jinja2>=3.1' 'matplotlib>=3.7'\n"
    )
