"""Options and steps shared by every command: your own table, filters, hold-out, outputs.

Handlers stay thin: read the table (:func:`read_input`), check output paths before any work
(:func:`check_outputs`), call the pillar's ``from_frame -> fit -> predict``, then write
(:func:`write_predictions`, :func:`save_fit`) and report (:func:`score`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = [
    "Formatter",
    "interval_level",
    "add_json",
    "add_table_args",
    "add_output_args",
    "add_predict_command",
    "read_input",
    "check_outputs",
    "write_predictions",
    "baseline_columns",
    "save_fit",
    "score",
    "split_list",
    "predict_handler",
    "compare_baselines",
]


def interval_level(text: str) -> float:
    """The argparse type of ``--level``: a number in (0, 1), refused before any work starts."""
    try:
        level = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; e.g. --level 0.9 for a 90 % interval") from None
    if not 0.0 < level < 1.0:
        raise argparse.ArgumentTypeError(f"{level:g} is not in (0, 1); e.g. --level 0.9 for a 90 % interval")
    return level


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` shows every default and keeps the description's line breaks."""


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (logs go to stderr)")


def add_table_args(p: argparse.ArgumentParser, *, csv_help: str = "your own table (CSV, TSV, Parquet or JSON)",
                   holdout: bool = True) -> None:
    """``--csv``, ``--where`` and (optionally) ``--holdout``."""
    p.add_argument("--csv", default=None, metavar="PATH", help=csv_help)
    p.add_argument("--where", default=None, metavar="EXPR",
                   help="keep only rows where this pandas expression holds, e.g. \"N > 1e8\"")
    if holdout:
        p.add_argument("--holdout", default=None, metavar="EXPR",
                       help="rows held out from the fit and scored, e.g. \"N >= 1e9\"")


def add_output_args(p: argparse.ArgumentParser, *, predictions: bool = True, save: bool = True) -> None:
    """``--predictions``, ``--save`` and ``--overwrite``."""
    if predictions:
        p.add_argument("--predictions", default=None, metavar="OUT.csv",
                       help="write one row per predicted input: its columns + mean, lower, upper")
    if save:
        p.add_argument("--save", default=None, metavar="DIR", help="save the fitted model in this folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing --save / --predictions outputs")


def split_list(text: str | None, cast=str) -> list | None:
    """``"a,b, c"`` -> ``["a", "b", "c"]`` (``None``/empty -> ``None``)."""
    if text is None or str(text).strip() == "":
        return None
    return [cast(t.strip()) for t in str(text).split(",") if t.strip()]


def read_input(args, *, required: bool = True):
    """The ``--csv`` table filtered by ``--where`` (index = lines of the file), or ``None``."""
    from jaxscale._log import get_logger
    from jaxscale.data import read_table, where
    from jaxscale.data.table import RUN_COL, wandb_long

    if getattr(args, "csv", None) is None:
        if required:
            raise ValueError("give --csv PATH (your own table)")
        return None
    df = read_table(args.csv)
    long = wandb_long(df)
    if long is not None:
        w = long.attrs["wandb"]
        names = [RUN_COL, w["x_col"], *w["metrics"]]
        get_logger("jaxscale.cli").info(
            "%s: a W&B chart export (one column per run: %d runs of %s by %r), read as a long table with columns "
            "%s: one row per run and logged step (%d empty cells, steps a run did not log, are not rows; %d __MIN/__MAX "
            "columns, W&B's down-sampling bounds, are left out). Name them, e.g. --curve-col %s --x-col %s --y-col %s",
            Path(args.csv).name, w["runs"], ", ".join(map(repr, w["metrics"])), w["x_col"], names, w["n_unlogged"],
            w["bounds_left_out"], RUN_COL, _flag_value(w["x_col"]), _flag_value(w["metrics"][0]))
        # the columns this table can only mean (its one step column, its one metric, its runs), where the names
        # given (or the defaults) are not in it: said, not a second error. An option left unset (None: e.g. lc
        # fit's --curve-col, which would switch off --task-col) stays unset
        fill = {"curve_col": RUN_COL, "x_col": w["x_col"], "y_col": w["metrics"][0] if len(w["metrics"]) == 1 else None}
        used = []
        for attr, name in fill.items():
            if name is not None and getattr(args, attr, None) is not None and getattr(args, attr) not in long.columns:
                used.append(f"--{attr[:-4].replace('_', '-')}-col {_flag_value(name)} (not {getattr(args, attr)!r})")
                setattr(args, attr, name)
        if used:
            get_logger("jaxscale.cli").info("%s: read with %s, the only such column of this export",
                                            Path(args.csv).name, ", ".join(used))
        df = long
    return where(df, getattr(args, "where", None))


def _flag_value(name: str) -> str:
    """``name`` as a shell word (quoted when it holds a space or a shell character)."""
    import shlex

    return shlex.quote(str(name))


def _probe_folder(folder: Path, flag: str, path) -> None:
    """The folder exists, is a folder, and a file can be created in it (a real probe write: for
    root, ``os.access`` always says yes)."""
    import tempfile

    if not folder.exists():
        raise ValueError(f"{flag} {path}: folder {folder} does not exist; create it first")
    if not folder.is_dir():
        raise ValueError(f"{flag} {path}: {folder} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".jaxscale-probe-"):
            pass
    except OSError as exc:
        raise ValueError(f"{flag} {path}: cannot write in folder {folder} ({exc.strerror or exc})") from exc


def _check_writable_file(path, flag: str, overwrite: bool) -> None:
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file path")
    if path.exists() and not overwrite:
        raise ValueError(f"{flag} {path} already exists; choose another path or pass --overwrite")
    _probe_folder(path.parent if str(path.parent) else Path("."), flag, path)


def check_outputs(args, resume_file: str | None = None) -> None:
    """Refuse unwritable or existing output paths BEFORE any fitting starts: ``--predictions``,
    ``--plot``, ``--save`` and ``--out-dir`` (an existing non-empty folder needs ``--overwrite``,
    unless it holds ``resume_file``: a checkpoint the command resumes from, checked there);
    each folder gets a probe write."""
    overwrite = bool(getattr(args, "overwrite", False))
    for flag in ("predictions", "plot"):
        value = getattr(args, flag, None)
        if value:
            if flag == "plot":
                overwrite = True  # plots are figures, replaced freely (said)
                if Path(value).is_file():
                    from jaxscale._log import get_logger

                    get_logger("jaxscale.cli").info("--plot %s exists: the new figure replaces it", value)
            _check_writable_file(value, f"--{flag}", overwrite)
    save = getattr(args, "save", None)
    if save:
        path = Path(save)
        if path.exists() and (not path.is_dir() or any(path.iterdir())) and not getattr(args, "overwrite", False):
            raise ValueError(f"--save {path} exists and is not empty; choose a new folder or pass --overwrite")
        _probe_folder(path.parent if str(path.parent) else Path("."), "--save", path)
    out_dir = getattr(args, "out_dir", None)
    if out_dir:
        path = Path(out_dir)
        if path.exists():
            if not path.is_dir():
                raise ValueError(f"--out-dir {path} is a file; give a folder")
            resumable = resume_file is not None and (path / resume_file).is_file()
            if any(path.iterdir()) and not getattr(args, "overwrite", False) and not resumable:
                raise ValueError(f"--out-dir {path} exists and is not empty; choose a new folder or pass --overwrite")
            _probe_folder(path, "--out-dir", path)
        else:
            _probe_folder(path.resolve().parent, "--out-dir", path)


def write_predictions(path, frame, pred, *, extra: dict | None = None) -> str:
    """Write ``frame`` (the predicted inputs) plus ``mean``, ``lower``, ``upper`` (and
    ``extrapolation``) and the ``extra`` columns as CSV. A column of ``frame`` with one of those
    names is replaced in the file (the input table is untouched), and a warning names it."""
    import warnings

    ours = pred.to_frame()
    clash = [c for c in [*ours.columns, *(extra or {})] if c in frame.columns]
    out = pred.to_frame(frame)
    for k, v in (extra or {}).items():
        out[k] = v
    if clash:
        warnings.warn(f"--predictions: your table's column(s) {clash} hold jaxscale's values in "
                      f"{Path(path).name} (the predictions file), not yours; rename them in the table to keep both",
                      UserWarning, stacklevel=2)
    out.to_csv(path, index=False)
    return str(path)


def baseline_columns(n: int, rows, baselines: dict) -> dict:
    """Each naive baseline's point prediction as a column for ``--predictions``.

    Args:
      n: rows of the predictions file.
      rows: ``(n,)`` mask of the rows the baselines were evaluated on (the held-out rows).
      baselines: ``name -> Prediction`` (or an array of point predictions) on those rows.

    Returns:
      ``name -> (n,)`` float array: the baseline's value on ``rows``, NaN (an empty cell) elsewhere.
    """
    import numpy as np

    from jaxscale.infer.prediction import Prediction

    rows = np.asarray(rows, bool)
    out = {}
    for name, b in baselines.items():
        col = np.full(n, np.nan)
        col[rows] = np.asarray(b.mean if isinstance(b, Prediction) else b, float)
        out[name] = col
    return out


def save_fit(args, fit) -> str | None:
    """``jaxscale.save(fit, --save)`` when ``--save`` is given."""
    if not getattr(args, "save", None):
        return None
    from jaxscale.io import save

    return str(save(fit, args.save, overwrite=bool(getattr(args, "overwrite", False))))


def score(y, pred, mask=None) -> dict:
    """Held-out metrics of a :class:`~jaxscale.Prediction` against truth ``y``.

    ``n``, ``mae``, ``rmse``, ``mape`` (in %, when every truth is non-zero) and the coverage of the
    prediction's interval. Rows with a missing truth are not scored and are counted; an infinite
    truth (a run that diverged) is not scored either, counted apart (``n_infinite_truth``) and warned.
    """
    import numpy as np

    y = np.asarray(y, float)
    mean, lo, hi = (np.asarray(a, float) for a in (pred.mean, pred.lower, pred.upper))
    if mask is not None:
        mask = np.asarray(mask, bool)
        y, mean, lo, hi = y[mask], mean[mask], lo[mask], hi[mask]
    ok = np.isfinite(y)
    out = {"n": int(ok.sum()), "n_missing_truth": int(np.isnan(y).sum())}
    if np.isinf(y).any():
        import warnings

        out["n_infinite_truth"] = int(np.isinf(y).sum())
        warnings.warn(f"{out['n_infinite_truth']} scored row(s) have an infinite target value (a run that diverged?): "
                      "they are not scored, and the model was not asked whether a run diverges; leave them out "
                      "(--where) to score the others on their own", UserWarning, stacklevel=2)
    if not ok.any():
        why = "no scored row has a finite target value"
        for k in ("mae", "rmse", "mape", "coverage"):
            out[k], out[f"{k}_reason"] = None, why
        return out
    y, mean, lo, hi = y[ok], mean[ok], lo[ok], hi[ok]
    err = mean - y
    out["mae"] = float(np.mean(np.abs(err)))
    out["rmse"] = float(np.sqrt(np.mean(err**2)))
    out["mape"] = float(100 * np.mean(np.abs(err / y))) if np.all(y != 0) else None
    if out["mape"] is None:
        out["mape_reason"] = "a true value is 0"
    out["coverage"] = float(np.mean((y >= lo) & (y <= hi)))
    return out


#: A baseline whose MAE is within this many percent of the model's is still listed in
#: ``model_loses_to`` and warned, but the warning calls it a tie rather than advising the baseline.
TIE_PERCENT = 1.0


def compare_baselines(y, pred, baselines: dict, *, what: str, mask=None, rows: str = "the held-out rows",
                      level: float | None = None, hint: str = "", metric: str = "mae") -> dict:
    """Score naive baselines on the same rows as the model and warn when the model loses, or
    when its interval covers far more or far fewer rows than its level says.

    Args:
      y: truth of the scored rows.
      pred: the model's :class:`~jaxscale.Prediction` on those rows.
      baselines: ``name -> Prediction`` (or an array of point predictions) on the same rows.
      what: the model's name in the warning.
      mask: score only these of the rows (default: all).
      rows: what the scored rows are, in the warning.
      level: the level of the model's interval; given, its coverage is checked
        (:func:`jaxscale.metrics.coverage_check`) and a verdict other than "consistent" is warned.
      hint: what to try, added to the warning when the model loses by more than a tie.
      metric: the score the model is judged on: ``"mae"``, or ``"rmsle"`` (root mean squared error
        of the log, for positive targets such as losses; then also in every score).

    Returns:
      ``{name: score(...)}`` for every baseline, ``"model"``: the model's :func:`score` on the same rows
      (its coverage ``None`` with a reason when it gives no interval), ``"model_loses_to"``: the baselines whose
      ``metric`` is lower than the model's (any amount; the warning gives each gap in percent and calls gaps
      under :data:`TIE_PERCENT` a tie), ``"compared_on"``: ``metric``, and with ``level`` and a finite
      interval ``"model_interval"``: the coverage check.
    """
    import warnings

    import numpy as np

    from jaxscale.infer.prediction import Prediction
    from jaxscale.metrics import rmsle

    if metric not in ("mae", "rmsle"):
        raise ValueError(f"metric={metric!r} is unknown; choose 'mae' or 'rmsle'")
    sel = slice(None) if mask is None else np.asarray(mask, bool)
    truth = np.asarray(y, float)[sel]

    def scored(p, who):
        s = score(y, p, mask)
        if s.get("coverage") is not None and not np.isfinite(np.asarray(p.lower, float)).any():
            s["coverage"], s["coverage_reason"] = None, f"{who} gives no interval"
        if metric == "rmsle":
            keep = np.isfinite(truth)
            s["rmsle"] = rmsle(truth[keep], np.asarray(p.mean, float)[sel][keep]) if keep.any() else None
        return s

    model = scored(pred, "the model")
    out, loses = {}, []
    for name, b in baselines.items():
        if not isinstance(b, Prediction):
            b = np.asarray(b, float)
            b = Prediction(b, np.full_like(b, np.nan), np.full_like(b, np.nan))
        s = scored(b, "the baseline")
        out[name] = s
        if model.get(metric) is not None and s.get(metric) is not None and s[metric] < model[metric]:
            loses.append(name)
    if loses:
        gap = {n: 100.0 * (model[metric] - out[n][metric]) / model[metric] for n in loses}
        listed = ", ".join(f"{n} ({out[n][metric]:.4g}, {gap[n]:.3g} % lower)" for n in loses)
        advice = ("a difference this small is a tie on these rows" if max(gap.values()) < TIE_PERCENT
                  else "prefer the baseline here or check the fit" + (f"; {hint}" if hint else ""))
        warnings.warn(f"{what}: on {rows} the model's {metric.upper()} ({model[metric]:.4g}) is worse than the "
                      f"naive baseline(s) {listed}; {advice}", UserWarning, stacklevel=2)
    out["model"], out["model_loses_to"], out["compared_on"] = model, loses, metric
    check = None if level is None else check_interval(y, pred, level, what=what, mask=mask, rows=rows, scored=model)
    if check is not None:
        out["model_interval"] = check
    return out


def check_interval(y, pred, level: float, *, what: str, mask=None, rows: str = "the held-out rows",
                   scored: dict | None = None, independent: bool = False) -> dict | None:
    """:func:`jaxscale.metrics.coverage_check` of the model's central ``level`` interval on the rows
    of ``y`` (``mask``: only these), warned when its verdict is not "consistent"; None when the
    prediction has no interval or no row has a truth. ``scored``: :func:`score` of these rows, when
    the caller has it already. ``independent``: the rows are independent (each held-out row another
    model), so the check adds its exact binomial test on the low side."""
    import warnings

    import numpy as np

    from jaxscale.metrics import coverage_check

    model = score(y, pred, mask) if scored is None else scored
    if model.get("coverage") is None or not np.isfinite(np.asarray(pred.lower, float)).any():
        return None
    sel = slice(None) if mask is None else np.asarray(mask, bool)
    t, m, lo, hi = (np.asarray(a, float)[sel] for a in (y, pred.mean, pred.lower, pred.upper))
    ok = np.isfinite(t) & np.isfinite(lo) & np.isfinite(hi)
    err = np.median(np.abs(m[ok] - t[ok])) if ok.any() else 0.0
    ratio = float(np.median((hi[ok] - lo[ok]) / 2.0) / err) if err > 0 else None
    check = coverage_check(model["coverage"], model["n"], level, width_ratio=ratio, independent=independent)
    if check["verdict"] != "consistent":
        low, high = check["expected"]
        meaning = ("the real uncertainty is larger than the interval says" if check["verdict"] == "too narrow"
                   else "the interval overstates the uncertainty")
        if check["verdict"] == "too narrow" and independent:
            meaning += (f" (a calibrated {100 * level:.3g} % interval covers at most {check['covered']} of "
                        f"{check['n']} independent rows with probability {check['p_covered_at_most']:.2g})")
        if check["verdict"] == "too wide" and check["coverage"] <= high:  # judged by its width
            meaning += (f": its median half-width is {check['width_ratio']:.3g}x the median error (a calibrated "
                        f"one: about {check['width_ratio_calibrated']:.3g}x)")
        count = f"{check['covered']} of {check['n']}" if independent else f"{check['n']} scored"
        warnings.warn(f"{what}: the model's {100 * level:.3g} % interval covered {100 * check['coverage']:.3g} % "
                      f"of {rows} ({count}; a calibrated one would cover about {100 * low:.0f}-"
                      f"{100 * high:.0f} % of them): it is {check['verdict']} here, {meaning}",
                      UserWarning, stacklevel=3)
    return check


def wrong_model(path, fit, module_name: str) -> ValueError:
    """The error for a ``--model`` folder that holds another pillar's model, naming the command
    that reads it."""
    groups = {"jaxscale.chinchilla": "chinchilla", "jaxscale.learning_curves": "lc",
              "jaxscale.observational": "obs", "jaxscale.context_law": "context", "jaxscale.ncpl": "ncpl"}
    group = next((g for m, g in groups.items() if type(fit).__module__.startswith(m)), None)
    use = f": predict with it by jaxscale {group} predict --model {path}" if group else ""
    return ValueError(f"--model {path} holds a {type(fit).__module__}.{type(fit).__name__}, not a {module_name} "
                      f"model{use}")


def predict_handler(module_name: str, report=None, draws: bool = True):
    """Handler of ``jaxscale <pillar> predict``: load ``--model``, predict ``--csv`` rows.

    ``report(fit, df) -> (fields, columns)``: a pillar's own account of the query (e.g. the cells it
    imputed): ``fields`` join the JSON, ``columns`` (one value per row) the ``--predictions`` file.
    ``draws=False``: the pillar's intervals need no key (a key would only add joint draws, which
    the command does not write), so none is passed."""

    def handler(args) -> dict:
        import importlib

        import jax

        from jaxscale.io import load

        check_outputs(args)
        pillar = importlib.import_module(module_name)
        fit = load(args.model)
        if not isinstance(fit, pillar.Fit):
            raise wrong_model(args.model, fit, module_name)
        df = read_input(args)
        kw = {} if getattr(args, "handle_unknown", None) is None else {"handle_unknown": args.handle_unknown}
        key = jax.random.key(args.seed) if draws else None
        pred = pillar.predict(fit, df, key=key, level=args.level, **kw)
        out = {"model": str(args.model), "n": int(len(df)), "level": args.level,
               "mean": pred.mean, "lower": pred.lower, "upper": pred.upper}
        fields, columns = ({}, None) if report is None else report(fit, df)
        out.update(fields)
        if pred.extrapolation is not None:
            import numpy as np

            out["extrapolation"] = pred.extrapolation
            out["max_extrapolation"] = float(np.max(np.asarray(pred.extrapolation)))
            far = int(np.isinf(np.asarray(pred.extrapolation, float)).sum())
            if far:  # JSON has no infinity: say what the nulls mean
                out["max_extrapolation_reason"] = (f"{far} row(s) lie at an infinite distance (a label or value the "
                                                   "model never saw); JSON writes inf as null")
        target = dict(fit.columns).get("target")
        if target and target in df.columns:
            import pandas as pd

            out["score"] = score(pd.to_numeric(df[target], errors="coerce"), pred)
        if args.predictions:
            out["predictions"] = write_predictions(args.predictions, df, pred, extra=columns)
        return out

    return handler


def add_predict_command(sub, module_name: str, what: str, report=None, draws: bool = True) -> argparse.ArgumentParser:
    """``predict --model DIR --csv NEW [--where] [--predictions] [--level] [--seed]`` (``report``,
    ``draws``: see :func:`predict_handler`; without draws there is no ``--seed``)."""
    p = sub.add_parser("predict", help=f"predict new rows with a saved {what} model (from --save)",
                       formatter_class=Formatter)
    p.add_argument("--model", required=True, metavar="DIR", help="folder written by --save")
    add_table_args(p, csv_help="rows to predict (CSV, TSV, Parquet or JSON), with the model's input columns",
                   holdout=False)
    p.add_argument("--level", type=interval_level, default=0.9, help="central interval level")
    if draws:
        p.add_argument("--seed", type=int, default=0, help="seed of predictive draws (where the model draws)")
    add_output_args(p, save=False)
    add_json(p)
    p.set_defaults(func=predict_handler(module_name, report, draws))
    return p
