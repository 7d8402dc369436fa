"""benchmarks/compare_losses.py: the table arithmetic, and one real pair run end to end (one seed,
one iteration: this checks the plumbing, not the losses)."""

import importlib.util
import json
import math
import os
import subprocess
import sys
import threading

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "compare_losses.py")


def load_script():
    spec = importlib.util.spec_from_file_location("compare_losses", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cl = load_script()


def fake_run(config, seed, box_ap, box_olrp, status="ok", wall_s=10.0):
    record = {"config": f"quick_schedules/{config}.py", "seed": seed, "iters": 50}
    if status != "ok":
        return dict(record, status=status, error="boom")
    metrics = {"bbox/AP": box_ap, "bbox/oLRP": box_olrp}
    return dict(record, status="ok", metrics=metrics, wall_s=wall_s)


def test_every_pair_names_existing_configs_and_differs_in_the_loss_only():
    pairs = cl.available_pairs()
    for name in ("faster_rcnn", "mask_rcnn", "cascade_rcnn", "retinanet", "atss", "paa", "fcos"):
        assert name in pairs
    for name, (base, cand, note) in pairs.items():
        assert not base.startswith(("rs_", "ap_", "alrp_")), name
        assert cand.split("_")[0] in ("rs", "ap", "alrp"), name
        # same model family unless the note says what else differs
        assert note or base == cand.split("_", 1)[1], name


def test_solov2_pairs_and_comma_separated_pairs():
    """The two RS-SOLOv2 pairs (paper and released pairing) share the stock baseline, say that RS
    trains at another LR, and can be asked for as one comma-separated argument."""
    pairs = cl.available_pairs()
    assert pairs["solov2"][:2] == ("solov2_tiny", "rs_solov2_tiny")
    assert pairs["solov2_released"][:2] == ("solov2_tiny", "rs_solov2_released_tiny")
    assert all("LR" in pairs[name][2] for name in ("solov2", "solov2_released"))
    args = cl.parse_args(["--pairs", "solov2,solov2_released", "--seeds", "3", "--iters", "300"])
    assert args.pairs == ["solov2", "solov2_released"]
    assert cl.parse_args(["--pairs", "solov2", "retinanet,solov2"]).pairs == ["solov2", "retinanet"]
    for bad in (["--pairs", "solov2,nope"], ["--pairs", ","]):
        with pytest.raises(SystemExit):
            cl.parse_args(bad)


def test_summary_means_spreads_differences_and_failures():
    runs = [
        fake_run("faster_rcnn_tiny", 0, 10.0, 80.0),
        fake_run("faster_rcnn_tiny", 1, 12.0, 78.0),
        fake_run("rs_faster_rcnn_tiny", 0, 15.0, 70.0),
        fake_run("rs_faster_rcnn_tiny", 1, 0.0, 0.0, status="failed"),
        fake_run("rs_faster_rcnn_tiny", 2, 99.0, 1.0),  # a seed that was not asked for
        dict(fake_run("faster_rcnn_tiny", 0, 50.0, 50.0), iters=300),  # other iteration count
        dict(fake_run("faster_rcnn_tiny", 1, 50.0, 50.0), opts=["train.seed=5"]),  # other overrides
    ]
    base, cand, diff = cl.summarise(runs, ["faster_rcnn"], seeds=[0, 1], iters=50)
    assert (base["n"], base["failed"], cand["n"], cand["failed"]) == (2, 0, 1, 1)
    assert base["bbox/AP"] == [10.0, 12.0] and cand["bbox/AP"] == [15.0]
    assert base["segm/AP"] == []
    assert diff["bbox/AP"] == pytest.approx(15.0 - 11.0)
    assert diff["bbox/oLRP"] == pytest.approx(70.0 - 79.0)
    assert diff["segm/AP"] is None
    assert cl.fmt(base["bbox/AP"]) == f"11.0 ± {math.sqrt(2):.1f}"
    assert cl.fmt(cand["bbox/AP"]) == "15.0"
    table = cl.format_table([base, cand, diff], markdown=True).splitlines()
    assert table[0].startswith("| pair | model | runs | box AP | mask AP | box oLRP |")
    assert "| faster_rcnn | faster_rcnn_tiny | 2 | 11.0 ± 1.4 | - | 79.0 ± 1.4 |" in table[2]
    assert "| 1 (1 failed) | 15.0 |" in table[3]
    assert "| +4.0 | - | -9.0 |" in table[4]


def test_results_file_is_rewritten_whole(tmp_path):
    path = str(tmp_path / "sub" / "results.json")
    assert cl.load_results(path) == []
    cl.save_results(path, [fake_run("retinanet_tiny", 0, 1.0, 90.0)])
    cl.save_results(path, cl.load_results(path) + [fake_run("rs_retinanet_tiny", 0, 2.0, 88.0)])
    assert [r["config"] for r in cl.load_results(path)] == [
        "quick_schedules/retinanet_tiny.py",
        "quick_schedules/rs_retinanet_tiny.py",
    ]
    assert not os.path.exists(path + ".tmp")


def test_parallel_runs_share_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert [cl.threads_per_job(j) for j in (1, 2, 3, 16)] == [None, 4, 2, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice wins
    assert cl.threads_per_job(2) is None
    with pytest.raises(SystemExit):
        cl.parse_args(["--jobs", "0"])


def test_parallel_runs_are_evaluated_in_the_main_thread(tmp_path, monkeypatch, capsys):
    """With --jobs, trainings run in worker threads but each evaluation runs in the main thread
    (it swaps sys.stdout to silence pycocotools, which would swallow other threads' prints), and
    every finished run is reported."""

    def fake_train(config, seed, iters, output_dir, log_path, opts=(), threads=None):
        os.makedirs(output_dir)
        with open(os.path.join(output_dir, "metrics.json"), "w") as f:
            f.write(json.dumps({"iteration": iters - 1, "bbox/AP": 40.0 + seed}) + "\n")
        return 0

    def fake_olrp(config, results_dir, tasks):
        assert threading.current_thread() is threading.main_thread()
        return {"bbox/oLRP": 60.0}

    monkeypatch.setattr(cl, "train_one", fake_train)
    monkeypatch.setattr(cl, "evaluate_olrp", fake_olrp)
    cl.main(
        ["--pairs", "retinanet", "--seeds", "2", "--iters", "5", "--jobs", "2"]
        + ["--output", str(tmp_path / "cmp")]
    )
    out = capsys.readouterr().out
    for name in ("retinanet_tiny", "rs_retinanet_tiny"):
        for seed in (0, 1):
            assert f"quick_schedules/{name}.py seed {seed}: " in out
    runs = json.loads((tmp_path / "cmp" / "results.json").read_text())["runs"]
    assert sorted((r["config"], r["seed"], r["status"], r["jobs"]) for r in runs) == [
        (f"quick_schedules/{name}.py", seed, "ok", 2)
        for name in ("retinanet_tiny", "rs_retinanet_tiny")
        for seed in (0, 1)
    ]


def test_candidate_overrides_and_later_seeds(tmp_path, monkeypatch, capsys):
    """--candidate-opts trains a variant of the RS model only, against the same baselines, in its
    own folder; --first-seed trains later seeds alone."""
    trained = []

    def fake_train(config, seed, iters, output_dir, log_path, opts=(), threads=None):
        trained.append((os.path.basename(config), seed, tuple(opts), output_dir))
        os.makedirs(output_dir)
        with open(os.path.join(output_dir, "metrics.json"), "w") as f:
            ap = 40.0 + seed + (5.0 if opts else 0.0)
            f.write(json.dumps({"iteration": iters - 1, "bbox/AP": ap}) + "\n")
        return 0

    monkeypatch.setattr(cl, "train_one", fake_train)
    monkeypatch.setattr(cl, "evaluate_olrp", lambda config, results_dir, tasks: {})
    common = ["--pairs", "fcos", "--iters", "5", "--output", str(tmp_path / "cmp"), "--resume"]
    cl.main(common + ["--first-seed", "1", "--seeds", "2"])
    assert sorted(t[:3] for t in trained) == [
        (name, seed, ()) for name in ("fcos_tiny.py", "rs_fcos_tiny.py") for seed in (1, 2)
    ]
    trained.clear()
    rows = cl.main(common + ["--first-seed", "1", "--seeds", "2", "--candidate-opts", "a.b=1"])
    # the baselines are kept; the candidate with the override is a new run in another folder
    assert sorted(t[:3] for t in trained) == [("rs_fcos_tiny.py", s, ("a.b=1",)) for s in (1, 2)]
    assert all(os.path.basename(t[3]).startswith("rs_fcos_tiny_o") for t in trained)
    base, cand, diff = rows
    assert base["bbox/AP"] == [41.0, 42.0] and cand["bbox/AP"] == [46.0, 47.0]
    assert cand["model"] == "rs_fcos_tiny (a.b=1)" and diff["bbox/AP"] == pytest.approx(5.0)
    with pytest.raises(SystemExit):
        cl.parse_args(["--seeds", "0"])


def test_one_pair_one_seed_trains_evaluates_and_resumes(tmp_path):
    out = tmp_path / "cmp"
    cmd = [sys.executable, SCRIPT, "--pairs", "retinanet", "--seeds", "1", "--iters", "1"]
    cmd += ["--jobs", "2"]  # both models at once, one thread each (finishing in either order)
    # fewer candidate boxes per level: an untrained model's NMS is most of the run's time
    cmd += ["--output", str(out), "--markdown", "--opts", "model.test_topk_candidates=50"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = json.loads((out / "results.json").read_text())["runs"]
    runs.sort(key=lambda r: r["config"])
    assert [(r["config"], r["seed"], r["iters"], r["status"], r["opts"]) for r in runs] == [
        ("quick_schedules/retinanet_tiny.py", 0, 1, "ok", ["model.test_topk_candidates=50"]),
        ("quick_schedules/rs_retinanet_tiny.py", 0, 1, "ok", ["model.test_topk_candidates=50"]),
    ]
    for r in runs:
        for key in ("bbox/AP", "bbox/oLRP", "bbox/oLRP_Loc", "bbox/oLRP_FP", "bbox/oLRP_FN"):
            value = r["metrics"][key]
            assert math.isnan(value) or 0.0 <= value <= 100.0, (key, value)
        assert "segm/AP" not in r["metrics"]  # a box-only model
        assert r["wall_s"] >= r["train_s"] > 0 and r["jobs"] == 2
        assert os.path.isfile(os.path.join(r["output_dir"], "model_final.pth"))
        # the detections oLRP was computed from are the ones train_net.py's evaluation saved
        detections = os.path.join(r["output_dir"], "inference", "coco_instances_results.json")
        with open(detections) as f:
            if not json.load(f):  # no detection at all: every ground truth is missed
                assert r["metrics"]["bbox/oLRP"] == pytest.approx(100.0)
    for name in ("retinanet_tiny", "rs_retinanet_tiny"):  # each finished run is reported
        assert f"quick_schedules/{name}.py seed 0: " in proc.stdout, proc.stdout[-3000:]
    assert "| retinanet | retinanet_tiny | 1 |" in proc.stdout
    assert "| retinanet | rs_retinanet_tiny | 1 |" in proc.stdout
    assert "|  | difference |  | " in proc.stdout

    # --resume trains nothing more and prints the same table
    again = subprocess.run(
        cmd + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 runs to train, 2 found" in again.stdout
    table = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert table and table == [line for line in again.stdout.splitlines() if line.startswith("|")]
    assert len(json.loads((out / "results.json").read_text())["runs"]) == 2
