"""The guidance sweep: rows, CSV resume after an interruption, bad input, the paper's tables, the figures."""

import math
from pathlib import Path

import numpy as np
import pytest

from minicfg import cli
from minicfg import sweep as sweep_module
from minicfg.checkpoint import load_model
from minicfg.generate import class_labels, generate
from minicfg.metrics import evaluate
from minicfg.sweep import best_row, paper_results, read_csv, sweep, write_csv
from minicfg.sweep_plots import group_rows, metrics_figure, save_sweep_figures, tradeoff_figure


@pytest.fixture(scope="module")
def shipped(one_thread):
    return load_model()


def _quiet(*_):
    pass


def test_sweep_rows_match_direct_sampling_and_scoring(shipped, mnist_test):
    model, meta = shipped
    rows = sweep(model, [0, 2], n_per_class=1, n_steps=[3], meta=meta, label="m", log=_quiet)
    assert [(r["w"], r["n_steps"], r["n"], r["label"]) for r in rows] == [(0.0, 3, 10, "m"), (2.0, 3, 10, "m")]
    assert rows[0]["p_uncond"] == meta["train"]["p_uncond"] and rows[0]["train_steps"] == meta["step"]
    labels = class_labels(10, 1)
    direct = evaluate(generate(model, labels, 2.0, n_steps=3, seed=1), labels)
    for key in ("accuracy", "fid", "inception_score", "precision", "recall"):
        assert rows[1][key] == pytest.approx(direct[key], rel=1e-6, abs=1e-9)


def test_best_row_is_the_lowest_finite_value():
    rows = [{"w": w, "fid": fid, "inception_score": score} for w, fid, score in
            [(0.0, 7.0, 9.1), (0.3, 2.5, 9.8), (0.5, math.nan, 9.9), (1.0, None, 9.95), (2.0, 4.0, 8.7),
             (4.0, -math.inf, 10.0)]]
    assert best_row(rows)["w"] == 0.3  # nan, None and -inf (a broken point) are skipped
    assert best_row(rows[::-1])["w"] == 0.3
    assert best_row(rows, key="inception_score")["w"] == 2.0
    with pytest.raises(ValueError, match="no row has a finite fid"):
        best_row([rows[2], rows[3], rows[5]])


def test_write_csv_returns_the_path_it_wrote(tmp_path):
    row = {"label": "m", "w": 0.5, "n_steps": 3, "n": 10, "seed": 1, "sampler": "ancestral", "fid": 1.5,
           "inception_score": 2.5}
    target = tmp_path / "new folder" / "sweep.csv"
    written = write_csv([row], str(target))
    assert isinstance(written, Path) and written == target and target.is_file()
    assert [(r["label"], r["w"], r["fid"]) for r in read_csv(written)] == [("m", 0.5, 1.5)]
    assert write_csv([], target) == target and read_csv(target) == []


def test_interrupted_sweep_resumes_from_its_csv(shipped, mnist_test, tmp_path, monkeypatch):
    model, meta = shipped
    path = tmp_path / "sweep.csv"
    write_csv([{"label": "other model", "w": 9.0, "n_steps": 3, "n": 10, "seed": 1, "sampler": "ancestral",
                "fid": 1.0, "inception_score": 2.0}], path)
    real_generate = sweep_module.generate
    calls = []

    def generate_then_interrupt(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second point samples
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "generate", generate_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        sweep(model, [0, 1], n_per_class=1, n_steps=3, meta=meta, label="m", csv_path=path, log=_quiet)
    saved = read_csv(path)
    assert [(r["label"], r["w"]) for r in saved] == [("other model", 9.0), ("m", 0.0)]

    calls.clear()
    rows = sweep(model, [0, 1], n_per_class=1, n_steps=3, meta=meta, label="m", csv_path=path, log=_quiet)
    assert calls == [1.0]  # w = 0 was read back, only w = 1 was sampled
    assert rows[0] == saved[1]
    assert [(r["label"], r["w"]) for r in read_csv(path)] == [("other model", 9.0), ("m", 0.0), ("m", 1.0)]

    calls.clear()  # another seed is another point
    with path.open("a") as f:  # and a hand-made row without the settings matches no point
        hand_made = {"label": "m", "sampler": "ancestral", "w": "0.0", "fid": "3.0", "inception_score": "4.0"}
        f.write(",".join(hand_made.get(k, "") for k in sweep_module.FIELDS) + "\n")
    sweep(model, [0], n_per_class=1, n_steps=3, seed=2, label="m", csv_path=path, log=_quiet)
    assert calls == [0.0]


def test_rows_another_sweep_writes_meanwhile_are_kept(shipped, mnist_test, tmp_path, monkeypatch):
    model, meta = shipped
    path = tmp_path / "sweep.csv"
    real_generate = sweep_module.generate
    other = {"label": "other", "w": 0.5, "n_steps": 3, "n": 10, "seed": 1, "sampler": "ancestral", "fid": 1.0,
             "inception_score": 2.0}

    def generate_while_another_sweep_writes(*args, **kwargs):
        if args[2] == 1.0:  # while this sweep samples its second point, another process adds a row
            write_csv(read_csv(path) + [other], path)
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "generate", generate_while_another_sweep_writes)
    sweep(model, [0, 1], n_per_class=1, n_steps=3, meta=meta, label="m", csv_path=path, log=_quiet)
    assert [(r["label"], r["w"]) for r in read_csv(path)] == [("m", 0.0), ("other", 0.5), ("m", 1.0)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ws": [0, 150]}, "outside"),
        ({"ws": [math.nan]}, "finite"),
        ({"ws": []}, "at least one w"),
        ({"n_steps": [0]}, "positive integers"),
        ({"n_steps": 2.5}, "positive integers"),
        ({"sampler": "euler"}, "unknown sampler"),
        ({"n_per_class": 0}, "positive integer"),
    ],
)
def test_sweep_rejects_bad_input(shipped, kwargs, message):
    args = {"ws": [0], "n_steps": 2, "n_per_class": 1, **kwargs}
    ws = args.pop("ws")
    with pytest.raises(ValueError, match=message):
        sweep(shipped[0], ws, log=_quiet, **args)


def test_read_csv_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="minicfg sweep"):
        read_csv(tmp_path / "missing.csv")
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a sweep CSV"):
        read_csv(other)
    broken = tmp_path / "broken.csv"
    broken.write_text("w,fid,inception_score,n_steps\n0,1.0,2.0,fifty\n")
    with pytest.raises(ValueError, match="malformed row"):
        read_csv(broken)


def test_paper_tables_as_transcribed_agree_with_the_papers_text():
    t1, t2 = paper_results(1), paper_results(2)
    assert len(t1) == len(t2) == 3 * 14 and len(paper_results()) == 84
    for table in (t1, t2):
        for group in group_rows(table, "value").values():
            ws = [r["w"] for r in group]
            assert ws[0] == 0.0 and ws[-1] == 4.0
            # Sec. 4.1: IS rises with w throughout
            assert all(np.diff([r["inception_score"] for r in group]) > 0)
    # Sec. 4.2: best FID at w = 0.1 on 64x64 for p_uncond 0.1 and 0.2; p_uncond = 0.5 is worse at the frontier
    by_p = group_rows(t1, "value")
    assert best_row(by_p[0.1])["w"] == best_row(by_p[0.2])["w"] == 0.1
    assert best_row(by_p[0.5])["fid"] > max(best_row(by_p[0.1])["fid"], best_row(by_p[0.2])["fid"])
    # Sec. 4.3: 256 steps about as good as 1024, 128 clearly worse; best FID near w = 0.3 on 128x128
    by_t = group_rows(t2, "value")
    assert best_row(by_t[256.0])["w"] == 0.3
    assert best_row(by_t[128.0])["fid"] > best_row(by_t[256.0])["fid"] + 0.5
    assert abs(best_row(by_t[1024.0])["fid"] - best_row(by_t[256.0])["fid"]) < 0.1
    with pytest.raises(ValueError, match="Tables 1 and 2"):
        paper_results(3)


def test_figures_draw_one_curve_per_group():
    rows = [{"label": lab, "n_steps": t, "w": w, "fid": 10 - w + t / 100, "inception_score": 5 + w,
             "accuracy": 0.9 + w / 20, "precision": 0.8, "recall": 0.7 - w / 10}
            for lab in ("a", "b") for t in (16, 32) for w in (1.0, 0.0)]
    groups = group_rows(rows[::-1], ("label", "n_steps"))  # sorted by setting, whatever the order of the rows
    assert list(groups) == [("a", 16), ("a", 32), ("b", 16), ("b", 32)]
    assert all([r["w"] for r in g] == [0.0, 1.0] for g in groups.values())
    one_steps = [r for r in rows if r["n_steps"] == 16]
    acc, rec, is_, theirs = tradeoff_figure(one_steps, by="label", paper=paper_results(1), is_max=10).axes
    assert len(acc.lines) == 2 and len(rec.lines) == 2 and len(is_.lines) == 3  # two curves, and the IS ceiling
    assert [ax.get_ylabel().startswith("classifier FID") for ax in (acc, rec, is_)] == [True, True, True]
    assert is_.get_xscale() == "linear" and theirs.get_ylabel().startswith("FID (Inception")
    assert list(acc.lines[0].get_xdata()) == pytest.approx([0.9, 0.95])
    assert list(rec.lines[0].get_xdata()) == pytest.approx([0.7, 0.6])
    tables = tradeoff_figure(rows, by=("label", "n_steps"), paper=paper_results(2))
    assert len([ax for ax in tables.axes if ax.get_visible()]) == 4  # cFID, accuracy, recall, the paper's FID
    assert len(metrics_figure(rows, by="label").axes) == 4
    by_w = metrics_figure(rows, by="w", x="n_steps").axes[0]
    assert len(by_w.lines) == 2 and list(by_w.lines[0].get_xdata()) == [16, 16, 32, 32]


def test_crowded_w_ticks_keep_both_ends_and_never_overlap(tmp_path, monkeypatch):
    """CIFAR-10's sweep has w = 1, 1.5, 2, 2.5, 3, 4, 6 close together on the symlog axis: some labels are left
    blank, 0 and the largest w are always written, and the data set's name is in the figures' titles."""
    rows = [{"label": "a", "n_steps": 50, "w": w, "fid": 10.0, "inception_score": 3.0, "accuracy": 0.9,
             "precision": 0.8, "recall": 0.5} for w in (0, 0.3, 1, 1.5, 2, 2.5, 3, 4, 6)]
    ax = metrics_figure(rows).axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    written = [float(t) for t in labels if t]
    assert labels[0] == "0" and labels[-1] == "6" and 4 <= len(written) < len(labels)
    pos = ax.xaxis.get_transform().transform(written)
    assert min(pos[1:] - pos[:-1]) >= 0.09 * (pos[-1] - pos[0]) - 1e-12
    sparse = [dict(r, w=w) for r, w in zip(rows, (0, 0.1, 0.3, 0.5, 1, 2, 4), strict=False)]
    assert all(t.get_text() for t in metrics_figure(sparse).axes[0].get_xticklabels())  # MNIST's ws: all written
    import minicfg.sweep_plots as plots

    drawn = []
    monkeypatch.setattr(plots, "tradeoff_figure", lambda *a, **kw: drawn.append(tradeoff_figure(*a, **kw)) or drawn[-1])
    save_sweep_figures(rows, tmp_path, dataset="cifar10")
    assert drawn[0].axes[0].get_title().startswith("CIFAR-10 (classifier features)")
    assert (tmp_path / "fid_vs_is.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_sweep_writes_csv_and_figures(tmp_path, mnist_test):
    out = tmp_path / "sweep"
    assert cli.main(["sweep", "--w", "0,1", "--n-per-class", "1", "--n-steps", "2,3", "--out", str(out),
                     "--no-progress", "--paper", "2"]) == 0
    rows = read_csv(out / "sweep.csv")
    assert sorted((r["n_steps"], r["w"]) for r in rows) == [(2, 0.0), (2, 1.0), (3, 0.0), (3, 1.0)]
    assert all(r["label"] == "shipped mnist" and r["n"] == 10 for r in rows)
    for name in ("fid_vs_is.png", "metrics_vs_steps.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep", "--n-steps", "16,0", "--out", "o"], "comma-separated positive integers"),
        (["sweep", "--n-steps", "x", "--out", "o"], "comma-separated positive integers"),
        (["sweep", "--w", "0,inf", "--out", "o"], "finite"),
    ],
)
def test_cli_sweep_bad_options(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.fixture
def mnist_subset_only(tmp_path, monkeypatch):
    """Smoke mode with an empty data folder: the metrics compare with the MNIST test digits shipped in the package."""
    monkeypatch.setenv("MINICFG_SMOKE", "1")
    monkeypatch.setenv("MINICFG_OFFLINE", "1")
    monkeypatch.setenv("MINICFG_DATA", str(tmp_path / "no-data"))


def test_cli_sweep_takes_sampler_options_and_records_them(mnist_subset_only, tmp_path, monkeypatch, capsys):
    """`minicfg sweep -o KEY=VALUE` reaches the sampler, like `minicfg sample -o`, and the CSV's sampler_options
    column records it, so the same w with other sampler options is another point."""
    import functools

    from minicfg import samplers

    seen = []

    @functools.wraps(samplers.ancestral)  # the same signature, so the same options are accepted
    def spy(eps_fn, z, lams, **kw):
        seen.append({key: kw[key] for key in ("v", "noise_scale") if key in kw})
        return samplers.ancestral(eps_fn, z, lams, **kw)

    monkeypatch.setitem(samplers.SAMPLERS, "ancestral", spy)
    out = tmp_path / "sweep"
    common = ["sweep", "--w", "1", "--n-per-class", "1", "--n-steps", "3", "--sampler", "ancestral", "--device",
              "cpu", "--paper", "none", "--no-progress", "--out", str(out)]
    assert cli.main([*common, "-o", "v=1.0", "--option", "noise_scale=0.5"]) == 0
    assert seen == [{"v": 1.0, "noise_scale": 0.5}]
    assert cli.main(common) == 0  # the sampler's defaults: another point, added beside the first
    assert seen[1:] == [{}]
    rows = read_csv(out / "sweep.csv")
    assert sorted(r["sampler_options"] for r in rows) == ["", "noise_scale=0.5 v=1"]
    assert all(r["w"] == 1.0 and r["n"] == 10 and r["fid"] > 0 for r in rows)
    assert cli.main([*common, "-o", "v=1.0", "-o", "noise_scale=0.5"]) == 0  # already there: not sampled again
    assert len(seen) == 2 and "already in" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*common, "-o", "eta=1"])
    assert exit_info.value.code == 2
    assert "sampler 'ancestral' does not take eta; its options are v, clip_x, noise_scale" in capsys.readouterr().err


def test_a_sweep_csv_without_the_sampler_options_column_reads_as_the_defaults(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("label,guidance,options,sampler,n_steps,seed,n,w,accuracy,fid,inception_score,precision,recall\n"
                    "m,cfg,,ancestral,3,1,10,0.5,0.9,1.5,2.0,0.5,0.5\n")
    (row,) = read_csv(path)
    assert row["sampler_options"] == ""
    write_csv([row], path)
    assert read_csv(path)[0]["sampler_options"] == "" and "sampler_options" in path.read_text().splitlines()[0]


def test_sweep_counts_network_passes_per_sample(shipped):
    model, meta = shipped
    rows = sweep(model, [0, 2], n_per_class=1, n_steps=[3], meta=meta, label="m", log=_quiet)
    # 3 ancestral steps: the conditional prediction alone at w = 0, conditional and unconditional at w = 2
    assert [r["passes"] for r in rows] == [3.0, 6.0]
    heun = sweep(model, [2], n_per_class=1, n_steps=[3], sampler="heun", label="m", log=_quiet)
    assert heun[0]["passes"] == 2.0 * (2 * 3 - 1)  # Heun: two evaluations per step but the last, two passes each
    weak, _ = load_model(role="weak_model")
    auto = sweep(model, [2], n_per_class=1, n_steps=[3], guidance="autoguidance", options={"weak": weak}, label="m",
                 log=_quiet)
    assert auto[0]["passes"] == 6.0  # the main model and the weak one, once each per step
