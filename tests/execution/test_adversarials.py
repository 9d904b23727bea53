"""Stored adversarials and transfer (issue 14), on real sweeps through the package's Ray.

Every check recomputes by hand what the sweep claims: the crafting model re-run on
the stored images gives the rows' ``adv_pred``; a transfer row is the target model,
in plain torch, on the loaded adversarial.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import sweep
from sweep.attacks.norms import lp_norm, within
from sweep.data.digits import load_digits_split
from sweep.models.digits_cnn import load_digits_model
from sweep.results import store
from sweep.results.adversarials import ADV_DIR
from sweep.results.manifest import MANIFEST_DIR, Manifest
from tests.cluster.torn_write import tear
from tests.execution.running import sweep as sweep_cli
from tests.execution.specs import base_spec, write_spec

REPO = Path(__file__).resolve().parents[2]
EPS = [0.0, 0.1, 0.3]


def adv_spec(output: Path, **overrides) -> dict:
    """Two digits models x FGSM, 16 samples in two shards; transfer from digits-cnn."""
    spec = base_spec(output, attacks=[{"name": "fgsm"}], epsilons={"linf": EPS})
    spec.update(overrides)
    return spec


@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory, ray_session):
    out = tmp_path_factory.mktemp("adv") / "out"
    spec = adv_spec(out, adversarials={"keep": "first_n", "n": 4},
                    transfer={"sources": ["digits-cnn"], "targets": ["digits-cnn", "digits-cnn-at"]})
    res = sweep.run(spec, pool=ray_session)
    return {"out": out, "spec": spec, "res": res}


def _model(name: str) -> torch.nn.Module:
    return load_digits_model(name).eval()


def test_round_trip_reproduces_the_verified_rows(transfer_run):
    out, res = transfer_run["out"], transfer_run["res"]
    rows = res.rows.set_index(["model", "attack", "sample_id", "epsilon"])
    test = load_digits_split("test")
    for name in ("digits-cnn", "digits-cnn-at"):
        adv = sweep.load_adversarials(out, model=name, attack="fgsm")
        # a transfer source keeps every adversarial, the other model its first_n (4)
        assert len(adv) == (16 if name == "digits-cnn" else 4) * len(EPS)
        assert adv.images.dtype == torch.float32 and adv.images.shape[1:] == (1, 8, 8)
        with torch.no_grad():
            pred = _model(name)(adv.images).argmax(1)
        assert torch.equal(pred, adv.adv_pred)  # the very tensor the verdict was measured on
        for i in range(len(adv)):
            row = rows.loc[(name, "fgsm", int(adv.sample_ids[i]), float(adv.epsilons[i]))]
            assert int(row["adv_pred"]) == int(adv.adv_pred[i])
            assert int(row["label"]) == int(adv.labels[i])
        assert float(adv.images.min()) >= 0 and float(adv.images.max()) <= 1
        norms = lp_norm(adv.images - adv.clean, "linf")
        assert bool(within(norms, adv.epsilons.float()).all())
        # the clean image is the dataset's own
        position = {int(sid): i for i, sid in enumerate(test.sample_ids)}
        assert torch.equal(adv.clean, test.images[[position[int(s)] for s in adv.sample_ids]])
    one = sweep.load_adversarials(out, model="digits-cnn", attack="fgsm", epsilon=0.1)
    assert len(one) == 16 and set(one.epsilons.tolist()) == {0.1}
    assert sorted(one.sample_ids.tolist()) == test.sample_ids[:16].tolist()
    # pandas reads the file in one line, and pd.read_parquet(output) still reads results only
    files = sorted((out / ADV_DIR).rglob("*.parquet"))
    assert len(pd.read_parquet(files[0])) > 0
    assert "image" not in pd.read_parquet(out).columns


def test_first_n_stores_the_same_samples_for_every_model(transfer_run):
    out = transfer_run["out"]
    adv = sweep.load_adversarials(out, model="digits-cnn-at", attack="fgsm")
    assert sorted(set(adv.sample_ids.tolist())) == load_digits_split("test").sample_ids[:4].tolist()
    # only the first shard's cell of digits-cnn-at has a file; the manifest vouches for it
    recs = [r for r in Manifest(out).records().values() if r.file.startswith("model=digits-cnn-at/")]
    assert sorted(r.adv_file is not None for r in recs) == [False, True]
    assert {r.adversarials for r in recs} == {"first_n:4"}


def test_transfer_rows_match_a_recomputation_by_hand(transfer_run):
    out, res = transfer_run["out"], transfer_run["res"]
    from sweep.analysis.adversarials import transfer_rows

    rows = transfer_rows(out)
    assert set(rows["source_model"]) == {"digits-cnn"}
    assert set(rows["model"].astype(str)) == {"digits-cnn", "digits-cnn-at"}
    adv = sweep.load_adversarials(out, model="digits-cnn", attack="fgsm")
    for target in ("digits-cnn", "digits-cnn-at"):
        net = _model(target)
        with torch.no_grad():
            pred = net(adv.images).argmax(1)
            clean_pred = net(adv.clean).argmax(1)
        norms = lp_norm(adv.images - adv.clean, "linf")
        robust = (clean_pred == adv.labels) & (pred == adv.labels) & within(norms, adv.epsilons.float())
        mine = rows[rows["model"] == target].set_index(["sample_id", "epsilon"]).sort_index()
        for i in range(len(adv)):
            row = mine.loc[(int(adv.sample_ids[i]), float(adv.epsilons[i]))]
            assert int(row["adv_pred"]) == int(pred[i]) and bool(row["robust"]) == bool(robust[i])
        # the table: robust accuracy per epsilon, as recomputed
        table = res.transfer()
        got = table[(table["model"] == target)].set_index("epsilon")["robust_accuracy"]
        for eps in EPS:
            sel = adv.epsilons == eps
            assert got[eps] == pytest.approx(float(robust[sel].float().mean()))
    # the diagonal re-checks the cell's own verdicts
    own = res.rows[(res.rows["model"] == "digits-cnn")].groupby("epsilon")["robust"].mean()
    diag = res.transfer()
    diag = diag[diag["model"] == "digits-cnn"].set_index("epsilon")["robust_accuracy"]
    pd.testing.assert_series_equal(diag.sort_index(), own.sort_index(), check_names=False)
    # old readers: result rows carry a null source_model (schema 3), transfer rows stay apart
    assert res.rows["source_model"].isna().all()


def test_sweep_curves_prints_the_transfer_table(transfer_run):
    out = transfer_run["out"]
    printed = sweep_cli("curves", str(out))
    assert printed.exit_code == 0, printed.output
    assert "transfer — fgsm (linf) ε=0.3" in printed.output and "digits-cnn-at" in printed.output
    csv = sweep_cli("curves", str(out), "--transfer", "--format", "csv")
    assert csv.exit_code == 0, csv.output
    import io

    table = pd.read_csv(io.StringIO(csv.stdout))
    assert list(table.columns) == ["attack", "norm", "epsilon", "source_model", "model", "n", "robust_accuracy"]
    assert len(table) == len(EPS) * 2 and set(table["n"]) == {16}


def test_resume_keeps_adversarials_and_recomputes_what_is_missing(transfer_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(transfer_run["out"], out)
    spec = dict(transfer_run["spec"], output=str(out))
    path = write_spec(tmp_path / "spec.yaml", spec)
    again = sweep_cli("run", str(path))
    assert again.exit_code == 0, again.output
    assert "4 cells: 4 already done, computing 0" in again.output
    assert "transfer evaluations: computing" not in again.output  # nothing to evaluate
    victim = sorted((out / ADV_DIR / "model=digits-cnn").rglob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:200])  # torn by hand: the size no longer matches
    again = sweep_cli("run", str(path))
    assert again.exit_code == 0, again.output
    assert "4 cells: 3 already done, computing 1" in again.output
    assert "4 transfer evaluations: computing 2" in again.output  # its two follow it
    assert len(sweep.load_adversarials(out, model="digits-cnn", attack="fgsm")) == 16 * len(EPS)
    # asking for more than the cells stored recomputes those cells; asking for less, none
    more = write_spec(tmp_path / "more.yaml", dict(spec, adversarials={"keep": "all"}))
    again = sweep_cli("run", str(more))
    assert "4 cells: 2 already done, computing 2" in again.output, again.output
    none = write_spec(tmp_path / "none.yaml", dict(spec, adversarials="none"))
    again = sweep_cli("run", str(none))
    assert "4 cells: 4 already done, computing 0" in again.output, again.output


def test_adoption_takes_both_files(transfer_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(transfer_run["out"], out)
    before = Manifest(out).records()
    shutil.rmtree(out / MANIFEST_DIR / "done")  # the driver died before recording anything
    missing = next(r for r in before.values() if r.adv_file and "digits-cnn-at" in r.file)
    (out / missing.adv_file).unlink()  # ... and this cell's adversarials never landed
    spec = dict(transfer_run["spec"], output=str(out))
    again = sweep_cli("run", str(write_spec(tmp_path / "spec.yaml", spec)))
    assert again.exit_code == 0, again.output
    assert "adopted 4 whole result file(s)" in again.output
    assert "4 cells: 3 already done, computing 1" in again.output, again.output  # the one without adversarials
    after = Manifest(out).records()
    for cid, rec in before.items():
        if cid in after and rec.adv_file:
            assert after[cid].adv_file == rec.adv_file and after[cid].adv_bytes == rec.adv_bytes
    assert (out / missing.adv_file).exists()


def test_a_torn_adversarial_write_leaves_no_half_file(transfer_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(transfer_run["out"], out)
    # a digits-cnn cell (the manifest's order is the order cells finished in: not fixed)
    rec = next(r for r in Manifest(out).records().values() if r.adv_file and "model=digits-cnn/" in r.file)
    tear(out, rec.adv_file, tmp_path / "victim.parquet")  # killed halfway through the write
    # the loader never reads it, and a re-run recomputes that cell
    adv = sweep.load_adversarials(out, model="digits-cnn", attack="fgsm")
    assert len(adv) == 8 * len(EPS)
    spec = dict(transfer_run["spec"], output=str(out))
    again = sweep_cli("run", str(write_spec(tmp_path / "spec.yaml", spec)))
    assert "computing 1" in again.output, again.output
    assert not list((out / ADV_DIR).rglob(f"{store.TMP_PREFIX}*"))


def test_keep_none_writes_no_adversarial(tmp_path, ray_session):
    out = tmp_path / "out"
    spec = adv_spec(out, adversarials={"keep": "none"})
    spec["models"] = spec["models"][:1]
    sweep.run(spec, pool=ray_session)
    assert not (out / ADV_DIR).exists()
    assert all(r.adv_file is None for r in Manifest(out).records().values())
    with pytest.raises(ValueError, match="no stored adversarials"):
        sweep.load_adversarials(out)


def test_plan_records_the_transfer_units(transfer_run):
    plan = json.loads((transfer_run["out"] / MANIFEST_DIR / "plan.json").read_text())
    assert len(plan["transfers"]) == 2 * 2  # 2 source cells x 2 targets
    assert {t["target"] for t in plan["transfers"]} == {"digits-cnn", "digits-cnn-at"}
    assert np.all([t["source"] == "digits-cnn" for t in plan["transfers"]])


@pytest.mark.browser
def test_gallery_and_transfer_heatmap_render_in_chromium(transfer_run, tmp_path):
    import re

    from tests.report import browser

    report = transfer_run["res"].report(tmp_path / "report.html")
    page = report.read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert all(r.startswith(("#", "data:")) for r in refs), refs[:5]  # still one self-contained file
    run = browser.dump_dom(report)
    assert run.console == [], run.console
    dom = run.stdout
    gallery = re.findall(r'<figure class="gallery" data-model="([^"]+)" data-attack="([^"]+)"><img[^>]*'
                         r'src="data:image/png;base64,', dom)
    assert sorted(gallery) == [("digits-cnn", "fgsm"), ("digits-cnn-at", "fgsm")]  # one per (model, attack)
    transfer = re.findall(r'<figure class="transfer" data-attack="fgsm">', dom)
    assert len(transfer) == len(EPS)
    png = tmp_path / "shot.png"
    browser.screenshot(report, png)
    assert png.stat().st_size > 10_000


def test_gallery_marks_the_pixels_one_pixel_changed():
    from sweep.analysis.gallery import panel_png

    clean = np.zeros((1, 1, 8, 8), np.float32)
    adv = clean.copy()
    adv[0, 0, 2, 5] = 1.0
    marked = panel_png(clean, adv, np.array([3]), np.array([5]), mark_pixels=True, title="t")
    plain = panel_png(clean, adv, np.array([3]), np.array([5]), mark_pixels=False, title="t")
    assert marked[:8] == b"\x89PNG\r\n\x1a\n" and marked != plain


def test_gallery_pngs_are_mlflow_artifacts_of_the_child_runs(tmp_path, ray_session):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "out"
    spec = adv_spec(out, adversarials={"keep": "first_n", "n": 2})
    spec.pop("mlflow")  # on: SQLite under out/_mlflow
    spec["models"] = spec["models"][:1]
    sweep.run(spec, pool=ray_session)
    client = MlflowClient(f"sqlite:///{out / '_mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("t")
    runs = client.search_runs([exp.experiment_id], "tags.`sweep.role` = 'child'")
    assert len(runs) == 1
    arts = [a.path for a in client.list_artifacts(runs[0].info.run_id, "gallery")]
    assert arts == ["gallery/digits-cnn__fgsm.png"]


def test_schema_2_files_read_with_a_null_source_model(tmp_path):
    """Readers of schema 3 still read files written with schema 2 (no source_model)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sweep.analysis.curves import load_results
    from sweep.results.schema import FILE_SCHEMA
    from tests.analysis.rows import attack_rows

    rows = [dict(r, schema_version=2) for r in attack_rows("m", "a", [0.1, 0.2], ["RR", "RF", "FF"])]
    v2 = pa.schema([f for f in FILE_SCHEMA if f.name != "source_model"])
    folder = tmp_path / "model=m" / "attack=a"
    folder.mkdir(parents=True)
    keep = [f.name for f in v2]
    table = pa.Table.from_pylist([{k: r.get(k) for k in keep} for r in rows], schema=v2)
    pq.write_table(table, folder / ("a" * 24 + ".parquet"))
    got = load_results(tmp_path)
    assert len(got) == len(rows) and got["source_model"].isna().all()
    assert got.attrs["notes"] == []  # nothing to upgrade: version 2 rows are current but for the column


def test_a_transfer_starts_when_its_source_is_done_not_after_every_cell(tmp_path, ray_session):
    """No barrier: transfer units are queued as their source cells finish, so the
    target digits-cnn's units run while digits-cnn-at's cells still wait."""
    out = tmp_path / "out"
    spec = adv_spec(out, dataset={"name": "digits", "samples": 48, "shard_size": 8},
                    transfer={"sources": ["digits-cnn"], "targets": ["digits-cnn"]})
    res = sweep.run(spec, pool=ray_session)
    plan = json.loads((out / MANIFEST_DIR / "plan.json").read_text())
    recs = Manifest(out).records()
    units = {t["id"]: t["source_cell"] for t in plan["transfers"]}
    cells = [cid for p in plan["pairs"] for cid in p["cells"]]
    assert len(units) == 6 and set(units) <= set(recs) and set(cells) <= set(recs)
    for unit, source in units.items():
        assert recs[unit].finished >= recs[source].finished  # after its own source...
    first_unit = min(recs[u].finished for u in units)
    assert first_unit < max(recs[c].finished for c in cells)  # ...but before the last cell
    assert len(res.transfer()) == len(EPS)


def test_a_failed_source_cell_gives_up_its_transfer_units(tmp_path, ray_session):
    from sweep.errors import SweepFailed

    out = tmp_path / "out"
    spec = adv_spec(out, retries=0, transfer={"sources": ["broken"], "targets": ["digits-cnn"]})
    spec["models"] = [{"name": "digits-cnn"},
                      {"name": "broken", "factory": "tests.execution.toy_models:fails_on_batches"}]
    with pytest.raises(SweepFailed) as err, pytest.warns(UserWarning, match="model 'broken'"):
        sweep.run(spec, pool=ray_session)
    failures = err.value.failures
    units = [f for f in failures if "its source cell" in f.error]
    assert len(units) == 2 and {f.model for f in units} == {"digits-cnn"}  # the target's evaluations
    assert {f.model for f in failures if f not in units} == {"broken"}
    assert err.value.results.transfer().empty
