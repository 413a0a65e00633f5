"""eps* of a stored sweep (science.md, Study C): groups, R0, selected epochs, the fast approximation from
fine-tuning runs side by side, and the FGSM catastrophic-overfitting flag. Reads through db/, computes with the
pure functions of db.epsilon_star; no torch.

Definitions (losses in nats, eps in [0, 1] pixel units):
- group: the from-scratch trials (no `init_from`) sharing (arch, method, lam, norm, dataset, n_train, seed).
- clean run of a group: its eps = 0 member; else an eps = 0 trial of the sweep with the same (arch, dataset,
  n_train, seed), any method (a grid whose eps 0 is method `clean`); the lowest trial index wins.
- selected epoch of a run (one rule for the points and R0): the epoch with the smallest held-out adversarial loss,
  the earliest on ties. Held out means the split the per-epoch evaluation ran on: the validation split
  (`adv_loss_val`), or the test set under select_on 'test' (`adv_loss_test`, the studies' protocol); `split` says
  which.
- a run's point: its `adv_loss_train` (epoch mean of the adversarial training loss) at its selected epoch; the
  clean run gives the eps = 0 point. Only completed trials give points; the others are listed in `missing`.
- R0: the clean run's clean held-out loss (`clean_loss_val`, or `clean_loss_test` under select_on 'test') at its
  selected epoch (`r0_epoch`, `r0_split`): the same epoch rule and split as the points. (It used to be the best
  checkpoint's test loss, whose epoch the robust-accuracy rule picks: another epoch than the clean point's.)
- fast approximation: trials with `init_from = "trial:<clean run id>"` (in this sweep, or in any sweep whose spec
  sets that `training.init_from`), grouped by (method, norm, epochs), each a least-squares line through its
  points (same selection rule) extrapolated to R0 (db.epsilon_star.epsilon_star_fast). `eps_star_fast` is the
  first of `fast`, sorted with PGD (`sat`) fine-tuning first, then by method and epochs.
- catastrophic overfitting (fgsm-trained runs only): see `catastrophic_overfitting`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from db.epsilon_star import epsilon_star, epsilon_star_fast
from db.models import Trial
from db.results import query_results
from db.sweeps import NotFound, get_sweep, get_sweep_by_name_or_id, get_trial, list_sweeps, list_trials
from search_spaces.spec import SpecError

GROUP_KEYS = ("arch", "method", "lam", "norm", "dataset", "n_train", "seed")
CO_ROBUST_ACC_FLOOR = 0.02  # last-epoch validation PGD accuracy below this (fraction): collapsed
CO_RELATIVE_DROP = 0.2  # ... or below this fraction of the best earlier epoch's accuracy
TRIAL_REF = "trial:"


def catastrophic_overfitting(robust_acc: Sequence[float | None]) -> bool | None:
    """FGSM catastrophic overfitting from a run's per-epoch validation PGD accuracies (epoch order): True when the
    last epoch's accuracy is below CO_ROBUST_ACC_FLOOR, or below CO_RELATIVE_DROP x the best earlier epoch's.
    None when no epoch has an accuracy."""
    accs = [float(a) for a in robust_acc if a is not None]
    if not accs:
        return None
    last, earlier = accs[-1], accs[:-1]
    return last < CO_ROBUST_ACC_FLOOR or (bool(earlier) and last < CO_RELATIVE_DROP * max(earlier))


def epsilon_star_for_sweep(session: Session, *, sweep_ref: int | str) -> list[dict[str, Any]]:
    """One dict per group (see the module doc): the group key, clean_trial, r0, points, eps_star with bracketed /
    lower / upper / reason, missing, eps_star_fast and fast. `sweep_ref`: an id (int) or a name or id (str).
    Raises NotFound for an unknown sweep, SpecError('eps') when it has neither an eps = 0 run nor fine-tuning runs
    of a clean run."""
    sweep = get_sweep(session, sweep_id=sweep_ref) if isinstance(sweep_ref, int) else \
        get_sweep_by_name_or_id(session, ref=sweep_ref)  # fmt: skip
    if sweep is None:
        raise NotFound(f"sweep {sweep_ref!r} not found")
    trials = list_trials(session, sweep_id=sweep.id)
    linked = {_linked_clean(t) for t in trials} - {None}
    if not any(t.eps == 0.0 and not _init_from(t) for t in trials) and not linked:
        raise SpecError("eps", "eps* needs an eps = 0 (clean) run in the grid")
    groups = _groups(session, sweep.name, trials)
    for cid in sorted(linked - {g["clean_trial"] for g in groups}):  # fine-tuning runs of another sweep's clean run
        clean = get_trial(session, trial_id=cid)
        if clean is not None:
            home = get_sweep(session, sweep_id=clean.sweep_id)
            assert home is not None
            groups += [g for g in _groups(session, home.name, list_trials(session, sweep_id=home.id))
                       if g["clean_trial"] == cid]
    pool = _finetune_pool(session, trials, {g["clean_trial"] for g in groups} - {None})
    for g in groups:
        g["fast"] = _fast(session, g, pool) if g["clean_trial"] is not None else []
        g["eps_star_fast"] = g["fast"][0]["eps_star"] if g["fast"] else None
    return groups


# ------------------------------------------------------------------------------------------------------ groups


def _init_from(t: Trial) -> str | None:
    return (t.config or {}).get("init_from")


def _linked_clean(t: Trial) -> int | None:
    ref = _init_from(t)
    return int(ref.removeprefix(TRIAL_REF)) if ref and ref.startswith(TRIAL_REF) else None


def _key(t: Trial) -> tuple[Any, ...]:
    return tuple(getattr(t, k) for k in GROUP_KEYS)


def _groups(session: Session, sweep_name: str, trials: list[Trial]) -> list[dict[str, Any]]:
    own = [t for t in trials if not _init_from(t)]
    by_key: dict[tuple[Any, ...], list[Trial]] = defaultdict(list)
    for t in own:
        by_key[_key(t)].append(t)
    cleans = [t for t in own if t.eps == 0.0]
    refs = {k: _clean_of(members, cleans) for k, members in by_key.items()}
    used_elsewhere = {c.id for k, c in refs.items() if c is not None and c not in by_key[k]}
    curves = _curves(session, own)
    out = []
    for key, members in by_key.items():
        if all(t.eps == 0.0 and t.id in used_elsewhere for t in members):
            continue  # a lone clean run (method `clean`) that serves as another group's eps = 0 point
        clean = refs[key]
        runs = sorted({t.id: t for t in [*members, *([clean] if clean else [])]}.values(), key=lambda t: t.eps)
        out.append(_estimate(sweep_name, key, clean, runs, curves))
    return out


def _clean_of(members: list[Trial], cleans: list[Trial]) -> Trial | None:
    own = [t for t in members if t.eps == 0.0]
    if own:
        return own[0]
    m = members[0]
    same = [c for c in cleans if (c.arch, c.dataset, c.n_train, c.seed) == (m.arch, m.dataset, m.n_train, m.seed)]
    return min(same, key=lambda c: c.idx) if same else None


def _curves(session: Session, trials: list[Trial]) -> dict[int, list[dict[str, Any]]]:
    """Epoch rows per trial id, read per sweep (one IN over sweep ids, whatever the number of trials)."""
    sweep_ids = sorted({t.sweep_id for t in trials})
    rows = query_results(session, filters={"sweep_ids": sweep_ids}, kind="epoch") if sweep_ids else []
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r["trial"]].append(r)
    return out


SPLITS = ("val", "test")  # where a run's per-epoch held-out losses are: validation, else test (select_on 'test')


def selected_epoch(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], str] | None:
    """(the epoch row, its split) with the smallest held-out adversarial loss among rows that also have
    adv_loss_train, the earliest on ties; None when no epoch has both. The one rule of the points and of R0."""
    for split in SPLITS:
        usable = [r for r in rows if r[f"adv_loss_{split}"] is not None and r["adv_loss_train"] is not None]
        if usable:
            return min(usable, key=lambda r: (r[f"adv_loss_{split}"], r["epoch"])), split
    return None


def _point(t: Trial, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    sel = selected_epoch(rows)
    if t.status != "completed" or sel is None:
        return None
    row, split = sel
    co = catastrophic_overfitting([r["robust_acc"] for r in rows]) if t.method == "fgsm" else None
    return {"trial": t.id, "eps": t.eps, "epoch": row["epoch"], "adv_loss_train": row["adv_loss_train"],
            "split": split, "adv_loss_val": row["adv_loss_val"], "adv_loss_test": row["adv_loss_test"],
            "catastrophic_overfitting": co}  # fmt: skip


def _r0(clean: Trial, rows: list[dict[str, Any]]) -> tuple[float | None, int | None, str | None]:
    """(R0, its epoch, its split): the clean run's clean held-out loss at its selected epoch."""
    sel = selected_epoch(rows) if clean.status == "completed" else None
    if sel is None:
        return None, None, None
    row, split = sel
    return row[f"clean_loss_{split}"], row["epoch"], split


def _estimate(sweep_name: str, key: tuple[Any, ...], clean: Trial | None, runs: list[Trial],
              curves: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    points = {t.id: _point(t, curves.get(t.id, [])) for t in runs}
    r0, r0_epoch, r0_split = _r0(clean, curves.get(clean.id, [])) if clean else (None, None, None)
    g: dict[str, Any] = {"sweep": sweep_name, **dict(zip(GROUP_KEYS, key, strict=True)),
                         "clean_trial": clean.id if clean else None, "r0": r0, "r0_epoch": r0_epoch,
                         "r0_split": r0_split,
                         "points": [p for p in points.values() if p is not None],
                         "missing": [tid for tid, p in points.items() if p is None],
                         "eps_star": None, "bracketed": False, "lower": None, "upper": None, "reason": None}  # fmt: skip
    if clean is None:
        g["reason"] = "no eps = 0 (clean) run for this group"
    elif points[clean.id] is None:
        g["reason"] = f"the clean run (trial {clean.id}) has no results yet"
    elif g["r0"] is None:
        g["reason"] = (f"the clean run (trial {clean.id}) has no clean_loss_{r0_split} at its selected epoch "
                       f"{r0_epoch}: no R0")
    elif all(p["eps"] == 0.0 for p in g["points"]):
        g["reason"] = "no eps > 0 run from scratch in this group"
    else:
        eps, losses = [p["eps"] for p in g["points"]], [p["adv_loss_train"] for p in g["points"]]
        try:
            g.update({k: v for k, v in epsilon_star(eps, losses, g["r0"]).items() if k != "method"})
        except ValueError as e:
            g["reason"] = str(e)
    return g


# -------------------------------------------------------------------------------------------------------- fast


def _finetune_pool(session: Session, sweep_trials: list[Trial], clean_ids: set[int]) -> list[Trial]:
    """Fine-tuning trials (eps > 0) of the given clean runs: in this sweep, and in every sweep whose spec sets
    `training.init_from` to one of them."""
    refs = {f"{TRIAL_REF}{cid}" for cid in clean_ids}
    pool = {t.id: t for t in sweep_trials}
    for s in list_sweeps(session):
        stored = s.spec or {}  # search_spaces.stored.StoredSweep's layout ({"spec": ...}), or an old flat / imported one
        if ((stored.get("spec") or stored).get("training") or {}).get("init_from") in refs:
            pool.update({t.id: t for t in list_trials(session, sweep_id=s.id)})
    return [t for t in pool.values() if _init_from(t) in refs and t.eps > 0]


def _fast(session: Session, group: dict[str, Any], pool: list[Trial]) -> list[dict[str, Any]]:
    """Fast eps* fits of the fine-tuning runs of the group's clean run, one per (method, norm, epochs)."""
    runs = [t for t in pool if _init_from(t) == f"{TRIAL_REF}{group['clean_trial']}"]
    curves = _curves(session, runs)
    fits: dict[tuple[str, str, int], list[Trial]] = defaultdict(list)
    for t in runs:
        fits[(t.method, t.norm, int((t.config or {}).get("epochs", 0)))].append(t)
    out = []
    for (method, norm, epochs), members in sorted(fits.items(), key=lambda kv: (kv[0][0] != "sat", kv[0])):
        points = {t.id: _point(t, curves.get(t.id, [])) for t in sorted(members, key=lambda t: t.eps)}
        got = [p for p in points.values() if p is not None]
        fit: dict[str, Any] = {"method": method, "norm": norm, "epochs": epochs, "points": got,
                               "missing": [tid for tid, p in points.items() if p is None], "eps_star": None,
                               "bracketed": False, "lower": None, "upper": None, "slope": None, "intercept": None,
                               "n_points": len(got), "reason": None}  # fmt: skip
        if group["r0"] is None:
            fit["reason"] = "no R0: the clean run has no results yet"
        elif len({p["eps"] for p in got}) < 2:
            fit["reason"] = f"{len(got)} fine-tuning point(s): a line needs two or more distinct eps"
        else:
            try:
                res = epsilon_star_fast([p["eps"] for p in got], [p["adv_loss_train"] for p in got], group["r0"])
                fit.update({k: v for k, v in res.items() if k != "method"})
            except ValueError as e:
                fit["reason"] = str(e)
        out.append(fit)
    return out
